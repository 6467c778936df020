#include "controlnet_api.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <list>
#include <mutex>
#include <openssl/evp.h>
#include <unistd.h>

#include "control/preprocess.h"
#include "io/weight_file.h"
#include "io/weights.h"

namespace nuance::server {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* type_of(const json& v) {
    return v.is_object() ? "an object" : v.is_array() ? "a list" : v.is_string() ? "a string" : v.is_boolean() ? "a boolean"
           : v.is_number() ? "a number" : "null";
}

// Typed fields of one unit; null counts as absent.
struct UnitFields {
    const json& j;
    std::string where;
    const json* get(const char* k) const {
        auto it = j.find(k);
        return it == j.end() || it->is_null() ? nullptr : &*it;
    }
    double number(const char* k, double lo, double hi, double dflt) const {
        const json* v = get(k);
        if (!v) return dflt;
        NUANCE_CHECK(v->is_number(), where, ".", k, " must be a number, got ", type_of(*v));
        const double d = v->get<double>();
        NUANCE_CHECK(std::isfinite(d) && d >= lo && d <= hi, where, ".", k, " must be in ", lo, "..", hi, ", got ",
                     v->dump());
        return d;
    }
    std::string string(const char* k, const std::string& dflt) const {
        const json* v = get(k);
        if (!v) return dflt;
        if (v->is_number_integer()) return std::to_string(v->get<int64_t>());  // control_mode / resize_mode as 0/1/2
        NUANCE_CHECK(v->is_string(), where, ".", k, " must be a string, got ", type_of(*v));
        const std::string& s = v->get_ref<const std::string&>();
        NUANCE_CHECK(s.size() <= 1024, where, ".", k, " is ", s.size(), " bytes long (limit 1024)");
        return s;
    }
};

// The unit's image: "image" / "input_image" as base64, or the extension's {"image": b64, "mask": b64} object.
Image unit_image(const UnitFields& f, const Limits& lim) {
    const json* v = f.get("image");
    std::string name = "image";
    if (!v) {
        v = f.get("input_image");
        name = "input_image";
    }
    NUANCE_CHECK(v, f.where, ": no control image (send 'image' or 'input_image' as a base64 PNG/JPEG)");
    if (v->is_object()) {
        const json* m = v->contains("mask") ? &(*v)["mask"] : nullptr;
        NUANCE_CHECK_CODE(!m || m->is_null() || (m->is_string() && m->get_ref<const std::string&>().empty()), Unsupported,
                          f.where, ".", name, ".mask: ControlNet masks (inpaint units) are not supported");
        NUANCE_CHECK(v->contains("image") && (*v)["image"].is_string(), f.where, ".", name,
                     " must hold 'image' as a base64 string");
        return decode_request_image((*v)["image"].get<std::string>(), lim, f.where + "." + name + ".image");
    }
    NUANCE_CHECK(v->is_string(), f.where, ".", name, " must be a base64 string, got ", type_of(*v));
    return decode_request_image(v->get<std::string>(), lim, f.where + "." + name);
}

std::string strip_hash(const std::string& s) {  // "control_v11p_sd15_canny [d14c016b]" -> "control_v11p_sd15_canny"
    const auto k = s.rfind(" [");
    return k != std::string::npos && !s.empty() && s.back() == ']' ? s.substr(0, k) : s;
}

std::string old_model_hash(const std::string& path) {  // A1111's legacy hash: sha256 of 64 KiB at offset 1 MiB
    const int fd = open_regular_file(path, "ControlNet");
    std::vector<unsigned char> buf(0x10000);
    const ssize_t n = ::pread(fd, buf.data(), buf.size(), 0x100000);
    ::close(fd);
    if (n < 0) return "";
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(buf.data(), (size_t)n, md, &len, EVP_sha256(), nullptr);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < 4; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 15];
    }
    return out;
}

}  // namespace

std::vector<ControlUnit> parse_controlnet_units(const json& scripts, const Limits& lim) {
    NUANCE_CHECK(scripts.is_object(), "field 'alwayson_scripts' must be an object, got ", type_of(scripts));
    std::vector<ControlUnit> out;
    const json* cn = nullptr;
    for (auto it = scripts.begin(); it != scripts.end(); ++it) {  // the extension matches the script name loosely
        std::string k = it.key();
        std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return (char)std::tolower(c); });
        if (k == "controlnet") cn = &it.value();
    }
    if (!cn || cn->is_null()) return out;
    NUANCE_CHECK(cn->is_object(), "alwayson_scripts.controlnet must be an object with 'args', got ", type_of(*cn));
    const auto a = cn->find("args");
    if (a == cn->end() || a->is_null()) return out;
    NUANCE_CHECK(a->is_array(), "alwayson_scripts.controlnet.args must be a list of units, got ", type_of(*a));
    NUANCE_CHECK(a->size() <= 8, "alwayson_scripts.controlnet.args has ", a->size(), " units (at most 8)");
    for (size_t i = 0; i < a->size(); ++i) {
        const json& u = (*a)[i];
        const UnitFields f{u, str("alwayson_scripts.controlnet.args[", i, "]")};
        NUANCE_CHECK(u.is_object(), f.where, " must be an object, got ", type_of(u));
        if (const json* e = f.get("enabled")) {
            NUANCE_CHECK(e->is_boolean(), f.where, ".enabled must be true or false, got ", type_of(*e));
            if (!e->get<bool>()) continue;
        }
        const std::string model = f.string("model", "None");
        if (model == "None" || model == "none" || model.empty()) continue;  // the extension ignores such a unit
        ControlUnit cu;
        cu.name = model;
        cu.weight = (float)f.number("weight", 0, 10, 1.0);
        cu.start = (float)f.number("guidance_start", 0, 1, 0.0);
        cu.end = (float)f.number("guidance_end", 0, 1, 1.0);
        NUANCE_CHECK(cu.start < cu.end, f.where, ": guidance_start ", cu.start, " must be below guidance_end ", cu.end);
        // "ControlNet is more important" = the extension's soft weights + control on the conditional half only.
        cu.mode = parse_control_mode(f.string("control_mode", "Balanced"), f.where + ".control_mode");
        if (const json* g = f.get("guess_mode"); g && g->is_boolean() && g->get<bool>())  // old API field
            cu.mode = ControlMode::ControlMoreImportant;
        cu.resize = parse_control_resize(f.string("resize_mode", "Crop and Resize"), f.where + ".resize_mode");
        const Preprocessor pp = preprocessor_from_a1111(
            f.string("module", "none"), f.number("threshold_a", -1, 1e6, -1), f.number("threshold_b", -1, 1e6, -1),
            (int)f.number("processor_res", -1, 4096, -1), f.where);
        if (const json* m = f.get("mask"))
            NUANCE_CHECK_CODE(m->is_string() && m->get_ref<const std::string&>().empty(), Unsupported, f.where,
                              ".mask: ControlNet masks (inpaint units) are not supported");
        cu.image = run_preprocessor(pp, unit_image(f, lim));
        cu.module = pp.module;
        out.push_back(std::move(cu));
    }
    return out;
}

std::vector<ControlNetEntry> list_controlnets(const std::string& dir) {
    std::vector<ControlNetEntry> out;
    if (dir.empty()) return out;
    NUANCE_CHECK_CODE(is_directory(dir), NotFound, "--controlnet-dir '", dir, "' is not a folder");
    std::error_code ec;
    size_t seen = 0;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (++seen > 10000) break;  // a hostile folder: bounded
        const std::string p = e.path().string(), name = e.path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        ControlNetEntry c;
        c.path = p;
        if (is_directory(p)) {
            if (!file_exists(p + "/config.json")) continue;
            c.stem = name;
            c.title = name;
        } else {
            const auto dot = name.rfind('.');
            const std::string ext = dot == std::string::npos ? "" : name.substr(dot);
            if (ext != ".safetensors" && ext != ".pth" && ext != ".ckpt" && ext != ".bin" && ext != ".pt") continue;
            if (!file_exists(p)) continue;
            c.stem = name.substr(0, dot);
            const std::string h = old_model_hash(p);
            c.title = h.empty() ? c.stem : c.stem + " [" + h + "]";
        }
        out.push_back(std::move(c));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.stem < b.stem; });
    return out;
}

void resolve_controlnet_paths(std::vector<ControlUnit>& units, const std::string& dir) {
    if (units.empty()) return;
    NUANCE_CHECK_CODE(!dir.empty(), InvalidArgument,
                      "alwayson_scripts.controlnet: this server has no ControlNet folder (start it with "
                      "--controlnet-dir DIR)");
    const std::vector<ControlNetEntry> all = list_controlnets(dir);
    for (size_t i = 0; i < units.size(); ++i) {
        const std::string want = strip_hash(units[i].name);
        for (const auto& e : all)
            if (e.stem == want || base_name(e.path) == want || e.title == units[i].name) units[i].path = e.path;
        if (units[i].path.empty()) {
            std::string names;
            for (size_t k = 0; k < all.size() && k < 20; ++k) names += (k ? ", " : "") + all[k].title;
            fail(ErrorCode::NotFound, "alwayson_scripts.controlnet.args: model '", units[i].name,
                 "' is not in the ControlNet folder (GET /controlnet/model_list; available: ",
                 names.empty() ? "none" : names, ")");
        }
        units[i].name = want;
    }
}

void load_request_controlnets(std::vector<ControlUnit>& units, const DiffusionModel& m) {
    // The last few ControlNets by (path, model): loading one is a few seconds of mmap and checks.
    struct Cached {
        std::string key;
        std::shared_ptr<const ControlNetModel> net;
    };
    static std::mutex mu;
    static std::list<Cached> cache;
    for (ControlUnit& u : units) {
        if (u.net || u.path.empty()) continue;
        const std::string key = u.path + "\n" + m.path + "\n" + m.name;
        {
            std::lock_guard<std::mutex> lock(mu);
            for (auto it = cache.begin(); it != cache.end(); ++it)
                if (it->key == key) {
                    u.net = it->net;
                    cache.splice(cache.begin(), cache, it);
                    break;
                }
        }
        if (u.net) continue;
        try {
            u.net = m.load_control_net(u.path, "ControlNet");
        } catch (const Error& e) {  // clients see the model name, not the server's path
            std::string msg = e.what();
            for (size_t pos; (pos = msg.find(u.path)) != std::string::npos;) msg.replace(pos, u.path.size(), u.name);
            throw Error(e.code(), msg);
        }
        std::lock_guard<std::mutex> lock(mu);
        cache.push_front({key, u.net});
        while (cache.size() > 2) cache.pop_back();
    }
}

}  // namespace nuance::server
