// The sd-webui-controlnet extension's API (Mikubill/sd-webui-controlnet, api.py / external_code.py), as far as
// nuance runs it: `alwayson_scripts.controlnet.args` units on txt2img/img2img, GET /controlnet/model_list (the
// --controlnet-dir files, "name [hash]" as the extension names them), GET /controlnet/module_list (the model-free
// preprocessors of control/preprocess.h), POST /controlnet/detect (runs one), GET /controlnet/version.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/controlnet/control_stack.h"
#include "models/diffusion_model.h"
#include "request_parse.h"

namespace nuance::server {

// Units of `alwayson_scripts` (an object; its "controlnet" entry, if any, holds "args": [unit, ...]). Each enabled
// unit's image is decoded and preprocessed here; the model name is kept in ControlUnit::name (resolved later).
// Disabled units and units whose model is "None" are dropped. Errors name the field
// ("alwayson_scripts.controlnet.args[1].weight must be in 0..10, got 12").
std::vector<ControlUnit> parse_controlnet_units(const nlohmann::json& alwayson_scripts, const Limits& lim);

// The ControlNet files of a folder (safetensors / .pth / .ckpt / .bin, and diffusers folders with config.json),
// by stem; the extension's title "stem [hash8]" with the old A1111 model hash (sha256 of 64 KiB at 1 MiB).
struct ControlNetEntry {
    std::string stem, path, title;
};
std::vector<ControlNetEntry> list_controlnets(const std::string& dir);
// Sets each unit's `path` from its name ("control_v11p_sd15_canny [d14c016b]", the stem or the file name);
// Error (NotFound) naming the unit and the folder when there is none.
void resolve_controlnet_paths(std::vector<ControlUnit>& units, const std::string& dir);
// Loads the units' nets for `m` (a small cache keeps the last few by path and model). Error naming both when a
// ControlNet does not fit the model.
void load_request_controlnets(std::vector<ControlUnit>& units, const DiffusionModel& m);

}  // namespace nuance::server
