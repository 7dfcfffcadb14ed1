"""Class labels for class-conditional diffusers UNet2DModel repositories (``num_class_embeds``):
genzoo's label/guidance sampling equals a hand loop over diffusers' own DDIMScheduler calling
``unet(x, t, class_labels=...)``, the last embedding is the null class, and unconditional or
otherwise-conditioned UNets keep their behaviour or are refused in one line."""
import json
import shutil

import pytest
import torch

from genzoo.errors import OptionError, WeightsError
from genzoo.seeding import sample_generators
from genzoo.testing import Conformance

diffusers = pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, DDPMPipeline, UNet2DModel  # noqa: E402
from diffusers.utils.torch_utils import randn_tensor  # noqa: E402
from genzoo_diffusion.diffusers_format import DiffusersUNetModel  # noqa: E402

import test_diffusion_conformance as unconditional  # noqa: E402  (its tiny UNet's config)

N, SEED, STEPS = 3, 5, 10
#: ten classes plus the null class, the last embedding (MNIST-like: label 7 exists)
EMBEDS = 11
NULL = EMBEDS - 1
SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
             "prediction_type": "epsilon", "clip_sample": True}


def _tiny_unet(seed: int, **class_kw) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                       block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), **class_kw).eval()


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """A class-conditional pipeline folder (DDIM scheduler) and an unconditional one."""
    root = tmp_path_factory.mktemp("diffusers-labels")
    cond = _tiny_unet(0, num_class_embeds=EMBEDS)
    DDPMPipeline(cond, DDIMScheduler(**SCHEDULER)).save_pretrained(root / "cond",
                                                                   safe_serialization=True)
    uncond = _tiny_unet(1)
    DDPMPipeline(uncond, DDIMScheduler(**SCHEDULER)).save_pretrained(root / "uncond",
                                                                     safe_serialization=True)
    return {"cond": root / "cond", "uncond": root / "uncond"}


def _load(folder) -> DiffusersUNetModel:
    return DiffusersUNetModel.from_pretrained(folder, device="cpu")


@torch.no_grad()
def _hand_ddim(folder, labels, guidance=1.0):
    """The oracle: diffusers' UNet and DDIMScheduler read back from disk, DDIMPipeline's loop
    written out, with class labels (None: the null class) and classifier-free guidance as
    DiTPipeline computes it: one UNet call on the doubled batch (labels, then the null
    class), uncond + g * (cond - uncond). Two separate calls would differ in the last bits:
    a convolution's rounding depends on the batch size on some CPUs (1.9e-5 on an AMD EPYC)."""
    unet = UNet2DModel.from_pretrained(folder / "unet", use_safetensors=True).eval()
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    scheduler.set_timesteps(STEPS)
    x = randn_tensor((N, 3, 8, 8), generator=sample_generators(SEED, N))
    null = torch.full((N,), NULL)
    cond = null if labels is None else torch.as_tensor(labels).expand(N)
    for t in scheduler.timesteps:
        if guidance != 1.0:
            both = unet(torch.cat([x, x]), t, class_labels=torch.cat([cond, null])).sample
            eps, uncond = both.chunk(2)
            eps = uncond + guidance * (eps - uncond)
        else:
            eps = unet(x, t, class_labels=cond).sample
        x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    return (x / 2 + 0.5).clamp(0, 1)


def _ours(folder, **opts):
    return _load(folder).sample(N, seed=SEED, sampler="ddim", steps=STEPS, **opts).images


def test_class_conditional_repo_takes_labels_and_guidance(repos):
    model = _load(repos["cond"])
    assert model.num_classes == EMBEDS - 1  # the last embedding is the null class
    options = model.options()
    assert {"label", "guidance"} <= set(options)
    assert "label" in model.capabilities
    assert "label" not in _load(repos["uncond"]).capabilities


@pytest.mark.parametrize("labels", [4, [0, 7, 9]])
def test_label_without_guidance_equals_hand_loop(repos, labels):
    ours = _ours(repos["cond"], label=labels, guidance=1.0)
    ref = _hand_ddim(repos["cond"], labels)
    assert ours.shape == ref.shape == (N, 3, 8, 8)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert ours.std() > 0.05  # an image, not a constant


def test_guidance_equals_hand_loop(repos):
    ours = _ours(repos["cond"], label=7, guidance=3.0)
    torch.testing.assert_close(ours, _hand_ddim(repos["cond"], 7, guidance=3.0),
                               atol=1e-5, rtol=0)
    # and guidance does something: not the unguided labelled samples
    assert (ours - _hand_ddim(repos["cond"], 7)).abs().max() > 1e-2


def test_no_label_samples_the_null_class(repos):
    ours = _ours(repos["cond"])
    torch.testing.assert_close(ours, _hand_ddim(repos["cond"], None), atol=1e-5, rtol=0)


def test_labels_change_the_output(repos):
    zero, one = _ours(repos["cond"], label=0, guidance=1.0), _ours(repos["cond"], label=1,
                                                                   guidance=1.0)
    assert (zero - one).abs().max() > 1e-2
    assert (zero - _ours(repos["cond"])).abs().max() > 1e-2  # a label is not "no label"


def test_per_sample_seeds_hold_with_label_and_guidance(repos):
    model = _load(repos["cond"])
    sixteen = model.sample(16, seed=0, sampler="ddim", steps=4, label=7, guidance=3).images
    eight = model.sample(8, seed=0, sampler="ddim", steps=4, label=7, guidance=3).images
    torch.testing.assert_close(sixteen[:8], eight, atol=1e-5, rtol=0)
    meta = model.sample(2, seed=0, steps=2, label=7, guidance=3).meta
    assert meta["label"] == 7 and meta["guidance"] == 3


def test_out_of_range_label_is_one_line(repos):
    model = _load(repos["cond"])
    with pytest.raises(OptionError) as err:
        model.sample(2, seed=0, steps=2, label=NULL)  # the null index is not a class
    message = str(err.value)
    # one line naming the classes there are (0 to 9): the wording is the family's
    assert "\n" not in message and "label" in message and "9" in message, message


def test_unconditional_repo_has_no_label_option(repos):
    model = _load(repos["uncond"])
    assert model.num_classes == 0
    assert not set(model.options()) & {"label", "guidance"}
    with pytest.raises(OptionError) as err:
        model.sample(2, seed=0, steps=2, label=1)
    message = str(err.value)
    assert "\n" not in message and "label" in message and "sampler" in message, message
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([10])
    with pytest.raises(OptionError, match="unconditional"):
        model.model_output(x, t, torch.tensor([1]))


@pytest.mark.parametrize("kind", ["timestep", "identity"])
def test_other_class_embed_types_are_refused_at_load(repos, tmp_path, kind):
    folder = tmp_path / kind
    shutil.copytree(repos["uncond"], folder)
    path = folder / "unet" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "class_embed_type": kind}))
    with pytest.raises(WeightsError) as err:
        _load(folder)
    message = str(err.value)
    assert "\n" not in message and repr(kind) in message and "num_class_embeds" in message


def test_saved_copy_keeps_the_labels(repos, tmp_path):
    model = _load(repos["cond"])
    before = model.sample(2, seed=1, sampler="ddim", steps=3, label=[2, 5], guidance=2).images
    copy = DiffusersUNetModel.from_pretrained(model.save_pretrained(tmp_path / "saved"),
                                              device="cpu")
    assert copy.num_classes == EMBEDS - 1
    torch.testing.assert_close(
        copy.sample(2, seed=1, sampler="ddim", steps=3, label=[2, 5], guidance=2).images, before)


def _labelled_blobs():
    """16 small one-channel images with class labels 0-2 (the finetune trains on labels)."""
    from genzoo.data import TensorImages
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(16) % 3
    images = torch.rand(16, 1, 8, 8, generator=g) * 0.3 + labels.view(-1, 1, 1, 1) * 0.3
    return TensorImages(images, labels)


@pytest.mark.slow  # the whole conformance kit on a diffusers UNet (about 15 s)
class TestDiffusersUNetLabelsConformance(Conformance):
    """The kit on a class-conditional diffusers UNet: declared conditions, per-sample seeds
    with labels, a finetune on labelled data (label dropout to the null class)."""
    arch = "diffusers-unet"
    config = {"image_shape": [1, 8, 8],
              "diffusers_unet": {**unconditional.TestDiffusersUNetConformance.config[
                                     "diffusers_unet"],
                                 "num_class_embeds": 4}}
    data = staticmethod(_labelled_blobs)
    # sample_size is diffusers' own metadata (its UNet takes any size); "unet" and
    # "num_classes" are the house UNet's settings: this UNet's labels come from num_class_embeds
    config_inert = ("diffusers_unet.sample_size", "unet", "num_classes")
