#include "eval/golden/pipeline_inpaint_golden.h"

#include <cmath>
#include <cstring>

#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "models/sd/stable_diffusion.h"
#include "ops/ops.h"
#include "pipelines/inpaint.h"
#include "samplers/registry.h"

namespace nuance {

namespace {

// The reference's own words: "expect ~1e-4..1e-3 relative to max|ref| for a float32 port"; we hold the strict end.
constexpr double kRelTol = 1e-4;

// Answers the pipeline's draws from the case's stored VAE posterior noise, in call order.
class StoredRng : public Rng {
public:
    explicit StoredRng(std::vector<Tensor> draws) : draws_(std::move(draws)) {}
    void fill_randn(float* out, int64_t n) override {
        NUANCE_CHECK(next_ < draws_.size(), "pipeline_inpaint: the pipeline drew more than the ", draws_.size(),
                     " stored noise tensors");
        const Tensor t = draws_[next_++].contiguous();
        NUANCE_CHECK(t.numel() == n, "pipeline_inpaint: draw ", next_, " has ", n, " values, stored ", t.numel());
        std::memcpy(out, t.data<float>(), (size_t)n * sizeof(float));
    }
    size_t used() const { return next_; }

private:
    std::vector<Tensor> draws_;
    size_t next_ = 0;
};

// Records every UNet input (with the inpainting channels) and raw output.
struct RecordingModel : StableDiffusionModel {
    mutable std::vector<Tensor> inputs, outputs;
    Tensor predict(const Tensor& x_in, double t, const Conditioning& c, const StepContext& s) const override {
        const Tensor out = StableDiffusionModel::predict(x_in, t, c, s);
        if (s.concat.defined()) {
            std::vector<Tensor> rows((size_t)x_in.size(0), s.concat);
            inputs.push_back(cat({x_in, cat(rows, 0)}, 1));
        } else {
            inputs.push_back(x_in.clone());
        }
        outputs.push_back(out.clone());
        return out;
    }
};

CompareLine rel(const GoldenCase& gc, const std::string& t, const Tensor& got) {
    const double scale = std::max(1.0, (double)max_abs(gc.tensor(t)));
    return gc.compare(t, got, kRelTol * scale);
}

Image u8_image(const Tensor& t, int channels) {
    const Tensor c = t.contiguous();
    NUANCE_CHECK(c.dtype() == DType::U8, "pipeline_inpaint: expected a U8 image tensor, got ", c.str());
    Image img;
    img.height = (int)c.size(0);
    img.width = (int)c.size(1);
    img.channels = channels;
    img.pixels.assign(c.data<uint8_t>(), c.data<uint8_t>() + c.numel());
    return img;
}

void load_components(RecordingModel& m, const GoldenCase& gc, const std::string& base, const std::string& unet_file) {
    const GoldenCase clip_case = GoldenCase::load(base + "/clip_text");
    const GoldenCase unet_case = GoldenCase::load(base + "/unet_sd15");
    const GoldenCase vae_case = GoldenCase::load(base + "/vae");
    m.family = SDFamily::SD1;
    m.name = "pipeline_inpaint";
    m.prediction = "epsilon";
    {
        const WeightFile wf = load_safetensors(base + "/clip_text/clip_l.safetensors");
        ClipTextConfig c = ClipTextConfig::detect(wf.tensors);
        c.apply_hf_config(clip_case.model_config("clip_l"));
        m.te1.model = std::make_unique<ClipTextModel>(c);
        load_module(*m.te1.model, wf.tensors, gc.load_options(wf.path));
        m.te1.own_tokenizer = std::make_unique<ClipTokenizer>(ClipTokenizer::from_files(
            base + "/clip_tokenizer/vocab.json", base + "/clip_tokenizer/merges.txt"));
        m.te1.pad_id = ClipTokenizer::kEosId;
    }
    {
        const WeightFile wf = load_safetensors(unet_file);
        UNetConfig c = UNetConfig::detect(wf.tensors);
        c.apply_json(unet_case.model_config("unet_sd15"));
        c.in_channels = UNetConfig::detect(wf.tensors).in_channels;  // 9 for the inpainting UNet
        m.unet = std::make_unique<UNet2DConditionModel>(c);
        load_module(*m.unet, wf.tensors, gc.load_options(wf.path));
    }
    {
        const WeightFile wf = load_safetensors(base + "/vae/vae_sd.safetensors");
        AutoencoderKLConfig c = AutoencoderKLConfig::detect(wf.tensors);
        c.apply_diffusers_config(vae_case.model_config("vae_sd"));
        m.vae = std::make_unique<AutoencoderKL>(c);
        load_module(*m.vae, wf.tensors, gc.load_options(wf.path));
    }
}

std::vector<Tensor> draws_of(const Tensor& t) {
    std::vector<Tensor> out;
    for (int64_t i = 0; i < t.size(0); ++i) out.push_back(t.select(0, i).contiguous());
    return out;
}

}  // namespace

std::vector<CompareLine> check_golden_pipeline_inpaint(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    const std::string base = dir + "/..";
    const Image init = u8_image(gc.tensor("init_image_u8"), 3);
    const Image mask = u8_image(gc.tensor("mask_u8"), 1);
    const int steps = gc.meta()["num_inference_steps"].get<int>();
    const int H = gc.meta()["height"].get<int>(), W = gc.meta()["width"].get<int>();

    std::vector<CompareLine> out;
    const Tensor image = image_to_tensor(init);
    const Tensor cond = inpaint_mask_condition(mask);
    out.push_back(rel(gc, "init_image", image));
    out.push_back(rel(gc, "mask_condition", cond));
    out.push_back(rel(gc, "masked_image", image * (1.0f - cond)));

    for (const std::string path : {"inpaint9", "blend4"}) {
        RecordingModel m;
        load_components(m, gc, base, path == "inpaint9" ? dir + "/unet_inpaint.safetensors"
                                                        : base + "/unet_sd15/unet.safetensors");
        m.scheduler_config = gc.meta()[path + "_scheduler"]["config"];
        NUANCE_CHECK(m.inpaint_channels() == (path == "inpaint9" ? 5 : 0), "pipeline_inpaint/", path,
                     ": the UNet takes ", m.unet->config().in_channels, " channels");
        GenerateParams p;
        p.prompt = gc.meta()["prompt"].get<std::string>();
        p.negative_prompt = gc.meta()["negative_prompt"].get<std::string>();
        p.syntax = PromptSyntax::Literal;
        p.cfg_scale = gc.meta()["guidance_scale"].get<float>();
        p.steps = steps;
        p.width = W;
        p.height = H;
        p.sampler = "ddim";
        p.scheduler = "normal";
        p.strength = gc.meta()["strength"].get<float>();
        p.init_image = init;
        p.mask = mask;
        p.inpaint.mask_blur = 0;  // diffusers: the mask as given
        p.inpaint.fill = InpaintFill::Original;
        p.initial_noise = gc.tensor("latents_init");
        const std::vector<Tensor> noise = draws_of(gc.tensor(path + ".posterior_noise"));
        StoredRng rng(noise);
        p.rng_override = &rng;
        std::vector<Tensor> per_step;
        p.on_progress = [&](const GenerateProgress& pr) {  // diffusers keeps DDIM latents in the VP scaling
            per_step.push_back(*pr.latents / (float)std::sqrt(pr.sigma * pr.sigma + 1.0));
        };
        const std::vector<GeneratedImage> r = generate(m, p);

        const Tensor lat = inpaint_nearest_downsample(cond, H / 8, W / 8);
        out.push_back(rel(gc, path + ".mask_latents", lat));
        const Tensor masked_pixels = image * (1.0f - cond);
        if (path == "inpaint9") {
            StoredRng again(noise);
            out.push_back(rel(gc, path + ".masked_image_latents", m.encode_pixels(masked_pixels, {}, again)));
        } else {
            StoredRng again(noise);
            out.push_back(rel(gc, path + ".image_latents", m.encode_pixels(image, {}, again)));
            out.push_back(rel(gc, path + ".masked_image_latents", m.encode_pixels(masked_pixels, {}, again)));
        }
        const Schedule s = make_sampler_schedule(find_sampler("ddim"), NoiseSchedule(), steps, ScheduleType::Normal,
                                                 Spacing::Leading, 1);
        std::vector<float> ts(s.timesteps.begin(), s.timesteps.end());
        if (path == "inpaint9")
            out.push_back(gc.compare("timesteps", Tensor::from_vector(ts, {(int64_t)ts.size()}), 1e-3));
        out.push_back(rel(gc, path + ".latents_per_step", cat(per_step, 0).unsqueeze(1)));
        std::vector<Tensor> in, o;
        for (size_t i = 0; i < m.inputs.size(); ++i) {
            in.push_back(m.inputs[i].unsqueeze(0));
            o.push_back(m.outputs[i].unsqueeze(0));
        }
        NUANCE_CHECK(in.size() == (size_t)steps, "pipeline_inpaint/", path, ": ", in.size(), " UNet calls for ", steps,
                     " steps");
        out.push_back(rel(gc, path + ".unet_input", cat(in, 0)));
        out.push_back(rel(gc, path + ".noise_pred", cat(o, 0)));
        out.push_back(rel(gc, path + ".latents_final", r[0].latents));
        out.push_back(rel(gc, path + ".decoded_raw", r[0].decoded));
        const Tensor img = clamp(r[0].decoded / 2.0f + 0.5f, 0.0f, 1.0f).permute({0, 2, 3, 1}).contiguous();
        out.push_back(rel(gc, path + ".image", img));
    }
    for (auto& l : out)
        if (l.reason.empty()) l.reason = "(atol = 1e-4 x max(1, max|ref|), the strict end of the case's stated float32 error)";
    return out;
}

}  // namespace nuance
