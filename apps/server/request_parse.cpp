#include "request_parse.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <set>

#include "base64.h"
#include "controlnet_api.h"
#include "pipelines/inpaint.h"
#include "pipelines/inpaint_image.h"
#include "samplers/registry.h"

namespace nuance::server {

namespace {

constexpr int kMaxJsonDepth = 32;

const char* type_name(const json& v) {
    switch (v.type()) {
        case json::value_t::null: return "null";
        case json::value_t::object: return "an object";
        case json::value_t::array: return "an array";
        case json::value_t::string: return "a string";
        case json::value_t::boolean: return "a boolean";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned: return "an integer";
        case json::value_t::number_float: return "a number";
        default: return "an unsupported value";
    }
}

// Typed access to the fields of a request object. null counts as absent (clients send it for "default").
class Fields {
public:
    explicit Fields(const json& j) : j_(j) {}

    const json* get(const char* key) {
        seen_.insert(key);
        auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) return nullptr;
        return &*it;
    }

    std::optional<int64_t> integer(const char* key, int64_t lo, int64_t hi) {
        const json* v = get(key);
        if (!v) return std::nullopt;
        int64_t x = 0;
        if (v->is_number_integer()) {
            x = v->get<int64_t>();
        } else if (v->is_number_unsigned()) {
            const uint64_t u = v->get<uint64_t>();
            NUANCE_CHECK(u <= (uint64_t)hi, "field '", key, "' must be in ", lo, "..", hi, ", got ", u);
            x = (int64_t)u;
        } else if (v->is_number_float()) {
            const double d = v->get<double>();
            NUANCE_CHECK(std::isfinite(d) && d == std::floor(d) && d >= (double)lo && d <= (double)hi, "field '", key,
                         "' must be an integer in ", lo, "..", hi, ", got ", v->dump());
            x = (int64_t)d;
        } else {
            fail(ErrorCode::InvalidArgument, "field '", key, "' must be an integer, got ", type_name(*v));
        }
        NUANCE_CHECK(x >= lo && x <= hi, "field '", key, "' must be in ", lo, "..", hi, ", got ", x);
        return x;
    }

    std::optional<double> number(const char* key, double lo, double hi) {
        const json* v = get(key);
        if (!v) return std::nullopt;
        NUANCE_CHECK(v->is_number(), "field '", key, "' must be a number, got ", type_name(*v));
        const double d = v->get<double>();
        NUANCE_CHECK(std::isfinite(d) && d >= lo && d <= hi, "field '", key, "' must be in ", lo, "..", hi, ", got ",
                     v->dump());
        return d;
    }

    std::optional<std::string> string(const char* key, size_t max_len) {
        const json* v = get(key);
        if (!v) return std::nullopt;
        NUANCE_CHECK(v->is_string(), "field '", key, "' must be a string, got ", type_name(*v));
        const std::string& s = v->get_ref<const std::string&>();
        NUANCE_CHECK(s.size() <= max_len, "field '", key, "' is ", s.size(), " bytes long (limit ", max_len, ")");
        return s;
    }

    std::optional<bool> boolean(const char* key) {
        const json* v = get(key);
        if (!v) return std::nullopt;
        NUANCE_CHECK(v->is_boolean(), "field '", key, "' must be true or false, got ", type_name(*v));
        return v->get<bool>();
    }

    // Native API: every field must be one this parser read.
    void reject_unknown() const {
        for (auto it = j_.begin(); it != j_.end(); ++it) {
            if (seen_.count(it.key())) continue;
            std::string known;
            for (const auto& k : seen_) known += (known.empty() ? "" : ", ") + k;
            fail(ErrorCode::InvalidArgument, "unknown field '", it.key(), "'; known fields: ", known);
        }
    }

private:
    const json& j_;
    std::set<std::string> seen_;
};

// An absent or "Automatic" schedule lets the sampler name decide ("DPM++ 2M Karras"), else the sampler's default.
void check_sampler(const std::string& sampler, std::string& scheduler) {
    if (!sampler.empty()) parse_sampler_spec(sampler);  // throws listing the valid names; "" = the model's
    std::string low;
    for (unsigned char ch : scheduler) low += (char)std::tolower(ch);
    if (low == "automatic" || low == "auto") scheduler.clear();
    if (!scheduler.empty()) parse_schedule_type(scheduler);
}

// Size, steps, CFG and sampler that a request does not give come from the model (defaults.h: apply_defaults).
void unset_model_defaults(GenerateParams& p) {
    p.width = p.height = 0;
    p.steps = 0;
    p.cfg_scale = -1.0f;
    p.sampler.clear();
    p.scheduler.clear();
}

void check_size(int w, int h, const Limits& lim) {
    for (int v : {w, h}) {
        NUANCE_CHECK(v == 0 || (v >= 8 && v % 8 == 0), "size ", w, "x", h, ": width and height must be multiples of 8");
        NUANCE_CHECK(v <= lim.max_side, "size ", w, "x", h, " is over this server's limit of ", lim.max_side,
                     " pixels per side");
    }
    const int64_t pixels = (int64_t)(w ? w : 1024) * (h ? h : 1024);
    NUANCE_CHECK(pixels <= lim.max_pixels, "size ", w, "x", h, " is ", pixels, " pixels, over this server's limit of ",
                 lim.max_pixels);
}

void check_images(int64_t n, const Limits& lim) {
    NUANCE_CHECK(n >= 1 && n <= lim.max_images, "a request may make 1..", lim.max_images, " images, this one asks for ", n);
}

// PNG IHDR / JPEG SOFn dimensions, read before decoding so a tiny file cannot make us allocate gigabytes.
bool sniff_size(const std::vector<uint8_t>& d, uint32_t& w, uint32_t& h) {
    auto be32 = [&](size_t i) { return (uint32_t)d[i] << 24 | (uint32_t)d[i + 1] << 16 | (uint32_t)d[i + 2] << 8 | d[i + 3]; };
    auto be16 = [&](size_t i) { return (uint32_t)d[i] << 8 | d[i + 1]; };
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    if (d.size() >= 24 && std::equal(png_sig, png_sig + 8, d.begin())) {
        w = be32(16);
        h = be32(20);
        return true;
    }
    if (d.size() >= 4 && d[0] == 0xff && d[1] == 0xd8) {
        size_t i = 2;
        while (i + 4 <= d.size()) {
            if (d[i] != 0xff) return false;
            const uint8_t m = d[i + 1];
            if (m == 0xff) {
                ++i;
                continue;
            }
            if (m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7)) {
                i += 2;
                continue;
            }
            const uint32_t len = be16(i + 2);
            const bool sof = m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
            if (sof) {
                if (i + 9 > d.size()) return false;
                h = be16(i + 5);
                w = be16(i + 7);
                return true;
            }
            if (len < 2) return false;
            i += 2 + len;
        }
    }
    return false;
}

// Fields shared by A1111 and the native API.
void read_common(Fields& f, GenerateParams& p, const Limits& lim) {
    if (auto v = f.string("prompt", lim.max_prompt)) p.prompt = *v;
    if (auto v = f.string("negative_prompt", lim.max_prompt)) p.negative_prompt = *v;
    if (auto v = f.integer("steps", 1, lim.max_steps)) p.steps = (int)*v;
    if (auto v = f.number("cfg_scale", 0, 100)) p.cfg_scale = (float)*v;
    if (auto v = f.integer("width", 8, lim.max_side)) p.width = (int)*v;
    if (auto v = f.integer("height", 8, lim.max_side)) p.height = (int)*v;
    if (auto v = f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) p.seed = *v;
    if (auto v = f.number("eta", 0, 100)) p.eta = (float)*v;
    if (auto v = f.integer("clip_skip", 0, 24)) p.clip_skip = (int)*v;
    if (auto v = f.string("scheduler", 64)) p.scheduler = *v;
}

// A1111 img2img inpainting fields (modules/processing.py StableDiffusionProcessingImg2Img defaults: mask_blur 4,
// inpainting_fill 0 = fill, inpaint_full_res true = "only masked", padding 0, no invert). The mask: base64 PNG/JPEG,
// white = repaint (a PNG with transparency: its opaque part), any size.
void read_a1111_mask(Fields& f, GenerateParams& p, const Limits& lim) {
    const json* m = f.get("mask");
    auto flag = [&](const char* key) -> std::optional<bool> {  // A1111 sends 0/1 or true/false
        const json* v = f.get(key);
        if (!v) return std::nullopt;
        if (v->is_boolean()) return v->get<bool>();
        NUANCE_CHECK(v->is_number_integer() && (v->get<int64_t>() == 0 || v->get<int64_t>() == 1), "field '", key,
                     "' must be true/false or 0/1, got ", v->dump().substr(0, 64));
        return v->get<int64_t>() == 1;
    };
    InpaintOptions& o = p.inpaint;
    o.fill = InpaintFill::Fill;
    o.full_res = true;
    o.full_res_padding = 0;
    o.mask_blur = 4;
    if (auto v = f.integer("mask_blur_x", 0, kMaxMaskBlur)) o.mask_blur = (int)*v;
    if (auto v = f.integer("mask_blur", 0, kMaxMaskBlur)) o.mask_blur = (int)*v;
    if (auto v = f.integer("inpainting_fill", 0, 3)) o.fill = (InpaintFill)*v;
    if (auto v = flag("inpaint_full_res")) o.full_res = *v;
    if (auto v = f.integer("inpaint_full_res_padding", 0, 8192)) o.full_res_padding = (int)*v;
    if (auto v = flag("inpainting_mask_invert")) o.invert_mask = *v;
    if (!m) return;
    NUANCE_CHECK(m->is_string(), "field 'mask' must be a base64 PNG or JPEG string, got ", type_name(*m));
    if (m->get_ref<const std::string&>().empty()) return;  // "" = no mask (clients send it)
    p.mask = decode_request_image(m->get<std::string>(), lim, "mask", 4);
}

// Multipart text parts as JSON values: the numeric fields parse as numbers, the rest stay strings.
json multipart_json(const std::vector<std::pair<std::string, std::string>>& parts) {
    static const std::set<std::string> ints = {"n", "steps", "num_inference_steps", "seed"};
    static const std::set<std::string> floats = {"cfg_scale", "guidance_scale", "strength"};
    json j = json::object();
    for (const auto& [name, value] : parts) {
        if (name == "image" || name == "image[]" || name == "mask") continue;
        if (ints.count(name)) {
            char* end = nullptr;
            errno = 0;
            const long long v = std::strtoll(value.c_str(), &end, 10);
            NUANCE_CHECK(!value.empty() && *end == '\0' && errno == 0, "field '", name, "' must be an integer, got '",
                         value.substr(0, 32), "'");
            j[name] = (int64_t)v;
        } else if (floats.count(name)) {
            char* end = nullptr;
            const double v = std::strtod(value.c_str(), &end);
            NUANCE_CHECK(!value.empty() && *end == '\0' && std::isfinite(v), "field '", name,
                         "' must be a number, got '", value.substr(0, 32), "'");
            j[name] = v;
        } else {
            j[name] = value;
        }
    }
    return j;
}

}  // namespace

json parse_json_object(const std::string& body) {
    NUANCE_CHECK(!body.empty(), "the request body is empty: expected a JSON object");
    json j;
    try {
        j = json::parse(body, [](int depth, json::parse_event_t, json&) {
            if (depth > kMaxJsonDepth) fail(ErrorCode::InvalidArgument, "JSON nested deeper than ", kMaxJsonDepth, " levels");
            return true;
        });
    } catch (const json::exception& e) {
        // nlohmann quotes the last token read: a 10 MB unterminated string would come back whole.
        std::string what = e.what();
        if (what.size() > 300) what = what.substr(0, 300) + "...";
        fail(ErrorCode::InvalidArgument, "invalid JSON: ", what);
    }
    NUANCE_CHECK(j.is_object(), "the request body must be a JSON object, got ", type_name(j));
    return j;
}

int64_t resolve_seed(int64_t seed) {
    if (seed >= 0) return seed;
    static thread_local std::mt19937 gen{std::random_device{}()};
    return (int64_t)(gen() & 0x7fffffff);
}

Image decode_request_image(const std::string& b64, const Limits& lim, const std::string& what, int channels) {
    return decode_request_bytes(base64_decode(b64, what), lim, what, channels);
}

Image decode_request_bytes(const std::vector<uint8_t>& bytes, const Limits& lim, const std::string& what,
                           int channels) {
    uint32_t w = 0, h = 0;
    NUANCE_CHECK(sniff_size(bytes, w, h), what, ": not a PNG or JPEG image");
    // Both sides are at most 2^32-1: their product fits uint64_t (int64_t would overflow).
    NUANCE_CHECK(w > 0 && h > 0 && lim.max_input_pixels >= 0 && (uint64_t)w * h <= (uint64_t)lim.max_input_pixels, what, " is ", w, "x", h,
                 " pixels, over this server's limit of ", lim.max_input_pixels, " pixels");
    // The decoder checks the limit again against the header it reads itself (the sniffer above may disagree with it).
    return decode_image(bytes.data(), bytes.size(), channels, what, (uint64_t)lim.max_input_pixels);
}

// A1111 hires fix: enable_hr, hr_scale, hr_upscaler, hr_second_pass_steps, hr_resize_x/y, denoising_strength (0.7
// when absent, A1111's UI default). The target size is checked against the limits here with the usual VAE factor 8,
// and again by the job queue with the model's.
void read_hires(Fields& f, GenerateParams& p, const Limits& lim) {
    if (auto v = f.boolean("enable_hr")) p.hires.enabled = *v;
    HiresParams& h = p.hires;
    if (auto v = f.number("hr_scale", 1, 8)) h.scale = (float)*v;
    if (auto v = f.string("hr_upscaler", 128)) h.upscaler = *v;
    if (auto v = f.integer("hr_second_pass_steps", 0, lim.max_steps)) h.steps = (int)*v;
    if (auto v = f.integer("hr_resize_x", 0, lim.max_side)) h.resize_x = (int)*v;
    if (auto v = f.integer("hr_resize_y", 0, lim.max_side)) h.resize_y = (int)*v;
    if (auto v = f.number("denoising_strength", 0, 1)) h.strength = (float)*v;
    if (!h.enabled) return;
    try {
        parse_hires_upscaler(h.upscaler);
    } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "field 'hr_upscaler': ", e.what());
    }
    NUANCE_CHECK(h.strength > 0, "field 'denoising_strength' must be in (0, 1] for the hires fix, got 0");
    if (p.width > 0 && p.height > 0) {
        const HiresTarget t = hires_target(h, p.width, p.height, 8);
        NUANCE_CHECK(t.width <= lim.max_side && t.height <= lim.max_side && (int64_t)t.width * t.height <= lim.max_pixels,
                     "hires target ", t.width, "x", t.height, " is over this server's limit of ", lim.max_side,
                     " pixels per side and ", lim.max_pixels, " pixels");
    }
}

ParsedRequest parse_a1111(const json& body, bool img2img, const Limits& lim) {
    ParsedRequest r;
    GenerateParams& p = r.params;
    unset_model_defaults(p);
    p.seed = -1;
    Fields f(body);
    read_common(f, p, lim);
    std::string sampler = p.sampler;
    if (auto v = f.string("sampler_index", 128)) sampler = *v;  // legacy field; sampler_name wins
    if (auto v = f.string("sampler_name", 128)) sampler = *v;
    p.sampler = sampler;
    const int64_t batch_size = f.integer("batch_size", 1, lim.max_images).value_or(1);
    const int64_t n_iter = f.integer("n_iter", 1, lim.max_images).value_or(1);
    check_images(batch_size * n_iter, lim);
    p.batch_count = (int)(batch_size * n_iter);
    if (auto v = f.boolean("send_images")) r.send_images = *v;
    if (const json* o = f.get("override_settings")) {
        NUANCE_CHECK(o->is_object(), "field 'override_settings' must be an object, got ", type_name(*o));
        Fields of(*o);
        if (auto v = of.string("sd_model_checkpoint", 1024)) r.model = *v;
        if (auto v = of.integer("CLIP_stop_at_last_layers", 0, 24)) p.clip_skip = (int)*v;
        if (auto v = of.string("randn_source", 16)) {
            NUANCE_CHECK(*v == "GPU" || *v == "CPU", "override_settings.randn_source must be \"GPU\" or \"CPU\", got \"",
                         *v, "\"");
            p.rng = *v == "CPU" ? RngKind::Cpu : RngKind::Cuda;
        }
    }
    if (img2img) {
        const json* imgs = f.get("init_images");
        NUANCE_CHECK(imgs, "img2img needs 'init_images': a list with one base64 PNG or JPEG");
        NUANCE_CHECK(imgs->is_array() && !imgs->empty(), "field 'init_images' must be a non-empty list of base64 images, got ",
                     type_name(*imgs));
        NUANCE_CHECK((*imgs)[0].is_string(), "field 'init_images[0]' must be a base64 string, got ", type_name((*imgs)[0]));
        p.init_image = decode_request_image((*imgs)[0].get<std::string>(), lim, "init_images[0]");
        p.strength = (float)f.number("denoising_strength", 0, 1).value_or(0.75);
        NUANCE_CHECK(p.strength > 0, "field 'denoising_strength' must be in (0, 1], got 0");
        read_a1111_mask(f, p, lim);
    }
    if (!img2img) read_hires(f, p, lim);  // A1111's img2img has no hires fix
    if (const json* s = f.get("alwayson_scripts")) p.control = parse_controlnet_units(*s, lim);
    check_size(p.width, p.height, lim);
    check_sampler(p.sampler, p.scheduler);
    p.seed = resolve_seed(p.seed);
    return r;
}

ParsedRequest parse_openai(const json& body, const Limits& lim) {
    ParsedRequest r;
    GenerateParams& p = r.params;
    unset_model_defaults(p);
    p.seed = -1;
    Fields f(body);
    const auto prompt = f.string("prompt", lim.max_prompt);
    NUANCE_CHECK(prompt && !prompt->empty(), "field 'prompt' is required (a non-empty string)");
    p.prompt = *prompt;
    if (auto v = f.string("model", 1024)) {
        // OpenAI's own model ids mean "whatever this server generates with".
        if (v->rfind("dall-e", 0) != 0 && v->rfind("gpt-image", 0) != 0) r.model = *v;
    }
    p.batch_count = (int)f.integer("n", 1, lim.max_images).value_or(1);
    if (auto v = f.string("size", 32)) {
        if (*v != "auto") {
            int w = 0, h = 0;
            char x = 0;
            char tail = 0;
            NUANCE_CHECK(std::sscanf(v->c_str(), "%d%c%d%c", &w, &x, &h, &tail) == 3 && (x == 'x' || x == 'X') && w > 0 &&
                             h > 0,
                         "field 'size' must be \"WIDTHxHEIGHT\" (e.g. \"512x512\") or \"auto\", got \"", *v, "\"");
            p.width = w;
            p.height = h;
        }
    }
    if (auto v = f.string("response_format", 16)) {
        NUANCE_CHECK(*v == "b64_json" || *v == "url", "field 'response_format' must be \"b64_json\" or \"url\", got \"",
                     *v, "\"");
        r.response_format = *v;
    }
    if (auto v = f.string("output_format", 16))
        NUANCE_CHECK_CODE(*v == "png", Unsupported, "output_format '", *v, "' is not supported; only \"png\"");
    // Extensions many local servers accept.
    if (auto v = f.string("negative_prompt", lim.max_prompt)) p.negative_prompt = *v;
    if (auto v = f.integer("steps", 1, lim.max_steps)) p.steps = (int)*v;
    if (auto v = f.integer("num_inference_steps", 1, lim.max_steps)) p.steps = (int)*v;
    if (auto v = f.number("cfg_scale", 0, 100)) p.cfg_scale = (float)*v;
    if (auto v = f.number("guidance_scale", 0, 100)) p.cfg_scale = (float)*v;
    if (auto v = f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) p.seed = *v;
    if (auto v = f.string("sampler", 128)) p.sampler = *v;
    if (auto v = f.string("scheduler", 64)) p.scheduler = *v;
    check_size(p.width, p.height, lim);
    check_sampler(p.sampler, p.scheduler);
    p.seed = resolve_seed(p.seed);
    return r;
}

ParsedRequest parse_openai_edit(const std::vector<std::pair<std::string, std::string>>& parts, const Limits& lim) {
    const std::string* image = nullptr;
    const std::string* mask = nullptr;
    for (const auto& [name, value] : parts) {
        if (name == "image" || name == "image[]") {
            NUANCE_CHECK(!image, "field 'image': this server edits one image per request");
            image = &value;
        } else if (name == "mask") {
            NUANCE_CHECK(!mask, "field 'mask' given twice");
            mask = &value;
        }
    }
    NUANCE_CHECK(image, "field 'image' is required (a PNG or JPEG file part of a multipart/form-data body)");
    json body = multipart_json(parts);
    Fields f(body);
    const std::optional<double> strength = f.number("strength", 0, 1);
    NUANCE_CHECK(!strength || *strength > 0, "field 'strength' must be in (0, 1], got 0");
    ParsedRequest r = parse_openai(body, lim);
    GenerateParams& p = r.params;
    const Image img = decode_request_bytes(std::vector<uint8_t>(image->begin(), image->end()), lim, "image", 4);
    // OpenAI: the mask's fully transparent pixels are edited; without a mask, the image's own.
    const Image m = mask ? mask_from_image(decode_request_bytes(std::vector<uint8_t>(mask->begin(), mask->end()), lim,
                                                                "mask", 4),
                                           MaskConvention::Transparent, "mask")
                         : mask_from_image(img, MaskConvention::Transparent, "image");
    NUANCE_CHECK(mask || mask_max(m) > 0, "field 'mask' is missing and 'image' has no fully transparent pixel: ",
                 "nothing to edit (send a mask whose transparent area is the part to edit)");
    p.init_image = to_rgb(img);
    p.mask = m;
    p.strength = (float)strength.value_or(1.0);
    p.inpaint.fill = InpaintFill::Original;
    p.inpaint.full_res = false;
    if (p.width == 0 && p.height == 0) {  // no size (or "auto"): the image's, down to multiples of 8
        p.width = std::max(8, img.width / 8 * 8);
        p.height = std::max(8, img.height / 8 * 8);
        check_size(p.width, p.height, lim);
    }
    return r;
}

ParsedRequest parse_native(const json& body, const Limits& lim) {
    ParsedRequest r;
    GenerateParams& p = r.params;
    unset_model_defaults(p);
    p.seed = -1;
    Fields f(body);
    read_common(f, p, lim);
    if (auto v = f.string("model", 1024)) r.model = *v;
    if (auto v = f.string("sampler", 128)) p.sampler = *v;
    p.batch_count = (int)f.integer("batch_count", 1, lim.max_images).value_or(1);
    if (auto v = f.string("rng", 16)) p.rng = parse_rng_kind(*v);
    if (auto v = f.string("init_image", std::numeric_limits<size_t>::max())) {
        p.init_image = decode_request_image(*v, lim, "init_image");
        p.strength = (float)f.number("strength", 0, 1).value_or(0.75);
        NUANCE_CHECK(p.strength > 0, "field 'strength' must be in (0, 1], got 0");
    } else {
        f.number("strength", 0, 1);
    }
    read_hires(f, p, lim);  // the A1111 field names
    f.reject_unknown();
    check_size(p.width, p.height, lim);
    check_sampler(p.sampler, p.scheduler);
    p.seed = resolve_seed(p.seed);
    return r;
}

}  // namespace nuance::server
