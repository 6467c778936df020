// Helpers shared by the subcommands.
#include "commands.h"
#include "core/error.h"
#include "models/quantize_weights.h"

namespace nuance::cli {

Precision parse_usage_precision(const std::string& s) {
    try {
        return parse_precision(s);
    } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "usage: --precision: ", e.what());
    }
}

std::string check_usage_weight_type(const std::string& s) {
    if (s.empty()) return s;
    try {
        parse_weight_type(s);
    } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "usage: ", e.what());
    }
    return s;
}

const char* const kWeightTypeHelp =
    "Quantize the weights in memory as they load (stable-diffusion.cpp's --type): q8_0 | q4_0 | q5_0 | q4_k | "
    "q4_k_m | ... (the denoiser and text encoders, as `nuance quantize` chooses; the VAE keeps its dtype). "
    "Default: as the file stores them";

}  // namespace nuance::cli
