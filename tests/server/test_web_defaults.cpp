// The server's defaults follow the model (a request without size/steps/CFG/sampler gets the model's, on every API),
// the page's data endpoints (/api/v1/info, /api/v1/models) carry them, and --output-dir saves every image and lists
// it again (/api/v1/outputs), refusing names that are not saved outputs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "io/png_meta.h"
#include "models/default_model.h"
#include "server_fixture.h"

namespace nuance::server::test {
namespace {

using ::testing::HasSubstr;
const char* kJson = "application/json";
const fs::path kEmoji = fs::path(NUANCE_TEST_DATA) / ".." / ".." / "models" / kDefaultModelName;

fs::path temp_path(const std::string& what) {
    static int n = 0;
    const fs::path p = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_web_defaults_" + what + "_" + std::to_string(::getpid()) +
                                                    "_" + std::to_string(n++));
    fs::remove_all(p);
    return p;
}

ServerOptions emoji_options(const std::string& output_dir = "") {
    ServerOptions o = test_options();
    o.model = kEmoji.string();  // the default model, 32x32
    o.output_dir = output_dir;
    return o;
}

TEST(WebDefaults, InfoAndModelsCarryEachModelsDefaults) {
    TestServer s(emoji_options());
    auto c = s.client();
    const json info = body_json(c->Get("/api/v1/info"));
    ASSERT_TRUE(info.is_object());
    EXPECT_EQ(info["default_model"], "nuance-emoji");
    EXPECT_EQ(info["defaults"]["width"], 32);
    EXPECT_EQ(info["defaults"]["cfg_scale"], 3.0);
    EXPECT_EQ(info["defaults"]["prompt"], "grinning face, noto style");
    EXPECT_EQ(info["outputs"]["enabled"], false);
    const json models = body_json(c->Get("/api/v1/models"));
    std::map<std::string, json> by_name;
    for (const auto& m : models["models"]) by_name[m["name"]] = m;
    ASSERT_TRUE(by_name.count("nuance-emoji") && by_name.count("tiny.safetensors")) << models.dump();
    EXPECT_EQ(by_name["nuance-emoji"]["defaults"]["height"], 32);
    EXPECT_EQ(by_name["nuance-emoji"]["defaults"]["sampler"], "euler_a");
    EXPECT_EQ(by_name["nuance-emoji"]["defaults"]["scheduler"], "automatic");
    EXPECT_EQ(by_name["tiny.safetensors"]["defaults"]["width"], 512);  // an SD1 file
    EXPECT_EQ(by_name["tiny.safetensors"]["defaults"]["cfg_scale"], 7.0);
    // A model whose files cannot tell is listed with a null and a message without the server's paths.
    ASSERT_TRUE(by_name.count("broken.safetensors"));
    EXPECT_TRUE(by_name["broken.safetensors"]["defaults"].is_null());
    const std::string err = by_name["broken.safetensors"]["defaults_error"];
    EXPECT_THAT(err, HasSubstr("broken.safetensors"));
    EXPECT_EQ(err.find(models_dir().string()), std::string::npos) << err;
}

TEST(WebDefaults, EveryApiUsesTheModelsDefaultsForWhatARequestLeavesOut) {
    TestServer s(emoji_options());
    auto c = s.client();
    // A1111: no size, steps, CFG or sampler.
    auto r = c->Post("/sdapi/v1/txt2img", json({{"prompt", "grinning face, noto style"}, {"seed", 3}}).dump(), kJson);
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no response");
    json j = body_json(r);
    PngText text;
    EXPECT_EQ(decode_b64_png(j["images"][0], &text).width, 32);
    const json info = json::parse(j["info"].get<std::string>());
    EXPECT_EQ(info["width"], 32);
    EXPECT_EQ(info["steps"], 20);
    EXPECT_EQ(info["cfg_scale"], 3.0);
    EXPECT_EQ(info["sampler_name"], "Euler a");
    EXPECT_THAT(param(text, "parameters"), HasSubstr("Steps: 20, Sampler: Euler a"));
    EXPECT_THAT(param(text, "parameters"), HasSubstr("CFG scale: 3, Seed: 3, Size: 32x32"));
    // OpenAI: no size.
    r = c->Post("/v1/images/generations", json({{"prompt", "grinning face"}}).dump(), kJson);
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no response");
    EXPECT_EQ(body_json(r)["size"], "32x32");
    // Native: no size; an explicit value still wins.
    r = c->Post("/api/v1/jobs", json({{"prompt", "x"}, {"cfg_scale", 2}, {"steps", 3}}).dump(), kJson);
    ASSERT_TRUE(r && r->status == 202) << (r ? r->body : "no response");
    const std::string id = body_json(r)["id"];
    json st;
    for (int i = 0; i < 600; ++i) {
        st = body_json(c->Get("/api/v1/jobs/" + id + "?preview=0"));
        if (st["status"] == "done" || st["status"] == "failed") break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_EQ(st["status"], "done") << st.dump().substr(0, 400);
    EXPECT_EQ(st["images"][0]["width"], 32);
    EXPECT_THAT(st["images"][0]["infotext"].get<std::string>(), HasSubstr("Steps: 3, Sampler: Euler a"));
    EXPECT_THAT(st["images"][0]["infotext"].get<std::string>(), HasSubstr("CFG scale: 2, "));
    // The smallest size is 8 (multiples of 8).
    r = c->Post("/api/v1/jobs", json({{"prompt", "x"}, {"width", 4}}).dump(), kJson);
    EXPECT_EQ(error_message(r), "field 'width' must be in 8..2048, got 4");
}

TEST(WebDefaults, AModelDefaultOverTheServersLimitFailsTheJobWithAMessage) {
    // A folder that is the emoji model with a 64x64 default, served with --max-side 32.
    const fs::path dir = temp_path("big_default");
    fs::create_directories(dir);
    for (const char* sub : {"unet", "vae", "text_encoder", "scheduler"})
        fs::create_directory_symlink(fs::canonical(kEmoji / sub), dir / sub);
    std::ofstream(dir / "model_index.json")
        << R"({"_class_name": "StableDiffusionPipeline", "_nuance": {"defaults": {"width": 64, "height": 64}}})";
    ServerOptions o = test_options();
    o.model = dir.string();
    o.limits.max_side = 32;
    {
        TestServer s(o);
        auto c = s.client();
        auto r = c->Post("/sdapi/v1/txt2img", json({{"prompt", "x"}}).dump(), kJson);
        EXPECT_EQ(error_message(r), "the model's size 64x64 is over this server's limit of 32 pixels per side: "
                                    "send width and height");
        EXPECT_EQ(r->status, 400);
        r = c->Post("/sdapi/v1/txt2img", json({{"prompt", "x"}, {"width", 32}, {"height", 32}, {"steps", 2}}).dump(), kJson);
        EXPECT_EQ(r->status, 200) << r->body.substr(0, 300);
        EXPECT_EQ(body_json(c->Get("/api/v1/models"))["models"][0]["defaults"]["width"], 64);
        // An edited model_index.json is read again.
        std::ofstream(dir / "model_index.json")
            << R"({"_class_name": "StableDiffusionPipeline", "_nuance": {"defaults": {"steps": 7, "prompt": "edited"}}})";
        const json m = body_json(c->Get("/api/v1/models"))["models"][0];
        EXPECT_EQ(m["defaults"]["width"], 32);
        EXPECT_EQ(m["defaults"]["steps"], 7);
        EXPECT_EQ(m["defaults"]["prompt"], "edited");
        // A broken one is reported (named by the model, not the server's path), and fails jobs that need it.
        std::ofstream(dir / "model_index.json") << R"({"_nuance": {"defaults": {"steps": "many"}}})";
        const json b = body_json(c->Get("/api/v1/models"))["models"][0];
        EXPECT_TRUE(b["defaults"].is_null());
        EXPECT_EQ(b["defaults_error"], "'" + dir.filename().string() +
                                           "/model_index.json': _nuance.defaults.steps must be an integer, got \"many\"");
        r = c->Post("/sdapi/v1/txt2img", json({{"prompt", "x"}}).dump(), kJson);
        EXPECT_EQ(r->status, 400);
        EXPECT_EQ(error_message(r), "'" + dir.filename().string() +
                                        "/model_index.json': _nuance.defaults.steps must be an integer, got \"many\"");
    }
    fs::remove_all(dir);
}

TEST(WebDefaults, OutputDirSavesEveryImageAndListsThemNewestFirst) {
    const fs::path out = temp_path("outputs");
    {
        TestServer s(emoji_options(out.string()));
        auto c = s.client();
        auto r = c->Get("/api/v1/outputs");
        json j = body_json(r);
        EXPECT_EQ(j["enabled"], true);
        EXPECT_EQ(j["total"], 0);
        r = c->Post("/sdapi/v1/txt2img", json({{"prompt", "red heart"}, {"seed", 10}, {"batch_size", 2}, {"steps", 2}}).dump(), kJson);
        ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no response");
        r = c->Post("/sdapi/v1/txt2img", json({{"prompt", "blue heart"}, {"seed", 20}, {"steps", 2}}).dump(), kJson);
        ASSERT_TRUE(r && r->status == 200);
        j = body_json(c->Get("/api/v1/outputs"));
        ASSERT_EQ(j["total"], 3) << j.dump();
        std::vector<std::string> names;
        for (const auto& o : j["outputs"]) names.push_back(o["name"]);
        EXPECT_EQ(names, (std::vector<std::string>{"00003-20.png", "00002-11.png", "00001-10.png"}));
        EXPECT_EQ(j["outputs"][0]["seed"], 20);
        EXPECT_EQ(j["outputs"][0]["width"], 32);
        EXPECT_THAT(j["outputs"][0]["infotext"].get<std::string>(), HasSubstr("blue heart\nSteps: 2"));
        EXPECT_EQ(j["outputs"][0]["url"], "/api/v1/outputs/00003-20.png");
        // The file itself, with its parameters; the folder holds exactly these three PNGs (no temp files).
        r = c->Get("/api/v1/outputs/00001-10.png");
        ASSERT_TRUE(r && r->status == 200);
        EXPECT_EQ(r->get_header_value("Content-Type"), "image/png");
        const PngText t = parse_png_text((const uint8_t*)r->body.data(), r->body.size());
        EXPECT_THAT(param(t, "parameters"), HasSubstr("Seed: 10, Size: 32x32"));
        size_t files = 0;
        for (const auto& e : fs::directory_iterator(out)) files += e.is_regular_file();
        EXPECT_EQ(files, 3u);
        // Paging.
        j = body_json(c->Get("/api/v1/outputs?offset=1&limit=1"));
        ASSERT_EQ(j["outputs"].size(), 1u);
        EXPECT_EQ(j["outputs"][0]["name"], "00002-11.png");
        // Hostile names and parameters.
        EXPECT_EQ(error_message(c->Get("/api/v1/outputs/00009-1.png")), "no saved output '00009-1.png'");
        for (const std::string bad : {"..", "x.png", "00001-10.png.bak", "1-.png", "-1.png", "00001-10.PNG",
                                      "0000000000001-1.png", "%2e%2e%2fetc"}) {
            r = c->Get("/api/v1/outputs/" + bad);
            ASSERT_TRUE(r) << bad;
            EXPECT_TRUE(r->status == 400 || r->status == 404) << bad << " -> " << r->status;
            EXPECT_NE(r->get_header_value("Content-Type"), "image/png") << bad;
        }
        EXPECT_EQ(error_message(c->Get("/api/v1/outputs/x.png")),
                  "'x.png' is not the name of a saved output (NNNNN-SEED.png)");
        EXPECT_EQ(error_message(c->Get("/api/v1/outputs?limit=101")),
                  "query parameter 'limit' must be an integer in 0..100, got '101'");
        EXPECT_EQ(error_message(c->Get("/api/v1/outputs?offset=-1")),
                  "query parameter 'offset' must be an integer in 0..1073741824, got '-1'");
    }
    {
        // A restarted server continues the numbering and lists what the last one saved.
        TestServer s(emoji_options(out.string()));
        auto c = s.client();
        auto r = c->Post("/sdapi/v1/txt2img", json({{"prompt", "x"}, {"seed", 5}, {"steps", 1}}).dump(), kJson);
        ASSERT_TRUE(r && r->status == 200);
        const json j = body_json(c->Get("/api/v1/outputs?limit=2"));
        EXPECT_EQ(j["total"], 4);
        EXPECT_EQ(j["outputs"][0]["name"], "00004-5.png");
    }
    fs::remove_all(out);
    // Without --output-dir nothing is saved and the list says so.
    TestServer s(emoji_options());
    EXPECT_EQ(body_json(s.client()->Get("/api/v1/outputs"))["enabled"], false);
    EXPECT_EQ(error_message(s.client()->Get("/api/v1/outputs/00001-1.png")),
              "this server does not save outputs (start it with --output-dir DIR)");
}

TEST(WebDefaults, OutputDirThatIsAFileIsRefusedAtStart) {
    const fs::path f = temp_path("file");
    std::ofstream(f) << "x";
    EXPECT_THAT(nuance::test::error_of([&] { Server s(emoji_options(f.string())); }),
                HasSubstr("--output-dir '" + f.string() + "' is not a folder and cannot be created"));
    fs::remove(f);
}

// The browser test skips (77) only on a developer machine without its tools; with CI set a missing tool fails it.
TEST(WebDefaults, BrowserTestSkipsWithoutItsToolsOnlyOutsideCi) {
    const fs::path script = fs::path(NUANCE_TEST_DATA) / ".." / "server" / "run_web_e2e.sh";
    const fs::path src = fs::path(NUANCE_TEST_DATA) / ".." / "..";
    auto run = [&](const std::string& env) {
        const std::string cmd = "env -u CI " + env + " CHROMEDRIVER=/nonexistent/chromedriver " + script.string() + " " +
                                NUANCE_CLI_PATH + " " + src.string() + " 2>&1";
        std::string out;
        FILE* p = popen(cmd.c_str(), "r");
        char buf[512];
        size_t n;
        while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        const int st = p ? pclose(p) : -1;
        return std::make_pair(WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
    };
    auto [code, out] = run("");
    EXPECT_EQ(code, 77) << out;
    EXPECT_THAT(out, HasSubstr("SKIP: web_e2e needs: chromedriver (chromium-driver)"));
    std::tie(code, out) = run("CI=true");
    EXPECT_EQ(code, 1) << out;
    EXPECT_THAT(out, HasSubstr("FAIL (CI is set): web_e2e needs: chromedriver (chromium-driver)"));
    std::tie(code, out) = run("CI=true PYTHON=/nonexistent/python3");
    EXPECT_EQ(code, 1) << out;
    EXPECT_THAT(out, HasSubstr("selenium for /nonexistent/python3 (python3-selenium)"));
}

}  // namespace
}  // namespace nuance::server::test
