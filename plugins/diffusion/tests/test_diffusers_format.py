"""The diffusers format: tiny random diffusers folders load through genzoo, and genzoo's
samples equal diffusers' own pipelines given the same per-sample generators."""
import json

import pytest
import torch

from genzoo.errors import WeightsError
from genzoo.seeding import sample_generators
from genzoo_diffusion.detect import detect_arch

diffusers = pytest.importorskip("diffusers")
from diffusers import (DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler,  # noqa: E402
                       DPMSolverMultistepScheduler, UNet2DModel)
from genzoo_diffusion.diffusers_format import DiffusersUNetModel  # noqa: E402

N, SEED = 3, 7
SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
             "prediction_type": "epsilon", "clip_sample": True}


def _tiny_unet(seed=0):
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                       block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D")).eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A pipeline folder (unet/ + scheduler/), a flat UNet folder, and a v-prediction one."""
    root = tmp_path_factory.mktemp("diffusers")
    unet = _tiny_unet()
    DDPMPipeline(unet, DDPMScheduler(**SCHEDULER)).save_pretrained(root / "pipe",
                                                                   safe_serialization=True)
    unet.save_pretrained(root / "flat", safe_serialization=True)
    DDPMScheduler(**SCHEDULER).save_pretrained(root / "flat")
    v_unet = _tiny_unet(seed=1)
    v_unet.save_pretrained(root / "v" / "unet", safe_serialization=True)
    DDIMScheduler(**{**SCHEDULER, "prediction_type": "v_prediction"}).save_pretrained(
        root / "v" / "scheduler")
    return {"pipe": root / "pipe", "flat": root / "flat", "v": root / "v" / "unet",
            "unet": unet, "v_unet": v_unet}


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _config(folder):
    path = folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def test_detect_arch_claims_diffusers_layouts(folders):
    for key in ("pipe", "flat", "v"):
        assert detect_arch(_config(folders[key]), _files(folders[key])) == "diffusers-unet", key
    assert set(_files(folders["pipe"])) >= {"model_index.json", "unet/config.json",
                                            "unet/diffusion_pytorch_model.safetensors",
                                            "scheduler/scheduler_config.json"}
    sd = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
          "tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json"]
    assert detect_arch({}, sd) == "diffusers-text2image"  # a text-to-image pipeline
    assert detect_arch({}, [f for f in sd if not f.startswith("vae/")]) is None
    assert detect_arch({"_class_name": "UNet2DConditionModel"}, ["config.json"]) is None
    assert detect_arch({"genzoo": {"arch": "x"}}, ["config.json", "model.safetensors"]) is None
    assert detect_arch({"model_type": "gpt2"}, ["config.json", "model.safetensors"]) is None
    assert detect_arch({}, ["model_index.json", "unet\\config.json",
                            ".cache/huggingface/download/unet/config.json"]) == "diffusers-unet"


def _genzoo(folder, sampler, steps, **opts):
    model = DiffusersUNetModel.from_pretrained(folder, device="cpu")
    return model, model.sample(N, seed=SEED, sampler=sampler, steps=steps, **opts).images


def _pipeline_images(pipe, steps, **kw):
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=N, generator=sample_generators(SEED, N), num_inference_steps=steps,
                output_type="pt", **kw).images


def _reference(folder, pipeline_cls, scheduler_cls):
    """diffusers' own pipeline over the saved folder (UNet and scheduler read back from disk)."""
    unet_dir = folder / "unet" if (folder / "unet").is_dir() else folder
    sched_dir = folder / "scheduler" if (folder / "scheduler").is_dir() else \
        folder.parent / "scheduler" if (folder.parent / "scheduler").is_dir() else folder
    unet = UNet2DModel.from_pretrained(unet_dir, use_safetensors=True).eval()
    return pipeline_cls(unet, scheduler_cls.from_pretrained(sched_dir))


@pytest.mark.parametrize("key", ["pipe", "flat"])
def test_ddpm_equals_diffusers_pipeline(folders, key):
    model, ours = _genzoo(folders[key], "ddpm", 12)
    assert model.image_shape == (3, 8, 8) and model.schedule.prediction_type == "epsilon"
    ref = _pipeline_images(_reference(folders[key], DDPMPipeline, DDPMScheduler), 12)
    assert ours.shape == ref.shape == (N, 3, 8, 8)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert ours.std() > 0.05  # not a constant image


def test_pipeline_from_pretrained_is_the_same_model(folders):
    pipe = DDPMPipeline.from_pretrained(folders["pipe"], use_safetensors=True)
    _, ours = _genzoo(folders["pipe"], "ddpm", 5)
    torch.testing.assert_close(ours, _pipeline_images(pipe, 5), atol=1e-4, rtol=0)


def test_ddim_and_dpmsolver_equal_diffusers(folders):
    _, ours = _genzoo(folders["pipe"], "ddim", 10)
    ref = _pipeline_images(_reference(folders["pipe"], DDIMPipeline, DDIMScheduler), 10, eta=0.0)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    # The saved DDPM config names timestep_spacing "leading", so diffusers' DPM-Solver loaded
    # from it uses "leading" too, and so does genzoo.
    _, ours = _genzoo(folders["pipe"], "dpmsolver++", 8)
    ref = _pipeline_images(_reference(folders["pipe"], DDPMPipeline, DPMSolverMultistepScheduler), 8)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_v_prediction_unet_folder_with_scheduler_beside(folders):
    model, ours = _genzoo(folders["v"], "ddim", 6)
    assert model.schedule.prediction_type == "v_prediction"
    ref = _pipeline_images(_reference(folders["v"], DDIMPipeline, DDIMScheduler), 6, eta=0.0)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_genzoo_load_and_save_roundtrip(folders, tmp_path):
    import genzoo
    from genzoo.plugins import manager as plugins
    if "diffusers-unet" not in plugins.architectures():
        pytest.skip("genzoo-diffusion is not installed as a plugin")
    model = genzoo.load(str(folders["pipe"]), device="cpu")
    assert type(model).__name__ == "DiffusersUNetModel"
    before = model.sample(2, seed=1, sampler="ddim", steps=5).images
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["genzoo"]["arch"] == "diffusers-unet"
    assert config["diffusers_unet"]["block_out_channels"] == [8, 16]
    again = genzoo.load(str(tmp_path / "saved"), device="cpu")
    torch.testing.assert_close(again.sample(2, seed=1, sampler="ddim", steps=5).images, before)


def test_refuses_what_it_cannot_load(folders, tmp_path):
    import shutil
    pickle_only = tmp_path / "pickle"
    shutil.copytree(folders["flat"], pickle_only)
    (pickle_only / "diffusion_pytorch_model.safetensors").rename(
        pickle_only / "diffusion_pytorch_model.bin")
    with pytest.raises(WeightsError, match="never loads"):
        DiffusersUNetModel.from_pretrained(pickle_only, device="cpu")
    no_sched = tmp_path / "nosched"
    shutil.copytree(folders["flat"], no_sched)
    (no_sched / "scheduler_config.json").unlink()
    with pytest.raises(WeightsError, match="scheduler_config.json"):
        DiffusersUNetModel.from_pretrained(no_sched, device="cpu")
    ve = tmp_path / "ve"
    shutil.copytree(folders["flat"], ve)
    (ve / "scheduler_config.json").write_text(json.dumps({"_class_name": "ScoreSdeVeScheduler"}))
    with pytest.raises(WeightsError, match="ScoreSdeVeScheduler"):
        DiffusersUNetModel.from_pretrained(ve, device="cpu")
    learned = tmp_path / "learned"
    shutil.copytree(folders["flat"], learned)
    cfg = json.loads((learned / "config.json").read_text())
    (learned / "config.json").write_text(json.dumps({**cfg, "out_channels": 6}))
    with pytest.raises(WeightsError, match="learned-variance"):
        DiffusersUNetModel.from_pretrained(learned, device="cpu")
    with pytest.raises(WeightsError, match="not a diffusers"):
        DiffusersUNetModel.from_pretrained(tmp_path, device="cpu")
