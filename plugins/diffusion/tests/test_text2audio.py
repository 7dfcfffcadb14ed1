"""AudioLDM pipeline folders saved by diffusers sample through genzoo as diffusers' own
AudioLDMPipeline does: same per-sample generators, same waveforms within 1e-4 (fp32), for each
sampler that has a diffusers scheduler; tiny random pipelines (diffusers' test sizes) with a
RoBERTa byte-level BPE tokenizer trained offline, and a vocoder at unit gain so that waveforms
are ~0.1, not ~1e-6 (see ``_tiny_audioldm.audible``)."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import genzoo  # noqa: E402
from genzoo.errors import GenzooError, OptionError, WeightsError  # noqa: E402

from _oracle import oracle  # noqa: E402
from _tiny_audioldm import SENTENCES, tiny_audioldm  # noqa: E402

PROMPTS = [SENTENCES[0], SENTENCES[3]]
# the second is longer than the tiny CLAP's 8-wide embedding: diffusers cuts negatives there
NEGATIVES = ["rain", "a dog barking loudly in the distance while a car passes by"]


def waves(samples) -> torch.Tensor:
    """The (n, 1, T) waveform tensor of genzoo's samples."""
    return samples.data


@pytest.fixture(scope="module")
def ldm(tmp_path_factory):
    return tiny_audioldm(tmp_path_factory.mktemp("tiny-audioldm") / "pipe")


@pytest.fixture(scope="module")
def model(ldm):
    return genzoo.load(str(ldm[0]), device="cpu")


def test_folder_loads_as_text2audio(model):
    assert model.arch == "diffusers-text2audio" and model.family == "diffusion"
    assert model.modality == "audio"
    assert model.sample_metadata() == {"sample_rate": 16000}
    # the UNet's 32 latent frames * 2 (latent factor) * 4 samples per frame / 16 kHz
    assert model.default_seconds() == pytest.approx(0.016)
    assert model.options()["seconds"].default == model.default_seconds()  # genzoo info shows it
    assert model.options()["sampler"].default == "ddim"  # the pipeline's DDIMScheduler
    assert {"prompt", "negative_prompt"} <= set(model.capabilities)


@pytest.mark.parametrize("sampler", ["ddim", "dpmsolver++", "euler-a"])
def test_text_to_audio_matches_diffusers(ldm, model, sampler):
    folder, pipe = ldm
    want = oracle(pipe, folder, sampler, 2, prompt=PROMPTS, num_inference_steps=5,
                  audio_length_in_s=0.05)
    got = waves(model.sample(2, seed=0, prompt=PROMPTS, sampler=sampler, steps=5,
                             seconds=0.05))
    assert got.shape == (2, 1, 800) and want.shape == (2, 800)
    assert want.std() > 0.02  # waveforms big enough for 1e-4 to mean something
    assert (got[:, 0] - want).abs().max() < 1e-4


def test_negative_prompts_guidance_and_default_length(ldm, model):
    folder, pipe = ldm
    want = oracle(pipe, folder, "ddim", 2, prompt=PROMPTS, negative_prompt=NEGATIVES,
                  guidance_scale=4.0, num_inference_steps=4)
    got = waves(model.sample(2, seed=0, prompt=PROMPTS, negative_prompt=NEGATIVES,
                             guidance=4.0, steps=4))
    assert got.shape == (2, 1, 256)  # 0.016 s at 16 kHz
    assert (got[:, 0] - want).abs().max() < 1e-4
    unguided = oracle(pipe, folder, "ddim", 1, prompt=PROMPTS[:1], guidance_scale=1.0,
                      num_inference_steps=4)
    got = waves(model.sample(1, seed=0, prompt=PROMPTS[0], guidance=1.0, steps=4))
    assert (got[:, 0] - unguided).abs().max() < 1e-4


def test_seconds_round_up_then_cut(model):
    """0.021 s: 84 frames, rounded up to 84 (a multiple of 2); 0.0215 s: 86 frames; the
    waveform is cut to int(seconds * 16000) samples."""
    for seconds, length in ((0.021, 336), (0.0215, 344), (0.0123, 196)):
        got = waves(model.sample(1, prompt=PROMPTS[0], steps=1, seconds=seconds))
        assert got.shape == (1, 1, length), seconds
    with pytest.raises(OptionError, match="at least 0.0005"):
        model.sample(1, prompt=PROMPTS[0], steps=1, seconds=0.0001)


def test_sample_i_depends_only_on_seed_and_i(model):
    kw = dict(prompt=PROMPTS[1], steps=3, sampler="euler-a", seconds=0.03)
    four = waves(model.sample(4, seed=3, batch_size=3, **kw))
    two = waves(model.sample(2, seed=3, **kw))
    assert torch.allclose(four[:2], two, atol=1e-5)
    assert not torch.allclose(four[0], four[1], atol=1e-3)


def test_save_pretrained_round_trip(model, tmp_path):
    out = model.save_pretrained(tmp_path / "copy")
    again = genzoo.load(str(out), device="cpu")
    assert again.arch == "diffusers-text2audio"
    assert again.options()["seconds"].default == model.default_seconds()
    assert again.sample_metadata() == {"sample_rate": 16000}
    kw = dict(prompt=PROMPTS[0], steps=2, seconds=0.02)
    assert torch.equal(waves(model.sample(1, **kw)), waves(again.sample(1, **kw)))


def test_cli_writes_a_wav(ldm, model, tmp_path):
    """`genzoo sample FOLDER --prompt P --seconds S -o out.wav`: 16-bit PCM at the vocoder's
    rate holding the API's waveforms; a bad length is one line, exit 1."""
    from click.testing import CliRunner

    from genzoo.cli import cli
    from genzoo.modalities.audio import read_wav
    out = tmp_path / "out.wav"
    result = CliRunner().invoke(cli, ["sample", str(ldm[0]), "-n", "1", "--steps", "2",
                                      "--prompt", PROMPTS[0], "--seconds", "0.05",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    data, rate = read_wav(out)
    want = waves(model.sample(1, prompt=PROMPTS[0], steps=2, seconds=0.05))
    assert rate == 16000 and data.shape == (1, 800)
    assert (data - want[0]).abs().max() < 1.5 / 32767  # 16-bit rounding
    bad = CliRunner().invoke(cli, ["sample", str(ldm[0]), "--steps", "1", "--seconds", "0.0001",
                                   "-o", str(tmp_path / "bad.wav")])
    assert bad.exit_code == 1 and "at least" in bad.output and "Traceback" not in bad.output


def test_finetune_refused_in_one_line(model, tmp_path):
    from click.testing import CliRunner

    from genzoo.cli import cli
    with pytest.raises(GenzooError, match="finetuning AudioLDM .* not supported yet"):
        genzoo.finetune(model, str(tmp_path), steps=1, out=tmp_path / "run", progress=False)
    result = CliRunner().invoke(cli, ["finetune", model.name_or_path, "--data", str(tmp_path),
                                      "--steps", "1", "--out", str(tmp_path / "run2")])
    assert result.exit_code == 1 and "not supported yet" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_detect_claims_audioldm_folders_only():
    from genzoo_diffusion.detect import detect_arch
    files = ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
             "tokenizer/tokenizer_config.json", "unet/config.json", "vae/config.json",
             "vocoder/config.json"]
    assert detect_arch({}, files) == "diffusers-text2audio"
    no_vocoder = [f for f in files if not f.startswith("vocoder/")]
    assert detect_arch({}, no_vocoder) == "diffusers-text2image"
    # AudioLDM 2 and MusicLDM have more components: not claimed (nor as text-to-image)
    assert detect_arch({}, files + ["feature_extractor/preprocessor_config.json"]) is None
    assert detect_arch({}, files + ["language_model/config.json"]) is None


def test_select_files_takes_safetensors_of_each_component():
    """The listing of cvssp/audioldm-s-full-v2 (pickle and safetensors side by side)."""
    from genzoo_diffusion.files import select_files
    parts = {"scheduler": ["scheduler_config.json"],
             "text_encoder": ["config.json", "model.safetensors", "pytorch_model.bin"],
             "tokenizer": ["merges.txt", "special_tokens_map.json", "tokenizer.json",
                           "tokenizer_config.json", "vocab.json"],
             "unet": ["config.json", "diffusion_pytorch_model.bin",
                      "diffusion_pytorch_model.safetensors"],
             "vae": ["config.json", "diffusion_pytorch_model.bin",
                     "diffusion_pytorch_model.safetensors"],
             "vocoder": ["config.json", "model.safetensors", "pytorch_model.bin"]}
    listing = [".gitattributes", "README.md", "model_index.json"] + [
        f"{c}/{f}" for c, files in parts.items() for f in files]
    index = {"_class_name": "AudioLDMPipeline", **{c: ["x", "Y"] for c in parts}}
    chosen = select_files(listing, lambda name: index, None)
    assert "vocoder/model.safetensors" in chosen and "tokenizer/vocab.json" in chosen
    assert not [f for f in chosen if f.endswith(".bin") or f.startswith((".", "README"))]


def test_not_an_audioldm_unet_refused(ldm, tmp_path):
    """A UNet without the class embedding the prompt enters through is refused in one line."""
    import shutil
    folder = tmp_path / "pipe"
    shutil.copytree(ldm[0], folder)
    config = json.loads((folder / "unet" / "config.json").read_text())
    config["class_embed_type"] = None
    (folder / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="no class embedding"):
        genzoo.load(str(folder), device="cpu")
