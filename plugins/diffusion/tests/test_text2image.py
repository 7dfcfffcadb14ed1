"""Stable Diffusion pipeline folders saved by diffusers sample through genzoo as diffusers'
own pipelines do: same per-sample generators, same images within 1e-4 (fp32), for each
sampler that has a diffusers scheduler; tiny random pipelines (diffusers' test sizes) with the
real CLIP tokenizer, built offline."""
from __future__ import annotations


import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")

import genzoo  # noqa: E402
from genzoo.errors import OptionError, WeightsError  # noqa: E402

from _oracle import oracle  # noqa: E402
from _tiny_sd import tiny_sd, tiny_sdxl, write_clip_tokenizer  # noqa: E402

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "pipe")


@pytest.fixture(scope="module")
def sd_model(sd):
    return genzoo.load(str(sd[0]), device="cpu")


def test_real_clip_tokenizer(tmp_path):
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(tmp_path / "tok")))
    assert tok(PROMPT).input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_folder_loads_as_text2image(sd_model):
    assert sd_model.arch == "diffusers-text2image" and sd_model.family == "diffusion"
    assert sd_model.config["image_shape"] == [3, 64, 64]
    # the repository's scheduler (PNDM, which genzoo does not run) leaves the family default
    assert sd_model.options()["sampler"].default == "dpmsolver++"
    assert {"prompt", "init", "mask"} <= set(sd_model.capabilities)


@pytest.mark.parametrize("sampler", ["ddim", "dpmsolver++", "euler", "euler-a"])
def test_text_to_image_matches_diffusers(sd, sd_model, sampler):
    _, pipe = sd
    want = oracle(pipe, sd[0], sampler, 2, prompt=PROMPT, num_images_per_prompt=2,
                  num_inference_steps=5, guidance_scale=7.5)
    got = sd_model.sample(2, seed=0, prompt=PROMPT, sampler=sampler, steps=5).images
    assert got.shape == want.shape == (2, 3, 64, 64)
    assert (got - want).abs().max() < 1e-4


def test_negative_prompts_per_sample_and_size(sd, sd_model):
    _, pipe = sd
    prompts, negatives = ["a red cube", "a dog, in a park"], ["blurry", "dark"]
    want = oracle(pipe, sd[0], "ddim", 2, prompt=prompts, negative_prompt=negatives,
                  num_inference_steps=4, guidance_scale=5.0, height=48, width=32)
    got = sd_model.sample(2, seed=0, prompt=prompts, negative_prompt=negatives, sampler="ddim",
                          steps=4, guidance=5.0, height=48, width=32).images
    assert got.shape == (2, 3, 48, 32)
    assert (got - want).abs().max() < 1e-4


def test_sample_i_depends_only_on_seed_and_i(sd_model):
    kw = dict(prompt=PROMPT, steps=3, sampler="euler-a")
    four = sd_model.sample(4, seed=3, batch_size=3, **kw).images
    two = sd_model.sample(2, seed=3, **kw).images
    assert torch.allclose(four[:2], two, atol=1e-5)


def test_height_width_checked(sd_model):
    with pytest.raises(OptionError, match="multiples of 2"):
        sd_model.sample(1, prompt=PROMPT, steps=1, height=33)


def test_image_to_image_matches_diffusers(sd, sd_model):
    from diffusers import StableDiffusionImg2ImgPipeline
    pipe = StableDiffusionImg2ImgPipeline(**sd[1].components)
    init = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    for sampler in ("ddim", "dpmsolver++", "euler"):
        want = oracle(pipe, sd[0], sampler, 2, prompt=[PROMPT] * 2, image=init, strength=0.6,
                      num_inference_steps=5)
        got = sd_model.sample(2, seed=0, prompt=PROMPT, init=init, strength=0.6,
                              sampler=sampler, steps=5).images
        assert (got - want).abs().max() < 1e-4, sampler


def _inpaint_inputs():
    g = torch.Generator().manual_seed(7)
    init = torch.rand(2, 3, 64, 64, generator=g)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 32:] = 1.0  # redraw the lower half
    return init, mask


@pytest.mark.parametrize("strength", [1.0, 0.7])
def test_inpainting_blend_matches_diffusers(sd, sd_model, strength):
    """A 4-channel UNet inpaints by blending (diffusers' StableDiffusionInpaintPipeline)."""
    from diffusers import StableDiffusionInpaintPipeline
    pipe = StableDiffusionInpaintPipeline(**sd[1].components)
    init, mask = _inpaint_inputs()
    want = oracle(pipe, sd[0], "ddim", 2, prompt=[PROMPT] * 2, image=init, mask_image=mask,
                  strength=strength, num_inference_steps=5)
    got = sd_model.sample(2, seed=0, prompt=PROMPT, init=init, mask=mask, strength=strength,
                          sampler="ddim", steps=5).images
    assert (got - want).abs().max() < 1e-4


@pytest.fixture(scope="module")
def sd_inpaint(tmp_path_factory):
    folder, pipe = tiny_sd(tmp_path_factory.mktemp("tiny-sd-inpaint") / "pipe", in_channels=9)
    return folder, pipe, genzoo.load(str(folder), device="cpu")


@pytest.mark.parametrize("sampler", ["ddim", "dpmsolver++"])
def test_inpainting_unet_matches_diffusers(sd_inpaint, sampler):
    """A 9-channel inpainting UNet takes the mask and the masked image's latents."""
    from diffusers import StableDiffusionInpaintPipeline
    _, pipe, model = sd_inpaint
    pipe = StableDiffusionInpaintPipeline(**pipe.components)
    init, mask = _inpaint_inputs()
    want = oracle(pipe, sd_inpaint[0], sampler, 2, prompt=[PROMPT] * 2, image=init, mask_image=mask,
                  num_inference_steps=5)
    got = model.sample(2, seed=0, prompt=PROMPT, init=init, mask=mask, sampler=sampler,
                       steps=5).images
    assert (got - want).abs().max() < 1e-4


def test_sdxl_matches_diffusers(tmp_path):
    folder, pipe = tiny_sdxl(tmp_path / "sdxl")
    model = genzoo.load(str(folder), device="cpu")
    assert model.options()["sampler"].default == "euler"  # SDXL's EulerDiscreteScheduler
    for sampler, negative in (("euler", None), ("ddim", "low quality")):
        want = oracle(pipe, folder, sampler, 2, prompt=PROMPT, negative_prompt=negative,
                      num_images_per_prompt=2, num_inference_steps=4)
        got = model.sample(2, seed=0, prompt=PROMPT, negative_prompt=negative,
                           sampler=sampler, steps=4).images
        assert (got - want).abs().max() < 1e-4, sampler


def test_pickle_only_component_refused(tmp_path):
    folder, _ = tiny_sd(tmp_path / "pipe")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(WeightsError, match="pickle"):
        genzoo.load(str(folder), device="cpu")


def test_save_pretrained_round_trip(sd_model, tmp_path):
    out = sd_model.save_pretrained(tmp_path / "copy")
    again = genzoo.load(str(out), device="cpu")
    kw = dict(prompt=PROMPT, steps=2, sampler="ddim")
    assert torch.equal(sd_model.sample(1, **kw).images, again.sample(1, **kw).images)


def test_cli_prompts_one_per_sample(sd, sd_model, tmp_path):
    """`genzoo sample FOLDER --prompt A --prompt B`: commas stay in a prompt, a repeated flag
    gives one prompt per sample, and the PNG grid holds the same images as the API."""
    from click.testing import CliRunner

    from genzoo.cli import cli
    from genzoo.data import load_image_dataset
    prompts = ["a cat, asleep", "a dog"]
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(cli, ["sample", str(sd[0]), "-n", "2", "--steps", "2",
                                      "--sampler", "ddim", "--prompt", prompts[0],
                                      "--prompt", prompts[1], "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    want = sd_model.sample(2, prompt=prompts, steps=2, sampler="ddim").images
    single = sd_model.sample(2, prompt=prompts[0], steps=2, sampler="ddim").images
    assert not torch.allclose(want[1], single[1], atol=1e-3)  # the second prompt was used
    bad = CliRunner().invoke(cli, ["sample", str(sd[0]), "--steps", "1", "--height", "33"])
    assert bad.exit_code == 1 and "multiples of 2" in bad.output
    assert "Traceback" not in bad.output


def test_variant_only_folder_loads(sd_model, tmp_path):
    """A folder fetched with --dtype fp16 holds only the fp16 variant weight files."""
    import shutil
    folder = tmp_path / "pipe"
    shutil.copytree(sd_model.name_or_path, folder)
    for path in list(folder.glob("*/*.safetensors")):
        path.rename(path.with_name(path.name.replace(".safetensors", ".fp16.safetensors")))
    again = genzoo.load(str(folder), device="cpu")
    kw = dict(prompt=PROMPT, steps=2, sampler="ddim")
    assert torch.equal(sd_model.sample(1, **kw).images, again.sample(1, **kw).images)
