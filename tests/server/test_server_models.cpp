// --models-dir with symlinks (issue 12): models are named by their path inside the folder (not by where a link
// points), symlinked models are served, and a model that fails to load never shows the client its file's bytes or
// an absolute path.
#include <gmock/gmock.h>
#include <sys/stat.h>

#include "../test_util.h"
#include "model_store.h"
#include "server_fixture.h"

using namespace nuance;
using namespace nuance::server;
using namespace nuance::server::test;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

// base/outside/{tiny_sd2,secret}.safetensors; base/models/real.safetensors, models/linked.safetensors ->
// ../outside/tiny_sd2.safetensors, models/deep/passwd.safetensors -> <abs>/outside/secret.safetensors (a text file),
// models/dirlink -> ../outside (a link to a folder: not entered).
fs::path make_linked_models() {
    const fs::path base = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_server_links_" + std::to_string(::getpid()));
    fs::remove_all(base);
    fs::create_directories(base / "outside");
    fs::create_directories(base / "models" / "deep");
    fs::copy_file(models_dir() / "tiny.safetensors", base / "outside" / "tiny_sd2.safetensors");
    fs::copy_file(models_dir() / "tiny.safetensors", base / "models" / "real.safetensors");
    std::ofstream(base / "outside" / "secret.safetensors") << "root:x:0:0:SECRET-CONTENTS:/root:/bin/bash\n";
    fs::create_symlink("../outside/tiny_sd2.safetensors", base / "models" / "linked.safetensors");
    fs::create_symlink(base / "outside" / "secret.safetensors", base / "models" / "deep" / "passwd.safetensors");
    fs::create_directory_symlink("../outside", base / "models" / "dirlink");
    return base;
}

}  // namespace

TEST(ServerModels, SymlinkedModelsAreNamedByTheirPlaceInTheFolder) {
    const fs::path base = make_linked_models();
    ModelStore s("", (base / "models").string() + "/");  // a trailing slash changes nothing
    std::vector<std::string> names;
    for (const auto& e : s.list()) names.push_back(e.name);
    EXPECT_THAT(names, ::testing::ElementsAre("deep/passwd.safetensors", "linked.safetensors", "real.safetensors"));
    EXPECT_EQ(s.resolve("linked").path, (base / "models" / "linked.safetensors").string());
    EXPECT_EQ(s.resolve("passwd").name, "deep/passwd.safetensors");  // bare name: the listed entry, nothing else
    fs::remove_all(base);
}

TEST(ServerModels, SymlinkedModelsServeAndLoadErrorsHideBytesAndPaths) {
    const fs::path base = make_linked_models();
    ServerOptions o = test_options();
    o.model.clear();
    o.models_dir = (base / "models").string();
    TestServer ts(o);
    auto c = ts.client();
    auto r = c->Get("/sdapi/v1/sd-models");
    ASSERT_TRUE(r);
    EXPECT_THAT(r->body, Not(HasSubstr("..")));
    EXPECT_THAT(r->body, Not(HasSubstr(base.string())));
    const json req = {{"prompt", "x"}, {"steps", 1}, {"width", 64}, {"height", 64}};
    for (const char* name : {"deep/passwd.safetensors", "passwd"}) {
        json body = req;
        body["override_settings"] = {{"sd_model_checkpoint", name}};
        r = c->Post("/sdapi/v1/txt2img", body.dump(), "application/json");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 500);
        const std::string msg = error_message(r);
        EXPECT_THAT(msg, HasSubstr("cannot load model 'deep/passwd.safetensors': "));
        EXPECT_THAT(msg, HasSubstr("(the server log has the details)"));
        EXPECT_THAT(r->body, Not(HasSubstr("SECRET")));
        EXPECT_THAT(r->body, Not(HasSubstr("root:x")));
        EXPECT_THAT(r->body, Not(HasSubstr(base.string())));
    }
    json body = req;
    body["override_settings"] = {{"sd_model_checkpoint", "linked.safetensors"}};
    r = c->Post("/sdapi/v1/txt2img", body.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body.substr(0, 300);
    EXPECT_EQ(body_json(r)["images"].size(), 1u);
    fs::remove_all(base);
}

namespace {

// base/models/{real,loop (-> itself),fifo (a FIFO),dangling (-> nowhere)}.safetensors
fs::path make_unusable_models() {
    const fs::path base = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_server_unusable_" + std::to_string(::getpid()));
    fs::remove_all(base);
    fs::create_directories(base / "models");
    fs::copy_file(models_dir() / "tiny.safetensors", base / "models" / "real.safetensors");
    fs::create_symlink("loop.safetensors", base / "models" / "loop.safetensors");
    fs::create_symlink("nowhere.safetensors", base / "models" / "dangling.safetensors");
    EXPECT_EQ(::mkfifo((base / "models" / "fifo.safetensors").c_str(), 0600), 0);
    return base;
}

}  // namespace

TEST(ServerModels, UnusableModelFilesSayWhatTheyAreByName) {
    const fs::path base = make_unusable_models();
    const std::string models = (base / "models").string();
    ModelStore s("", models);
    std::vector<std::string> names;
    for (const auto& e : s.list()) names.push_back(e.name);
    EXPECT_THAT(names, ::testing::ElementsAre("real.safetensors"));
    EXPECT_EQ(nuance::test::error_of([&] { s.resolve("loop.safetensors"); }),
              "model 'loop.safetensors': too many levels of symbolic links");
    EXPECT_EQ(nuance::test::error_of([&] { s.resolve("fifo.safetensors"); }),
              "model 'fifo.safetensors' is not a regular file (it is a FIFO)");
    EXPECT_EQ(nuance::test::error_of([&] { s.resolve("dangling.safetensors"); }), "model 'dangling.safetensors' does not exist");
    EXPECT_THAT(nuance::test::error_of([&] { s.resolve("absent.safetensors"); }),
                HasSubstr("model 'absent.safetensors' not found; available: real.safetensors"));
    // -m naming a symlink loop: the operator sees the path and what is wrong with it, not "does not exist".
    EXPECT_EQ(nuance::test::error_of([&] { ModelStore(models + "/loop.safetensors", ""); }),
              "model '" + models + "/loop.safetensors': too many levels of symbolic links");
    // A listed model that turned into a loop after the scan: named, never the server's path.
    ModelStore one(models + "/real.safetensors", "");
    ASSERT_EQ(one.resolve("real.safetensors").name, "real.safetensors");
    fs::remove(base / "models" / "real.safetensors");
    fs::create_symlink("real.safetensors", base / "models" / "real.safetensors");
    EXPECT_EQ(nuance::test::error_of([&] { one.resolve("real.safetensors"); }),
              "model 'real.safetensors': too many levels of symbolic links");
    fs::remove_all(base);
}

TEST(ServerModels, RequestForASymlinkLoopGetsA4xxWithoutPaths) {
    const fs::path base = make_unusable_models();
    ServerOptions o = test_options();
    o.model.clear();
    o.models_dir = (base / "models").string();
    TestServer ts(o);
    auto c = ts.client();
    const json req = {{"prompt", "x"}, {"steps", 1}, {"width", 64}, {"height", 64}};
    const std::pair<const char*, const char*> cases[] = {
        {"loop.safetensors", "model 'loop.safetensors': too many levels of symbolic links"},
        {"fifo.safetensors", "model 'fifo.safetensors' is not a regular file (it is a FIFO)"}};
    for (const auto& [name, message] : cases) {
        json body = req;
        body["override_settings"] = {{"sd_model_checkpoint", name}};
        auto r = c->Post("/sdapi/v1/txt2img", body.dump(), "application/json");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 400) << r->body.substr(0, 300);
        EXPECT_EQ(error_message(r), message);
        EXPECT_THAT(r->body, Not(HasSubstr(base.string())));
    }
    fs::remove_all(base);
}
