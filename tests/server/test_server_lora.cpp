// LoRAs in the server: GET /sdapi/v1/loras (A1111's shape, from --lora-dir), POST /sdapi/v1/refresh-loras, and
// <lora:name:w> in request prompts merged for that job only (the next job gets the base model back exactly).
#include <gmock/gmock.h>

#include "adapters/lora_library.h"
#include "io/safetensors.h"
#include "server_fixture.h"

using namespace nuance;
using namespace nuance::server;
using namespace nuance::server::test;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

const char* kJson = "application/json";

// A kohya LoRA on one UNet projection and one CLIP projection of the tiny SD1.5 (models_dir()/tiny.safetensors).
void write_lora(const fs::path& file, const std::map<std::string, std::string>& meta = {}) {
    fs::create_directories(file.parent_path());
    std::vector<std::pair<std::string, Tensor>> t;
    auto add = [&](const std::string& m, int64_t out, int64_t in) {
        std::vector<float> d((size_t)(2 * in)), u((size_t)(out * 2));
        for (size_t i = 0; i < d.size(); ++i) d[i] = 0.05f * (float)((i * 7) % 11) - 0.25f;
        for (size_t i = 0; i < u.size(); ++i) u[i] = 0.04f * (float)((i * 5) % 13) - 0.24f;
        t.push_back({m + ".lora_down.weight", Tensor::from_vector(d, {2, in})});
        t.push_back({m + ".lora_up.weight", Tensor::from_vector(u, {out, 2})});
        t.push_back({m + ".alpha", Tensor::scalar(2.0f)});
    };
    add("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 32, 32);
    add("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 64, 64);
    save_safetensors(file.string(), t, meta);
}

struct LoraDir {
    fs::path dir = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_server_loras_" + std::to_string(::getpid()) + "_" +
                                                ::testing::UnitTest::GetInstance()->current_test_info()->name());
    LoraDir() { write_lora(dir / "styles" / "style.safetensors", {{"ss_output_name", "my_style"}, {"ss_tag_frequency", "{\"a\": {\"b\": 2}}"}}); }
    ~LoraDir() { fs::remove_all(dir); }
};

json txt2img(const std::string& prompt) {
    return {{"prompt", prompt}, {"steps", 2}, {"width", 64}, {"height", 64}, {"seed", 5}, {"sampler_name", "Euler a"}};
}

struct Gen {
    int status = 0;
    std::vector<uint8_t> pixels;
    std::string infotext, error;
};

Gen generate(httplib::Client& c, const std::string& prompt) {
    Gen g;
    auto r = c.Post("/sdapi/v1/txt2img", txt2img(prompt).dump(), kJson);
    if (!r) return g;
    g.status = r->status;
    const json j = json::parse(r->body, nullptr, false);
    if (r->status != 200) {
        g.error = j.value("detail", std::string());
        return g;
    }
    const auto png = base64_decode(j["images"][0].get<std::string>(), "image");
    g.pixels = decode_image(png.data(), png.size()).pixels;
    g.infotext = json::parse(j["info"].get<std::string>())["infotexts"][0].get<std::string>();
    return g;
}

}  // namespace

TEST(ServerLora, ListsRefreshesAndAppliesPerRequest) {
    LoraDir ld;
    ServerOptions o = test_options();
    o.lora_dir = ld.dir.string();
    TestServer ts(o);
    auto c = ts.client();
    auto r = c->Get("/sdapi/v1/loras");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    json list = body_json(r);
    ASSERT_TRUE(list.is_array() && list.size() == 1) << r->body;
    EXPECT_EQ(list[0]["name"], "style");
    EXPECT_EQ(list[0]["alias"], "my_style");
    EXPECT_EQ(list[0]["path"], "styles/style.safetensors");  // never the server's own folders
    EXPECT_EQ(list[0]["metadata"]["ss_tag_frequency"]["a"]["b"], 2);
    EXPECT_EQ(list[0]["metadata"]["ss_output_name"], "my_style");

    const Gen base = generate(*c, "apple");
    ASSERT_EQ(base.status, 200) << base.error;
    const Gen with = generate(*c, "apple <lora:style:4>");
    ASSERT_EQ(with.status, 200) << with.error;
    EXPECT_NE(base.pixels, with.pixels);
    EXPECT_THAT(with.infotext, HasSubstr("apple <lora:style:4>\nSteps: 2"));
    EXPECT_THAT(with.infotext, HasSubstr(", Lora hashes: \"style: " +
                                         lora_short_hash((ld.dir / "styles" / "style.safetensors").string()) + "\""));
    EXPECT_THAT(base.infotext, Not(HasSubstr("Lora hashes")));
    // The alias works too, and the next plain request gets the base model back exactly.
    const Gen alias = generate(*c, "apple <lora:my_style:4>");
    ASSERT_EQ(alias.status, 200) << alias.error;
    EXPECT_EQ(alias.pixels, with.pixels);
    EXPECT_EQ(generate(*c, "apple").pixels, base.pixels);

    // Unknown name: 404 naming it and the close names, not the server's folder.
    const Gen bad = generate(*c, "apple <lora:stlye:1>");
    EXPECT_EQ(bad.status, 404);
    EXPECT_EQ(bad.error, "LoRA 'stlye' is not in the server's LoRA folder (1 LoRAs; close names: style)");
    EXPECT_THAT(bad.error, Not(HasSubstr(ld.dir.string())));
    const Gen weight = generate(*c, "apple <lora:style:abc>");
    EXPECT_EQ(weight.status, 400);
    EXPECT_EQ(weight.error, "prompt: <lora:style:abc>: weight 'abc' is not a number");
    EXPECT_EQ(generate(*c, "apple").pixels, base.pixels);

    // A file added later appears after refresh-loras.
    write_lora(ld.dir / "new_one.safetensors");
    EXPECT_EQ(body_json(c->Get("/sdapi/v1/loras")).size(), 1u);
    r = c->Post("/sdapi/v1/refresh-loras", "", kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    list = body_json(c->Get("/sdapi/v1/loras"));
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[0]["name"], "new_one");
    EXPECT_EQ(list[0]["alias"], "new_one");
    EXPECT_EQ(generate(*c, "apple <lora:new_one:4>").pixels, with.pixels);
}

TEST(ServerLora, WithoutLoraDir) {
    TestServer ts;
    auto c = ts.client();
    EXPECT_EQ(body_json(c->Get("/sdapi/v1/loras")), json::array());
    const Gen g = generate(*c, "apple <lora:style:1>");
    EXPECT_EQ(g.status, 400);
    EXPECT_EQ(g.error, "prompt: <lora:style:1> names a LoRA but this server has no LoRA folder (--lora-dir)");
}
