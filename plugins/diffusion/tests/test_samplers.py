"""The native schedule and samplers against diffusers' schedulers, the oracle, step for step.

Both loops run the same deterministic fake model from the same x_T; the latents each model
call sees (i.e. the state after every step) must agree within float32 round-off.
"""
import pytest
import torch

from genzoo.errors import OptionError
from genzoo_diffusion.samplers import SAMPLERS, make_timesteps, sample
from genzoo_diffusion.schedule import NoiseSchedule

diffusers = pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler  # noqa: E402

ORACLE = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmsolver++": DPMSolverMultistepScheduler}
HOUSE = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
         "prediction_type": "v_prediction", "clip_sample": True, "clip_sample_range": 1.0}
SHAPE = (3, 2, 6, 5)


def _fake_model(x, t):
    """Deterministic, input- and time-dependent stand-in for a network."""
    h, w = x.shape[-2:]
    pattern = torch.sin(torch.arange(h * w, dtype=x.dtype).reshape(h, w) * 0.7) * 0.5
    return 0.3 * x + 0.01 * t.float()[:, None, None, None] / 1000 + pattern


def _x_T(seed=0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def _gens(seed=123):
    return [torch.Generator().manual_seed(seed + i) for i in range(SHAPE[0])]


def _oracle(sampler, config, steps, eta=0.0):
    """Latents seen by each model call, then the final x0, from diffusers' scheduler."""
    sched = ORACLE[sampler].from_config(config)
    sched.set_timesteps(steps)
    x, seen, gens = _x_T(), [], _gens()
    for t in sched.timesteps:
        seen.append(x)
        out = _fake_model(x, t.expand(x.shape[0]))
        kw = {"eta": eta} if sampler == "ddim" else {}
        x = sched.step(out, t, x, generator=gens, **kw).prev_sample
    return [int(t) for t in sched.timesteps], seen + [x]


def _native(sampler, config, steps, eta=0.0):
    seen, ts = [], []

    def model_fn(x, t):
        seen.append(x)
        ts.append(int(t[0]))
        assert t.shape == (x.shape[0],) and t.dtype == torch.long
        return _fake_model(x, t)
    calls = []
    x = sample(model_fn, _x_T(), NoiseSchedule(config), sampler=sampler, steps=steps,
               generators=_gens(), eta=eta, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(i + 1, steps) for i in range(steps)]
    return ts, seen + [x]


def _assert_same_trajectory(sampler, config, steps, eta=0.0):
    ts_ref, ref = _oracle(sampler, config, steps, eta)
    ts, got = _native(sampler, config, steps, eta)
    assert ts == ts_ref
    assert len(got) == len(ref) == steps + 1
    for i, (a, b) in enumerate(zip(got, ref)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda m: f"step {i}: {m}")


LINEAR_EPS = {"beta_schedule": "linear", "prediction_type": "epsilon"}
PRED_TYPES = [dict(HOUSE), {**HOUSE, "prediction_type": "epsilon"}, LINEAR_EPS,
              {**LINEAR_EPS, "prediction_type": "v_prediction", "clip_sample": False}]


@pytest.mark.parametrize("config", PRED_TYPES)
@pytest.mark.parametrize("steps", [7, 50])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_matches_diffusers_every_step(sampler, config, steps):
    _assert_same_trajectory(sampler, config, steps)


@pytest.mark.parametrize("config", [HOUSE, LINEAR_EPS])
def test_ddpm_full_chain_with_per_sample_noise(config):
    _assert_same_trajectory("ddpm", config, 1000)


@pytest.mark.parametrize("extra", [
    {"timestep_spacing": "trailing"}, {"timestep_spacing": "linspace"},
    {"steps_offset": 1}, {"variance_type": "fixed_large"}, {"prediction_type": "sample"},
    {"thresholding": True, "sample_max_value": 1.5}, {"beta_schedule": "scaled_linear"}])
def test_ddpm_config_variants(extra):
    _assert_same_trajectory("ddpm", {**HOUSE, **extra}, 13)


@pytest.mark.parametrize("extra,eta", [
    ({}, 0.5), ({}, 1.0), ({"set_alpha_to_one": False}, 0.0), ({"timestep_spacing": "trailing"}, 0.0),
    ({"timestep_spacing": "linspace"}, 0.3), ({"prediction_type": "sample"}, 0.0),
    ({"clip_sample": False, "prediction_type": "epsilon"}, 0.0)])
def test_ddim_variants(extra, eta):
    _assert_same_trajectory("ddim", {**HOUSE, **extra}, 10, eta=eta)


@pytest.mark.parametrize("steps,extra", [
    (1, {}), (2, {}), (20, {}), (25, {"final_sigmas_type": "sigma_min"}),
    (10, {"final_sigmas_type": "sigma_min"}), (12, {"timestep_spacing": "leading"}),
    (12, {"timestep_spacing": "trailing"}), (12, {"solver_type": "heun"}),
    (9, {"solver_order": 1}), (20, {"prediction_type": "sample"}),
    (10, {"thresholding": True, "sample_max_value": 1.5}),
    (20, {"beta_schedule": "linear", "prediction_type": "epsilon"})])
def test_dpmsolver_variants(steps, extra):
    _assert_same_trajectory("dpmsolver++", {**HOUSE, **extra}, steps)


def test_timesteps_match_set_timesteps():
    """Every spacing and step count diffusers supports gives its timesteps; those where
    diffusers' own schedule is broken (repeats, or steps past the end) are refused."""
    for sampler, cls in ORACLE.items():
        for spacing in ("linspace", "leading", "trailing"):
            for steps in (1, 3, 10, 33, 250, 999, 1000):
                config = {**HOUSE, "timestep_spacing": spacing, "steps_offset": 1}
                ref = cls.from_config(config)
                ref.set_timesteps(steps)
                ref = ref.timesteps.tolist()
                if len(set(ref)) == len(ref) and 0 <= min(ref) and max(ref) < 1000:
                    got = make_timesteps(NoiseSchedule(config), sampler, steps)
                    assert got == ref, (sampler, spacing, steps)
                else:
                    with pytest.raises(OptionError, match="too many"):
                        make_timesteps(NoiseSchedule(config), sampler, steps)


def test_sample_is_per_sample_reproducible():
    """Sample i depends only on x_T[i] and generators[i], whatever the batch."""
    sched = NoiseSchedule(HOUSE)
    full = sample(_fake_model, _x_T(), sched, "ddpm", 20, generators=_gens())
    one = sample(_fake_model, _x_T()[1:2], sched, "ddpm", 20, generators=_gens()[1:2])
    torch.testing.assert_close(one[0], full[1])


def test_options_are_validated():
    sched = NoiseSchedule(HOUSE)
    with pytest.raises(OptionError, match="ddpm, ddim, dpmsolver"):
        sample(_fake_model, _x_T(), sched, sampler="euler")
    for bad in (0, 1001, 2.5, True):
        with pytest.raises(OptionError, match="steps must be an integer from 1 to 1000"):
            sample(_fake_model, _x_T(), sched, steps=bad)
    with pytest.raises(OptionError, match="one per sample"):
        sample(_fake_model, _x_T(), sched, "ddpm", 5, generators=_gens()[:2])
    with pytest.raises(OptionError, match="too many"):
        sample(_fake_model, _x_T(), sched, "dpmsolver++", 1000)
    with pytest.raises(OptionError, match="only to the ddim"):
        sample(_fake_model, _x_T(), sched, "ddpm", 5, eta=0.5)
    with pytest.raises(OptionError, match="variance_type"):
        sample(_fake_model, _x_T(), NoiseSchedule(HOUSE, variance_type="learned"), "ddpm", 5)
    with pytest.raises(OptionError, match="use_karras_sigmas"):
        sample(_fake_model, _x_T(), NoiseSchedule(HOUSE, use_karras_sigmas=True), steps=5)
    for key, value in (("beta_schedule", "cosine"), ("prediction_type", "eps"),
                       ("timestep_spacing", "even")):
        with pytest.raises(OptionError, match=key):
            NoiseSchedule(HOUSE, **{key: value})


# ---- the schedule -------------------------------------------------------------------------

@pytest.mark.parametrize("config", [HOUSE, LINEAR_EPS, {"beta_schedule": "scaled_linear",
                                                       "beta_start": 0.00085, "beta_end": 0.012},
                                    {"num_train_timesteps": 100, "beta_schedule": "squaredcos_cap_v2"}])
def test_schedule_tables_equal_diffusers(config):
    ref, ours = DDPMScheduler.from_config(config), NoiseSchedule(config)
    assert ours.betas.dtype == ours.alphas_cumprod.dtype == torch.float32
    assert torch.equal(ours.betas, ref.betas)
    assert torch.equal(ours.alphas_cumprod, ref.alphas_cumprod)


def test_training_helpers_equal_diffusers():
    ref, ours = DDPMScheduler.from_config(HOUSE), NoiseSchedule(HOUSE)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    t = torch.tensor([0, 1, 17, 250, 500, 998, 999, 3])
    x_t = ours.add_noise(x0, noise, t)
    assert torch.equal(x_t, ref.add_noise(x0, noise, t))
    assert torch.equal(ours.velocity(x0, noise, t), ref.get_velocity(x0, noise, t))
    assert torch.equal(ours.target(x0, noise, t), ref.get_velocity(x0, noise, t))
    ac = ref.alphas_cumprod[t]
    torch.testing.assert_close(ours.snr(t), ac / (1 - ac))
    for kind in ("epsilon", "v_prediction", "sample"):
        s = NoiseSchedule(HOUSE, prediction_type=kind)
        out = s.target(x0, noise, t)
        keep = t < 900  # where x0 is recoverable from eps in float32
        torch.testing.assert_close(s.pred_x0(out, x_t, t)[keep], x0[keep], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(s.pred_eps(out, x_t, t)[t > 0], noise[t > 0], atol=1e-3, rtol=1e-3)
    assert torch.equal(NoiseSchedule(HOUSE, prediction_type="epsilon").target(x0, noise, t), noise)
    assert torch.equal(ours.add_noise(x0, noise, 5), ref.add_noise(x0, noise, torch.tensor([5] * 8)))


def test_schedule_config_roundtrip():
    s = NoiseSchedule({"_class_name": "DDPMScheduler", **HOUSE})
    again = NoiseSchedule(s.to_config())
    assert torch.equal(again.alphas_cumprod, s.alphas_cumprod)
    assert "timestep_spacing" not in s.to_config()
    assert again.prediction_type == "v_prediction" and again.clip_sample
