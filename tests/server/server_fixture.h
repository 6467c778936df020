// Test helpers: a `nuance serve` instance in-process on a free loopback port, a models folder with tiny random
// checkpoints, and JSON/PNG helpers for the responses.
#pragma once
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <unistd.h>

#include "base64.h"
#include "io/image.h"
#include "models/random_model.h"
#include "server.h"

namespace nuance::server::test {

using nlohmann::json;
namespace fs = std::filesystem;

// models/tiny.safetensors, models/sub/other.safetensors (same weights), models/broken.safetensors (garbage).
// Made once and shared by the test processes (ctest runs each test in its own process): built in a private folder,
// then renamed into place, so a concurrent process either sees the whole folder or makes its own.
inline const fs::path& models_dir() {
    static const fs::path dir = [] {
        const fs::path d = fs::temp_directory_path() / ("nuance_server_test_models_v1_" + std::to_string(::getuid()));
        if (fs::exists(d / "ready")) return d;
        const fs::path tmp = d.string() + ".tmp." + std::to_string(::getpid());
        fs::remove_all(tmp);
        fs::create_directories(tmp / "sub");
        RandomModelOptions o;
        o.family = "sd15";
        o.tiny = true;
        write_random_checkpoint((tmp / "tiny.safetensors").string(), o);
        fs::copy_file(tmp / "tiny.safetensors", tmp / "sub" / "other.safetensors");
        std::ofstream(tmp / "broken.safetensors") << "this is not a checkpoint";
        std::ofstream(tmp / "notes.txt") << "ignored";
        std::ofstream(tmp / "ready") << "ok";
        std::error_code ec;
        fs::rename(tmp, d, ec);
        if (!ec) return d;
        if (!fs::exists(d / "ready")) return tmp;  // d is something else: use ours
        fs::remove_all(tmp, ec);                   // another process won
        return d;
    }();
    return dir;
}

inline ServerOptions test_options() {
    ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.models_dir = models_dir().string();
    o.model = (models_dir() / "tiny.safetensors").string();  // the default
    o.queue.threads = 1;  // tests share small machines
    o.queue.max_models = 2;
    o.queue.max_queued = 8;
    o.http_threads = 32;
    o.max_body_bytes = 4u << 20;
    return o;
}

class TestServer {
public:
    explicit TestServer(ServerOptions o = test_options()) : server_(std::make_unique<Server>(std::move(o))) {
        port_ = server_->bind();
        thread_ = std::thread([this] { server_->run(); });
    }
    ~TestServer() {
        server_->stop();
        thread_.join();
    }
    int port() const { return port_; }
    Server& server() { return *server_; }
    std::unique_ptr<httplib::Client> client(int read_timeout_s = 120) const {
        auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
        c->set_read_timeout(read_timeout_s, 0);
        c->set_write_timeout(30, 0);
        c->set_connection_timeout(10, 0);
        return c;
    }

private:
    std::unique_ptr<Server> server_;
    std::thread thread_;
    int port_ = 0;
};

// A response kept beyond its httplib::Result (which cannot be default-constructed or copied).
struct Reply {
    bool ok = false;
    int status = 0;
    std::string body;
};
inline Reply reply(const httplib::Result& r) {
    Reply p;
    if (!r) return p;
    p.ok = true;
    p.status = r->status;
    p.body = r->body;
    return p;
}
inline json body_json(const Reply& r) { return r.ok ? json::parse(r.body, nullptr, false) : json(); }

inline json body_json(const httplib::Result& r) {
    if (!r) return json();
    return json::parse(r->body, nullptr, false);
}

// Every error answer has the same shape; returns its message.
inline std::string error_message(const httplib::Result& r) {
    const json j = body_json(r);
    EXPECT_TRUE(j.is_object()) << (r ? r->body : std::string("no response"));
    if (!j.is_object()) return "";
    EXPECT_TRUE(j.contains("error") && j["error"].is_object() && j["error"]["message"].is_string()) << j.dump();
    EXPECT_TRUE(j.contains("detail") && j["detail"].is_string()) << j.dump();
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    return j.value("detail", std::string());
}

inline Image decode_b64_png(const std::string& b64, PngText* text = nullptr) {
    const std::vector<uint8_t> bytes = base64_decode(b64, "test image");
    if (text) *text = parse_png_text(bytes.data(), bytes.size());
    return decode_image(bytes.data(), bytes.size(), 3);
}

inline std::string png_b64(const Image& img) {
    const std::vector<uint8_t> png = encode_png(img);
    return base64_encode(png.data(), png.size());
}

inline std::string param(const PngText& t, const std::string& key) {
    for (const auto& [k, v] : t)
        if (k == key) return v;
    return "";
}

}  // namespace nuance::server::test
