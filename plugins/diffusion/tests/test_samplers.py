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
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,  # noqa: E402
                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler)

ORACLE = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmsolver++": DPMSolverMultistepScheduler,
          "euler": EulerDiscreteScheduler, "euler-a": EulerAncestralDiscreteScheduler}
EULER = ("euler", "euler-a")
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
    """Latents seen by each model call, then the final x0, from diffusers' scheduler driven
    as its pipelines drive it (init_noise_sigma, scale_model_input, a list of generators:
    randn_tensor draws sample i's noise from generator i)."""
    sched = ORACLE[sampler].from_config(config)
    sched.set_timesteps(steps)
    x, seen, gens = _x_T() * sched.init_noise_sigma, [], _gens()
    for t in sched.timesteps:
        x_in = sched.scale_model_input(x, t)
        seen.append(x_in)
        out = _fake_model(x_in, t.expand(x.shape[0]))
        kw = {"eta": eta} if sampler == "ddim" else {}
        x = sched.step(out, t, x, generator=gens, **kw).prev_sample
    return sched.timesteps.tolist(), seen + [x]


def _native(sampler, config, steps, eta=0.0):
    seen, ts = [], []

    def model_fn(x, t):
        seen.append(x)
        ts.append(t[0].item())
        # the Euler samplers' timesteps are fractional floats, the others' integers
        assert t.shape == (x.shape[0],)
        assert t.dtype == (torch.float32 if sampler in EULER else torch.long)
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


#: Stable Diffusion 2's noise (scaled_linear, v-prediction): the Euler samplers' home ground.
SD_V = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
        "prediction_type": "v_prediction"}


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("steps", [1, 9, 30])
@pytest.mark.parametrize("config", [HOUSE, LINEAR_EPS, SD_V], ids=["cos-v", "linear-eps", "sd-v"])
@pytest.mark.parametrize("sampler", EULER)
def test_euler_spacings_match_diffusers(sampler, config, steps, spacing):
    """Each spacing: fractional linspace timesteps with interpolated sigmas, leading with
    steps_offset (init_noise_sigma sqrt(sigma_max^2 + 1)), trailing; euler-a's noise per sample."""
    _assert_same_trajectory(sampler, {**config, "timestep_spacing": spacing, "steps_offset": 1},
                            steps)


@pytest.mark.parametrize("sampler,extra", [
    ("euler", {"final_sigmas_type": "sigma_min"}), ("euler", {"prediction_type": "sample"}),
    ("euler", {"timestep_spacing": "leading"}), ("euler-a", {"timestep_spacing": "leading"}),
    ("euler", {**SD_V, "prediction_type": "epsilon", "timestep_spacing": "leading",
               "steps_offset": 1, "interpolation_type": "linear", "timestep_type": "discrete"})])
def test_euler_variants(sampler, extra):
    _assert_same_trajectory(sampler, {**HOUSE, **extra}, 12)


def _mixing_model(x, t):
    """The fake model plus a neighbour's value: the regenerated region sees the kept one, as
    through a network's convolutions (a pixelwise model would hide the kept region's noise)."""
    return _fake_model(x, t) + 0.2 * x.roll(1, dims=-1)


def _init_and_mask():
    g = torch.Generator().manual_seed(7)
    init = torch.rand(SHAPE, generator=g) * 2 - 1
    return init, (torch.rand(SHAPE[0], 1, *SHAPE[2:], generator=g) > 0.5).float()


def _diffusers_steered(sampler, config, steps, start, masked):
    """diffusers' img2img loop (no mask: init noised to the first timestep run, even at
    step 0) or its 4-channel inpainting loop (pure noise * init_noise_sigma at step 0, the
    kept region add_noise(init, x_T, next timestep) with the initial noise x_T)."""
    sched = ORACLE[sampler].from_config(config)
    sched.set_timesteps(steps)
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(start)
    timesteps, (init, mask) = sched.timesteps[start:], _init_and_mask()
    noise, gens = _x_T(), _gens()
    if masked and start == 0:
        x = noise * sched.init_noise_sigma
    else:
        x = sched.add_noise(init, noise, timesteps[:1].repeat(SHAPE[0]))
    for i, t in enumerate(timesteps):
        out = _mixing_model(sched.scale_model_input(x, t), t.expand(SHAPE[0]))
        x = sched.step(out, t, x, generator=gens).prev_sample
        if masked:
            known = init if i == len(timesteps) - 1 else \
                sched.add_noise(init, noise, torch.tensor([timesteps[i + 1]]))
            x = (1 - mask) * known + mask * x
    return x


@pytest.mark.parametrize("masked", [False, True], ids=["img2img", "inpaint"])
@pytest.mark.parametrize("start", [0, 4])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_start_and_initial_mask_noise_match_diffusers_pipelines(sampler, start, masked):
    config = SD_V if sampler in EULER else HOUSE
    init, mask = _init_and_mask()
    calls = []
    got = sample(_mixing_model, _x_T(), NoiseSchedule(config), sampler, 10, generators=_gens(),
                 init=init, mask=mask if masked else None, start=start, mask_noise="initial",
                 progress=lambda i, n: calls.append((i, n)))
    assert calls[-1] == (10 - start, 10 - start)
    ref = _diffusers_steered(sampler, config, 10, start, masked)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    if masked:  # the kept region is init itself
        torch.testing.assert_close(got * (1 - mask), init * (1 - mask))


def test_start_and_mask_noise_defaults_keep_todays_path():
    """start=None with strength, and mask_noise "fresh", are the strength rounding and the
    per-step fresh draws; start overrides the rounding."""
    sched, (init, mask) = NoiseSchedule(HOUSE), _init_and_mask()
    for sampler in SAMPLERS:
        by_strength = sample(_fake_model, _x_T(), sched, sampler, 10, generators=_gens(),
                             init=init, strength=0.6)
        by_start = sample(_fake_model, _x_T(), sched, sampler, 10, generators=_gens(),
                          init=init, start=4)
        assert torch.equal(by_strength, by_start)
        fresh = sample(_mixing_model, _x_T(), sched, sampler, 10, generators=_gens(),
                       init=init, mask=mask, strength=0.6)
        initial = sample(_mixing_model, _x_T(), sched, sampler, 10, generators=_gens(),
                         init=init, mask=mask, strength=0.6, mask_noise="initial")
        assert not torch.allclose(fresh, initial)


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
    with pytest.raises(OptionError, match="ddpm, ddim, dpmsolver\\+\\+, euler, euler-a"):
        sample(_fake_model, _x_T(), sched, sampler="heun")
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
    for sampler, extra in (("euler", {"use_karras_sigmas": True}),
                           ("euler-a", {"use_beta_sigmas": True}),
                           ("euler", {"interpolation_type": "log_linear"}),
                           ("euler", {"timestep_type": "continuous"}),
                           ("euler-a", {"final_sigmas_type": "sigma_min"}),
                           ("euler-a", {"prediction_type": "sample"})):
        with pytest.raises(OptionError, match=next(iter(extra))):
            sample(_fake_model, _x_T(), NoiseSchedule(HOUSE, **extra), sampler, 5)
    init, mask = _init_and_mask()
    for bad in (-1, 5, 2.0, True):
        with pytest.raises(OptionError, match="start must be a step index from 0 to 4"):
            sample(_fake_model, _x_T(), sched, "ddim", 5, init=init, start=bad)
    with pytest.raises(OptionError, match="needs init"):
        sample(_fake_model, _x_T(), sched, "ddim", 5, start=2)
    with pytest.raises(OptionError, match="mask_noise"):
        sample(_fake_model, _x_T(), sched, "ddim", 5, init=init, mask=mask, mask_noise="same")
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
