// pipeline_sd15: the whole txt2img pipeline (tokenizer, CLIP-L, UNet with CFG 7.5, DDIM and Euler, VAE decode) on
// the tiny components, from fixed initial latents, against diffusers' StableDiffusionPipeline.
#include <cmath>

#include "eval/golden/pipeline_golden.h"
#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "ops/ops.h"
#include "models/sd/sd_conditioning.h"
#include "pipelines/generate.h"
#include "samplers/registry.h"

namespace nuance {

namespace {

template <class M, class C>
std::unique_ptr<M> load_component(const std::string& file, C cfg) {
    auto m = std::make_unique<M>(cfg);
    load_module(*m, load_safetensors(file).tensors, {.source = file});
    return m;
}

// The reference's own words: "expect ~1e-4..1e-3 relative to max|ref| for a float32 port"; we hold the strict end.
constexpr double kRelTol = 1e-4;

CompareLine compare_rel(const GoldenCase& gc, const std::string& t, const Tensor& got) {
    const double scale = std::max(1.0, (double)max_abs(gc.tensor(t)));
    CompareLine l = gc.compare(t, got, kRelTol * scale);
    return l;
}

}  // namespace

std::vector<CompareLine> check_golden_pipeline_sd15(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    const std::string base = dir + "/..";
    const GoldenCase clip_case = GoldenCase::load(base + "/clip_text");
    const GoldenCase unet_case = GoldenCase::load(base + "/unet_sd15");
    const GoldenCase vae_case = GoldenCase::load(base + "/vae");

    StableDiffusionModel m;
    m.family = SDFamily::SD1;
    m.name = "pipeline_sd15";
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
        const WeightFile wf = load_safetensors(base + "/unet_sd15/unet.safetensors");
        UNetConfig c = UNetConfig::detect(wf.tensors);
        c.apply_json(unet_case.model_config("unet_sd15"));
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

    std::vector<CompareLine> out;
    const std::string prompt = gc.meta()["prompt"].get<std::string>();
    const std::string negative = gc.meta()["negative_prompt"].get<std::string>();
    ConditioningOptions co;
    co.syntax = PromptSyntax::Literal;
    out.push_back(compare_rel(gc, "prompt_embeds", encode_prompt(m, prompt, co).context));
    out.push_back(compare_rel(gc, "negative_prompt_embeds", encode_prompt(m, negative, co).context));

    const Tensor init = gc.tensor("latents_init");
    const int steps = gc.meta()["num_inference_steps"].get<int>();
    for (const std::string sampler : {"ddim", "euler"}) {
        const auto& sc = gc.meta()[sampler + "_scheduler"]["config"];
        m.scheduler_config = sc;
        GenerateParams p;
        p.prompt = prompt;
        p.negative_prompt = negative;
        p.syntax = PromptSyntax::Literal;
        p.cfg_scale = gc.meta()["guidance_scale"].get<float>();
        p.steps = steps;
        p.height = gc.meta()["height"].get<int>();
        p.width = gc.meta()["width"].get<int>();
        p.sampler = sampler;
        p.scheduler = "normal";
        p.initial_noise = init;
        // diffusers keeps DDIM latents in the VP scaling x / sqrt(sigma^2 + 1), Euler's in the VE scaling.
        const bool vp = find_sampler(sampler).family == ScheduleFamily::Ddim;
        std::vector<Tensor> per_step;
        p.on_progress = [&](const GenerateProgress& pr) {
            per_step.push_back(vp ? *pr.latents / (float)std::sqrt(pr.sigma * pr.sigma + 1.0) : pr.latents->clone());
        };
        const std::vector<GeneratedImage> r = generate(m, p);

        const Schedule s = make_sampler_schedule(find_sampler(sampler), NoiseSchedule(), steps, ScheduleType::Normal,
                                                 parse_spacing(sc.value("timestep_spacing", std::string("linspace"))),
                                                 sc.value("steps_offset", 0));
        std::vector<float> ts(s.timesteps.begin(), s.timesteps.end());
        out.push_back(gc.compare(sampler + ".timesteps", Tensor::from_vector(ts, {(int64_t)ts.size()}), 1e-3));
        out.push_back(compare_rel(gc, sampler + ".latents_per_step", cat(per_step, 0).unsqueeze(1)));
        out.push_back(compare_rel(gc, sampler + ".latents_final", r[0].latents));
        out.push_back(compare_rel(gc, sampler + ".decoded_raw", r[0].decoded));
        const Tensor image = clamp(r[0].decoded / 2.0f + 0.5f, 0.0f, 1.0f).permute({0, 2, 3, 1}).contiguous();
        out.push_back(compare_rel(gc, sampler + ".image", image));
    }
    for (auto& l : out) l.reason = l.reason.empty() ? "(atol = 1e-4 x max(1, max|ref|), the strict end of the case's stated float32 error)" : l.reason;
    return out;
}

}  // namespace nuance
