#include "core/dtype.h"

#include "core/error.h"

namespace nuance {
size_t dtype_size(DType t) {
    switch (t) {
        case DType::F64: case DType::I64: return 8;
        case DType::F32: case DType::I32: return 4;
        case DType::F16: case DType::BF16: case DType::I16: return 2;
        case DType::I8: case DType::U8: case DType::Bool: return 1;
    }
    return 0;
}
const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "F32";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        case DType::F64: return "F64";
        case DType::I64: return "I64";
        case DType::I32: return "I32";
        case DType::I16: return "I16";
        case DType::I8: return "I8";
        case DType::U8: return "U8";
        case DType::Bool: return "BOOL";
    }
    return "?";
}
bool dtype_is_float(DType t) {
    return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64;
}
}  // namespace nuance

namespace nuance {

Precision parse_precision(const std::string& s) {
    if (s == "auto") return Precision::Auto;
    if (s == "fp32" || s == "f32" || s == "float32") return Precision::FP32;
    if (s == "bf16" || s == "bfloat16") return Precision::BF16;
    fail(ErrorCode::InvalidArgument, "unknown precision '", s, "' (expected auto, fp32 or bf16)");
}

const char* precision_name(Precision p) {
    switch (p) {
        case Precision::Auto: return "auto";
        case Precision::FP32: return "fp32";
        case Precision::BF16: return "bf16";
    }
    return "?";
}

}  // namespace nuance
