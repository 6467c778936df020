// --models-dir with symlinks (issue 12): models are named by their path inside the folder (not by where a link
// points), symlinked models are served, and a model that fails to load never shows the client its file's bytes or
// an absolute path.
#include <gmock/gmock.h>

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
    const fs::path base = fs::temp_directory_path() / ("nuance_server_links_" + std::to_string(::getpid()));
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
