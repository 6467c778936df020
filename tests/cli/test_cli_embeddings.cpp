// `nuance generate --embedding-dir DIR` end to end: a textual inversion named in the prompt or the negative prompt
// changes the image; a wrong-width embedding and a missing folder fail with messages naming them.
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_util.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "tiny_model_suite.h"

using namespace nuance;
using nuance::test::CliRun;
using nuance::test::run_cli;

namespace {

class CliEmbeddings : public nuance::test::TinyModelSuite<CliEmbeddings> {
protected:
    static void SetUpTestSuite() {
        TinyModelSuite::SetUpTestSuite();
        std::filesystem::create_directories(path("emb"));
        std::vector<float> v(2 * 64);
        for (size_t i = 0; i < v.size(); ++i) v[i] = 0.05f * (float)((int)(i % 13) - 6);
        save_safetensors(path("emb/shiny.safetensors"), {{"emb_params", Tensor::from_vector(v, {2, 64})}});
        // 32 wide: the golden tiny CLIP's width, not this model's 64.
        std::filesystem::copy_file(std::string(NUANCE_TEST_DATA) + "/textual_inversion/charb.safetensors",
                                   path("emb/charb.safetensors"));
    }
};

const std::string kGen = " generate -q --steps 2 -W 64 -H 64 --seed 5 ";

bool same_image(const std::string& a, const std::string& b) { return read_image(a).pixels == read_image(b).pixels; }

}  // namespace

TEST_F(CliEmbeddings, PromptAndNegativePromptUseTheEmbedding) {
    CliRun r = run_cli(kGen + "-m " + model() + " -p 'a shiny cat' -n blurry -o " + path("plain.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli(kGen + "-m " + model() + " --embedding-dir " + path("emb") + " -p 'a shiny cat' -n blurry -o " +
                path("emb.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_FALSE(same_image(path("plain.png"), path("emb.png")));
    r = run_cli(kGen + "-m " + model() + " --embeddings-dir " + path("emb") + " -p 'a cat' -n shiny -o " +
                path("neg.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli(kGen + "-m " + model() + " -p 'a cat' -n shiny -o " + path("neg_plain.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_FALSE(same_image(path("neg.png"), path("neg_plain.png")));
}

TEST_F(CliEmbeddings, ErrorsNameTheEmbeddingAndTheFolder) {
    CliRun r = run_cli(kGen + "-m " + model() + " --embedding-dir " + path("emb") + " -p 'charb' -o " + path("x.png"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("embedding 'charb'"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("width 32"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("is 64 wide"), std::string::npos) << r.out;
    r = run_cli(kGen + "-m " + model() + " --embedding-dir " + path("nothing") + " -p cat -o " + path("y.png"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("--embedding-dir"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("is not a folder"), std::string::npos) << r.out;
}
