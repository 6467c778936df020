// Textual inversions in the server: --embedding-dir (or <models-dir>/embeddings), GET /sdapi/v1/embeddings in
// A1111's shape, a request prompt (or negative prompt) naming one gets its vectors, and a wrong-width embedding is a
// 400 that names it but not the server's folder.
#include <gmock/gmock.h>

#include "io/safetensors.h"
#include "server_fixture.h"

using namespace nuance;
using namespace nuance::server;
using namespace nuance::server::test;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

const char* kJson = "application/json";

struct EmbeddingDir {
    fs::path dir = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_server_emb_" + std::to_string(::getpid()) + "_" +
                                                ::testing::UnitTest::GetInstance()->current_test_info()->name());
    EmbeddingDir() {
        fs::create_directories(dir / "embeddings");
        std::vector<float> v(3 * 64);
        for (size_t i = 0; i < v.size(); ++i) v[i] = 0.07f * (float)((int)(i % 9) - 4);
        save_safetensors((dir / "embeddings" / "shiny.safetensors").string(),
                         {{"emb_params", Tensor::from_vector(v, {3, 64})}});
        fs::copy_file(std::string(NUANCE_TEST_DATA) + "/textual_inversion/charb.safetensors",
                      dir / "embeddings" / "narrow.safetensors");  // 32 wide: not the tiny model's 64
        std::ofstream(dir / "embeddings" / "broken.pt") << "not a torch file";
        fs::create_symlink(models_dir() / "tiny.safetensors", dir / "tiny.safetensors");
    }
    ~EmbeddingDir() { fs::remove_all(dir); }
};

struct Gen {
    int status = 0;
    std::vector<uint8_t> pixels;
    std::string error;
};

Gen generate(httplib::Client& c, const std::string& prompt, const std::string& negative = "") {
    Gen g;
    const json body = {{"prompt", prompt}, {"negative_prompt", negative}, {"steps", 2}, {"width", 64}, {"height", 64},
                       {"seed", 5}, {"sampler_name", "Euler a"}};
    auto r = c.Post("/sdapi/v1/txt2img", body.dump(), kJson);
    if (!r) return g;
    g.status = r->status;
    const json j = json::parse(r->body, nullptr, false);
    if (r->status != 200) {
        g.error = j.value("detail", std::string());
        return g;
    }
    const auto png = base64_decode(j["images"][0].get<std::string>(), "image");
    g.pixels = decode_image(png.data(), png.size()).pixels;
    return g;
}

}  // namespace

TEST(ServerEmbeddings, ListedFromTheModelsFolderAndUsedByPrompts) {
    EmbeddingDir ed;
    ServerOptions o = test_options();
    o.models_dir = ed.dir.string();  // <models-dir>/embeddings: A1111's layout, no flag needed
    o.model = (ed.dir / "tiny.safetensors").string();
    TestServer ts(o);
    auto c = ts.client();
    auto r = c->Get("/sdapi/v1/embeddings");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    const json j = body_json(r);
    ASSERT_TRUE(j["loaded"].contains("shiny")) << j.dump();
    EXPECT_EQ(j["loaded"]["shiny"]["vectors"], 3);
    EXPECT_EQ(j["loaded"]["shiny"]["shape"], 64);
    EXPECT_EQ(j["loaded"]["narrow"]["shape"], 32);
    EXPECT_TRUE(j["skipped"].contains("broken")) << j.dump();

    const Gen plain = generate(*c, "a shiny cat");
    ASSERT_EQ(plain.status, 200) << plain.error;
    // the same prompt on a server without the folder is a different image: the vectors were used
    ServerOptions o2 = test_options();
    TestServer ts2(o2);
    auto c2 = ts2.client();
    const Gen literal = generate(*c2, "a shiny cat");
    ASSERT_EQ(literal.status, 200) << literal.error;
    EXPECT_NE(plain.pixels, literal.pixels);
    // the negative prompt takes them too
    const Gen neg = generate(*c, "a cat", "shiny");
    const Gen neg_literal = generate(*c2, "a cat", "shiny");
    ASSERT_EQ(neg.status, 200) << neg.error;
    EXPECT_NE(neg.pixels, neg_literal.pixels);
    // an embedding for another width: 400, naming it, not the folder
    const Gen bad = generate(*c, "a narrow cat");
    EXPECT_EQ(bad.status, 400);
    EXPECT_THAT(bad.error, HasSubstr("embedding 'narrow'"));
    EXPECT_THAT(bad.error, HasSubstr("width 32"));
    EXPECT_THAT(bad.error, Not(HasSubstr(ed.dir.string())));
    // and the server goes on
    EXPECT_EQ(generate(*c, "a shiny cat").pixels, plain.pixels);
}

TEST(ServerEmbeddings, FlagFolderAndNone) {
    EmbeddingDir ed;
    ServerOptions o = test_options();
    o.embedding_dir = (ed.dir / "embeddings").string();
    TestServer ts(o);
    auto r = ts.client()->Get("/sdapi/v1/embeddings");
    ASSERT_TRUE(r);
    EXPECT_TRUE(body_json(r)["loaded"].contains("shiny"));
    // without one: A1111's empty answer
    TestServer plain;
    r = plain.client()->Get("/sdapi/v1/embeddings");
    ASSERT_TRUE(r);
    EXPECT_EQ(body_json(r), json({{"loaded", json::object()}, {"skipped", json::object()}}));
    // a missing folder is refused at start
    ServerOptions bad = test_options();
    bad.embedding_dir = "/nonexistent/embeddings";
    try {
        Server s(bad);
        ADD_FAILURE() << "a missing --embedding-dir was accepted";
    } catch (const Error& e) {
        EXPECT_THAT(std::string(e.what()), HasSubstr("/nonexistent/embeddings"));
    }
}
