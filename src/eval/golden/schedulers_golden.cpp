// Replays tests/data/golden/schedulers: for each diffusers scheduler loop, builds the matching nuance schedule,
// denoiser and sampler, drives it with the same fake model and the same pre-drawn noise, and compares timesteps,
// sigmas, alphas_cumprod, every model input, every intermediate latent and the noise-draw order.
//
// Scalings: diffusers' sigma-based schedulers (Euler, Euler a, Heun, LMS) keep x in VE scaling like nuance;
// DDIM/DDPM/DPM-Solver keep the VP latent x_vp = x / sqrt(sigma^2 + 1), so nuance's x is converted before
// comparing. Flow schedules need no conversion.
#include "eval/golden/schedulers_golden.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "ops/elementwise.h"
#include "samplers/registry.h"

#pragma GCC optimize("fp-contract=off")

namespace nuance {

namespace {

using json = nlohmann::json;

// Hands out the reference's stored noise tensors in order and records the loop step of each draw.
class ReplayRng : public Rng {
public:
    ReplayRng(Tensor noise, std::vector<int64_t> steps) : noise_(noise.contiguous()), steps_(std::move(steps)) {}
    void fill_randn(float* out, int64_t n) override {
        const int64_t k = noise_.defined() ? noise_.size(0) : 0;
        NUANCE_CHECK(next_ < k, "sampler drew noise #", next_ + 1, " but the reference drew only ", k);
        const int64_t per = noise_.numel() / k;
        NUANCE_CHECK(n == per, "sampler drew ", n, " values, the reference's draws have ", per);
        const std::vector<float> v = noise_.select(0, next_).to_vector();
        std::copy(v.begin(), v.end(), out);
        draw_steps.push_back(current_step);
        ++next_;
    }
    int64_t current_step = 0;
    std::vector<int64_t> draw_steps;
    const std::vector<int64_t>& ref_steps() const { return steps_; }

private:
    Tensor noise_;
    std::vector<int64_t> steps_;
    int64_t next_ = 0;
};

// The golden fake model: out = a * x_in * c + b, c = (float)cos((double)t / 1000), float32 elementwise
// (the schedulers case: a = 0.3, b = 0.05; the scheduler_sweep case states a and b per entry).
Tensor fake_model(const Tensor& x_in, double t, float fa = 0.3f, float fb = 0.05f) {
    const float c = (float)std::cos(t / 1000.0);
    const Tensor xin = x_in.f32().contiguous();
    Tensor out = Tensor::empty(xin.shape(), DType::F32);
    const float* px = xin.data<float>();
    float* po = out.data<float>();
    for (int64_t i = 0; i < xin.numel(); ++i) {
        const float a = fa * px[i];
        const float b = a * c;
        po[i] = b + fb;
    }
    return out;
}

std::vector<double> to_doubles(const Tensor& t) {
    std::vector<double> out;
    if (t.dtype() == DType::I64 || t.dtype() == DType::I32) {
        for (int64_t v : t.to_ids()) out.push_back((double)v);
    } else {
        for (float v : t.to_vector()) out.push_back(v);
    }
    return out;
}

CompareLine compare_values(const std::string& name, const std::vector<double>& mine, const std::vector<double>& ref,
                           double rtol = 1e-6) {
    CompareLine l;
    l.name = name;
    if (mine.size() != ref.size()) {
        l.reason = str("length ", mine.size(), " vs reference ", ref.size());
        return l;
    }
    double max_ref = 0, worst_rel = -1;
    bool ok = true;
    size_t worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double e = std::fabs(mine[i] - ref[i]);
        l.max_abs = std::max(l.max_abs, e);
        const double rel = e / (rtol * std::fabs(ref[i]) + 1e-12);
        if (!(rel <= worst_rel)) {
            worst_rel = rel;
            worst = i;
        }
        max_ref = std::max(max_ref, std::fabs(ref[i]));
        if (!(e <= rtol * std::fabs(ref[i]) + 1e-12)) ok = false;
    }
    l.atol = rtol * max_ref;
    l.pass = ok;
    l.reason = str("rtol ", rtol, "; worst at [", worst, "]: ", mine[worst], " vs ", ref[worst]);
    return l;
}

// Per-entry comparison of a sequence of tensors with ref[k] (ref is [K, ...]); atol 1e-5 * max(1, max|ref[k]|).
CompareLine compare_sequence(const std::string& name, const std::vector<Tensor>& mine, const Tensor& ref,
                             const std::vector<int64_t>& ref_index) {
    CompareLine l;
    l.name = name;
    if (mine.size() != ref_index.size()) {
        l.reason = str(mine.size(), " tensors vs ", ref_index.size(), " expected");
        return l;
    }
    double worst_ratio = -1, overall = 0, largest = 0;
    bool ok = true;
    for (size_t k = 0; k < mine.size(); ++k) {
        NUANCE_CHECK(ref_index[k] >= 0 && ref_index[k] < ref.size(0), name, ": reference index ", ref_index[k],
                     " outside [0, ", ref.size(0), ")");
        const Tensor r = ref.select(0, ref_index[k]).contiguous();
        const Tensor m = mine[k].contiguous();
        if (r.shape() != m.shape()) {
            l.pass = false;
            l.reason = str("step ", k, ": shape ", shape_str(m.shape()), " vs reference ", shape_str(r.shape()));
            return l;
        }
        const double err = max_abs_diff(m, r);
        // 1e-5 relative to the latent, and never below a few float32 ulps of the largest latent so far: the
        // reference's own rounding there carries into every later step (zero-SNR VE schedules start at
        // sigma 4096, and x + d*dt then loses ulp(4096 |x|) in the reference's arithmetic).
        largest = std::max(largest, (double)max_abs(r));
        const double atol = std::max(1e-5 * std::max(1.0, (double)max_abs(r)), 4.0 * 0x1p-23 * largest);
        if (!(err <= atol)) ok = false;
        const double ratio = std::isfinite(err) ? err / atol : 1e300;
        overall = std::isfinite(err) ? std::max(overall, err) : HUGE_VAL;
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            l.atol = atol;
            l.reason = str("worst (relative to atol) at step ", k, " (reference index ", ref_index[k], "): ", err);
        }
    }
    l.max_abs = overall;  // the largest difference over every recorded latent
    l.pass = ok;
    return l;
}

CompareLine skip_line(const std::string& label, const std::string& entry, const std::string& reason) {
    CompareLine l;
    l.name = label + "/" + entry;
    l.skip = true;
    l.reason = reason;
    return l;
}

template <class T>
T cfg_or(const json& cfg, const char* key, T fallback) {
    if (!cfg.contains(key) || cfg.at(key).is_null()) return fallback;
    return cfg.at(key).get<T>();
}

// Why an entry cannot run yet ("" = supported).
std::string unsupported_reason(const std::string& cls, const json& cfg, const json& step_kwargs) {
    for (const auto& [k, v] : step_kwargs.items()) {
        const bool known = k == "eta" || (cls == "EulerDiscreteScheduler" &&
                                          (k == "s_churn" || k == "s_tmin" || k == "s_tmax" || k == "s_noise"));
        if (!known) return "step() argument '" + k + "' not supported";
    }
    if (cls == "DPMSolverSinglestepScheduler" &&
        (cfg_or<int>(cfg, "solver_order", 2) != 2 || cfg_or<std::string>(cfg, "solver_type", "midpoint") != "midpoint" ||
         cfg_or<std::string>(cfg, "algorithm_type", "dpmsolver++") != "dpmsolver++" ||
         !cfg_or(cfg, "lower_order_final", true)))
        return "only the 2nd-order dpmsolver++ midpoint singlestep solver with lower_order_final is implemented";
    if (cls == "UniPCMultistepScheduler") {
        if (cfg_or<int>(cfg, "solver_order", 2) != 2 || cfg_or<std::string>(cfg, "solver_type", "bh2") != "bh2" ||
            !cfg_or(cfg, "predict_x0", true))
            return "only UniPC with solver_order 2, solver_type bh2, predict_x0 is implemented";
        if (cfg.contains("disable_corrector") && !cfg.at("disable_corrector").empty())
            return "UniPC disable_corrector not supported";
    }
    if (cls == "PNDMScheduler" && !cfg_or(cfg, "skip_prk_steps", false))
        return "PNDM with Runge-Kutta warm-up steps (skip_prk_steps = False) not implemented";
    if (cls == "DPMSolverMultistepScheduler") {
        if (cfg_or<int>(cfg, "solver_order", 2) != 2 || cfg_or<std::string>(cfg, "solver_type", "midpoint") != "midpoint")
            return "only solver_order 2 with the midpoint solver is implemented";
        const std::string alg = cfg_or<std::string>(cfg, "algorithm_type", "dpmsolver++");
        if (alg != "dpmsolver++" && alg != "sde-dpmsolver++") return "algorithm_type " + alg + " not implemented";
    }
    for (const char* k : {"use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "thresholding", "clip_sample"})
        if (cfg_or(cfg, k, false)) return std::string(k) + " not supported";
    if (cfg_or<std::string>(cfg, "final_sigmas_type", "zero") != "zero") return "final_sigmas_type != zero";
    if (cfg_or<std::string>(cfg, "interpolation_type", "linear") != "linear") return "interpolation_type != linear";
    if (cfg_or<std::string>(cfg, "timestep_type", "discrete") != "discrete") return "timestep_type != discrete";
    static const char* known[] = {"EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
                                  "LMSDiscreteScheduler", "DDIMScheduler", "DDPMScheduler",
                                  "DPMSolverMultistepScheduler", "FlowMatchEulerDiscreteScheduler",
                                  "UniPCMultistepScheduler", "PNDMScheduler", "LCMScheduler",
                                  "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler",
                                  "KDPM2AncestralDiscreteScheduler", "TCDScheduler"};
    for (const char* k : known)
        if (cls == k) return "";
    return "scheduler class " + cls + " not supported";
}

void run_entry(const std::string& label, const std::string& entry, const json& e, const WeightFile& wf,
               std::vector<CompareLine>& out) {
    const std::string cls = e.at("class").get<std::string>();
    const json& cfg = e.at("config");
    const json step_kwargs = e.value("step_kwargs", json::object());
    const json set_kwargs = e.value("set_timesteps_kwargs", json::object());
    const std::string why = unsupported_reason(cls, cfg, step_kwargs);
    if (!why.empty()) {
        out.push_back(skip_line(label, entry, why));
        return;
    }
    auto tensor = [&](const std::string& name) -> const Tensor& {
        const auto it = wf.tensors.find(name);
        NUANCE_CHECK_CODE(it != wf.tensors.end(), NotFound, "golden ", label, ": tensor '", name, "' missing");
        return it->second;
    };
    auto has = [&](const std::string& name) { return wf.tensors.count(name) > 0; };
    const std::string p = label + "/" + entry + ".";
    const int steps = e.at("num_inference_steps").get<int>();

    // Sampler, schedule family and the reference's latent scaling.
    const bool flow = cls == "FlowMatchEulerDiscreteScheduler";
    // Two model calls per step (2N-1 in all): the reference records x after each call.
    const bool heun = cls == "HeunDiscreteScheduler" || cls == "KDPM2DiscreteScheduler" ||
                      cls == "KDPM2AncestralDiscreteScheduler";
    const bool plms = cls == "PNDMScheduler";
    const bool lcm = cls == "LCMScheduler";
    bool vp_space = false;
    std::string sampler = "euler";
    ScheduleConfig sc;
    sc.steps = steps;
    if (cls == "EulerAncestralDiscreteScheduler") sampler = "euler_a";
    if (cls == "HeunDiscreteScheduler") sampler = "heun";
    if (cls == "KDPM2DiscreteScheduler") sampler = "dpm2";
    if (cls == "KDPM2AncestralDiscreteScheduler") sampler = "dpm2_a";
    if (cls == "LMSDiscreteScheduler") sampler = "lms";
    if (cls == "DDIMScheduler" || cls == "DDPMScheduler" || plms) {
        sampler = plms ? "plms" : cls == "DDIMScheduler" ? "ddim" : "ddpm";
        sc.family = ScheduleFamily::Ddim;
        sc.final_alpha_one = cls == "DDPMScheduler" || cfg_or(cfg, "set_alpha_to_one", true);
        vp_space = true;
    }
    if (cls == "DPMSolverMultistepScheduler") {
        sampler = cfg_or<std::string>(cfg, "algorithm_type", "dpmsolver++") == "sde-dpmsolver++" ? "dpmpp_2m_sde"
                                                                                                 : "dpmpp_2m";
        sc.family = ScheduleFamily::DpmSolver;
        vp_space = true;
    }
    if (cls == "UniPCMultistepScheduler" || cls == "DPMSolverSinglestepScheduler") {
        sampler = cls == "UniPCMultistepScheduler" ? "unipc" : "dpmpp_2s";
        sc.family = ScheduleFamily::DpmSolver;
        vp_space = true;
    }
    const bool tcd = cls == "TCDScheduler";
    if (lcm || tcd) {
        sampler = lcm ? "lcm" : "tcd";
        sc.family = lcm ? ScheduleFamily::Lcm : ScheduleFamily::Tcd;
        sc.lcm_original_steps = cfg_or(cfg, "original_inference_steps", 50);
        vp_space = true;
    }
    sampler = e.value("nuance_sampler", sampler);
    sc.round_typed_timesteps = find_sampler(sampler).round_typed_timesteps;
    sc.spacing = parse_spacing(cfg_or<std::string>(cfg, "timestep_spacing", "linspace"));
    sc.steps_offset = cfg_or(cfg, "steps_offset", 0);
    sc.type = cfg_or(cfg, "use_karras_sigmas", false) ? ScheduleType::Karras : ScheduleType::Normal;

    NoiseScheduleConfig nc;
    nc.num_train_timesteps = cfg_or(cfg, "num_train_timesteps", 1000);
    nc.beta_start = cfg_or(cfg, "beta_start", 0.0001);
    nc.beta_end = cfg_or(cfg, "beta_end", 0.02);
    const std::string bs = cfg_or<std::string>(cfg, "beta_schedule", "linear");
    NUANCE_CHECK_CODE(bs == "linear" || bs == "scaled_linear", Unsupported, "beta_schedule ", bs);
    nc.beta_schedule = bs == "linear" ? BetaSchedule::Linear : BetaSchedule::ScaledLinear;
    nc.rescale_zero_snr = cfg_or(cfg, "rescale_betas_zero_snr", false);

    // Recording model.
    std::vector<Tensor> model_in;
    const json fake = e.value("fake", json::object());
    const float fa = (float)fake.value("a", 0.3), fb = (float)fake.value("b", 0.05);
    ModelFn model = [&](const Tensor& x_in, double t) {
        model_in.push_back(x_in.clone());
        return fake_model(x_in, t, fa, fb);
    };
    std::optional<NoiseSchedule> ns;
    Schedule s;
    std::optional<Denoiser> d;
    if (flow) {
        FlowScheduleConfig fc;
        fc.steps = steps;
        fc.shift = cfg_or(cfg, "shift", 1.0);
        fc.dynamic = cfg_or(cfg, "use_dynamic_shifting", false);
        fc.num_train_timesteps = cfg_or(cfg, "num_train_timesteps", 1000);
        if (set_kwargs.contains("mu")) fc.mu = set_kwargs.at("mu").get<double>();
        if (set_kwargs.contains("sigmas")) fc.custom_sigmas = set_kwargs.at("sigmas").get<std::vector<double>>();
        s = make_flow_schedule(fc);
        d.emplace(Denoiser::flow(model, fc.num_train_timesteps));
    } else {
        ns.emplace(nc);
        s = make_schedule(*ns, sc);
        d.emplace(model, parse_prediction(cfg_or<std::string>(cfg, "prediction_type", "epsilon")), *ns);
        if (lcm) d->set_consistency_boundary(cfg_or(cfg, "timestep_scaling", 10.0), 0.5);
    }
    const int n = s.steps();

    // Timesteps / sigmas as the reference lists them (Heun repeats every inner point: 2N-1 calls; PNDM repeats
    // its second timestep: N+1 calls).
    std::vector<double> ts = s.timesteps, sig = s.sigmas;
    if (plms && n > 1) ts.insert(ts.begin() + 1, s.timesteps[1]);
    if (cls == "KDPM2DiscreteScheduler" || cls == "KDPM2AncestralDiscreteScheduler") {
        // KDPM2 lists sigmas as [s0, s1, s1, ..., sN, sN, sN]; its timesteps interleave the interpolated
        // (midpoint) timesteps, which nuance computes from the midpoint sigma when it gets there: compare the
        // listed ones only.
        sig = {s.sigmas[0]};
        for (int i = 1; i <= n; ++i) sig.insert(sig.end(), 2, s.sigmas[(size_t)i]);
        sig.push_back(s.sigmas[(size_t)n]);
        std::vector<double> ref_ts = to_doubles(tensor(entry + ".timesteps")), listed;
        for (size_t k = 0; k < ref_ts.size(); k += 2) listed.push_back(ref_ts[k]);
        out.push_back(compare_values(p + "timesteps", s.timesteps, listed));
        ts.clear();
    } else if (heun) {
        ts = {s.timesteps[0]};
        sig = {s.sigmas[0]};
        for (int i = 1; i < n; ++i) {
            ts.insert(ts.end(), 2, s.timesteps[(size_t)i]);
            sig.insert(sig.end(), 2, s.sigmas[(size_t)i]);
        }
        sig.push_back(s.sigmas[(size_t)n]);
    }
    if (!ts.empty()) out.push_back(compare_values(p + "timesteps", ts, to_doubles(tensor(entry + ".timesteps"))));
    if (has(entry + ".sigmas")) out.push_back(compare_values(p + "sigmas", sig, to_doubles(tensor(entry + ".sigmas"))));
    if (has(entry + ".alphas_cumprod") && ns) {
        std::vector<double> ac(ns->alphas_cumprod().begin(), ns->alphas_cumprod().end());
        out.push_back(compare_values(p + "alphas_cumprod", ac, to_doubles(tensor(entry + ".alphas_cumprod"))));
    }

    // The loop.
    const Tensor x_init = tensor(e.value("x_init", std::string("x_init"))).f32().contiguous();
    auto to_ref = [&](const Tensor& x, double sigma) {
        return vp_space ? x / Tensor::scalar((float)std::sqrt(sigma * sigma + 1.0)) : x.clone();
    };
    std::optional<ReplayRng> rng;
    if (has(entry + ".noise"))
        rng.emplace(tensor(entry + ".noise"), tensor(entry + ".noise_step").to_ids());
    SamplerOptions o;
    if (rng) o.rng = &*rng;
    if (step_kwargs.contains("eta")) o.eta = step_kwargs.at("eta").get<double>();
    else if (tcd) o.eta = 0.3;  // TCDScheduler.step's default gamma
    // EulerDiscreteScheduler churn: diffusers' order (model output at sigma, then churn; see sample_euler.cpp).
    o.s_churn = cfg_or(step_kwargs, "s_churn", 0.0);
    o.s_tmin = cfg_or(step_kwargs, "s_tmin", 0.0);
    o.s_tmax = cfg_or(step_kwargs, "s_tmax", std::numeric_limits<double>::infinity());
    o.s_noise = cfg_or(step_kwargs, "s_noise", 1.0);
    o.churn_mode = ChurnMode::Diffusers;
    std::vector<Tensor> xs;
    Tensor x = x_init * (float)s.init_noise_sigma;
    xs.push_back(to_ref(x, s.sigmas[0]));
    o.callback = [&](int i, int, const Tensor& xi, const Tensor&) {
        xs.push_back(to_ref(xi, s.sigmas[(size_t)i + 1]));
        if (rng) rng->current_step = i + 1;
    };
    const SamplerInfo& info = find_sampler(sampler);
    info.fn(*d, x, s, o);

    if (has(entry + ".model_in")) {
        const Tensor& ref_in = tensor(entry + ".model_in");
        std::vector<int64_t> in_index;
        for (int64_t k = 0; k < ref_in.size(0); ++k) in_index.push_back(k);
        CompareLine li = compare_sequence(p + "model_in", model_in, ref_in, in_index);
        if (model_in.size() != in_index.size())
            li.reason = str("made ", model_in.size(), " model calls, the reference ", in_index.size());
        out.push_back(li);
    } else {  // the sweep stores only the number of calls
        CompareLine li;
        li.name = p + "model_calls";
        const int64_t ref_calls = e.at("num_model_calls").get<int64_t>();
        li.pass = (int64_t)model_in.size() == ref_calls;
        li.reason = str("made ", model_in.size(), " model calls, the reference ", ref_calls);
        out.push_back(li);
    }

    std::vector<int64_t> x_index;  // reference index of nuance's x after each step
    for (int k = 0; k <= n; ++k)
        x_index.push_back(heun ? (k == n ? 2 * n - 1 : 2 * k) : (plms && n > 1 && k > 0) ? k + 1 : k);
    out.push_back(compare_sequence(p + "x", xs, tensor(entry + ".x"), x_index));

    if (rng) {
        CompareLine l;
        l.name = p + "noise_order";
        // Two-call samplers: the reference's loop index 2k or 2k+1 is nuance's step k.
        std::vector<int64_t> ref_steps = rng->ref_steps();
        if (heun)
            for (int64_t& v : ref_steps) v /= 2;
        l.pass = rng->draw_steps == ref_steps;
        l.reason = str("draw steps ", rng->draw_steps, " vs reference ", ref_steps);
        out.push_back(l);
    }
}

}  // namespace

std::vector<CompareLine> check_golden_schedulers(const std::string& case_dir, const std::string& label) {
    std::ifstream f(case_dir + "/case.json");
    NUANCE_CHECK_CODE(f.good(), NotFound, "golden schedulers: cannot open ", case_dir, "/case.json");
    json c;
    try {
        c = json::parse(f);
    } catch (const std::exception& ex) {
        fail(ErrorCode::InvalidArgument, "golden schedulers: ", case_dir, "/case.json is not valid JSON: ", ex.what());
    }
    NUANCE_CHECK(c.contains("schedulers") && c.at("schedulers").is_object(), "golden schedulers: ", case_dir,
                 "/case.json has no 'schedulers' object");
    const WeightFile wf = load_safetensors(case_dir + "/io.safetensors");
    std::vector<CompareLine> out;
    for (const auto& [entry, e] : c.at("schedulers").items()) {
        try {
            run_entry(label, entry, e, wf, out);
        } catch (const std::exception& ex) {
            CompareLine l;
            l.name = label + "/" + entry;
            l.reason = ex.what();
            out.push_back(l);
        }
    }
    return out;
}

}  // namespace nuance
