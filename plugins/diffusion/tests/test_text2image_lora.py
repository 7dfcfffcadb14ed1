"""LoRA for text-to-image pipelines: finetuning one on image-caption folders (diffusers'
text-to-image LoRA loss; only the LoRA layers move), and the LoRA files people share in
diffusers' format applied as diffusers applies them (same images within 1e-4, fp32), on tiny
random Stable Diffusion pipelines built offline."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")
pytest.importorskip("peft")

import genzoo  # noqa: E402
from genzoo.errors import DataError, WeightsError  # noqa: E402

from _tiny_sd import tiny_sd  # noqa: E402

PROMPT = "a photo of a cat"
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
WEIGHTS = "pytorch_lora_weights.safetensors"


def generators(n: int, seed: int = 0) -> list[torch.Generator]:
    from genzoo.seeding import sample_generators
    return sample_generators(seed, n)


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return tiny_sd(tmp_path_factory.mktemp("tiny-sd-lora") / "pipe")[0]


def diffusers_pipe(folder):
    """A fresh diffusers pipeline of ``folder`` with DDIM, as the oracle."""
    import diffusers
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(folder))
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    pipe.scheduler = diffusers.DDIMScheduler.from_config(config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def oracle(pipe, n: int = 2, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return pipe(prompt=PROMPT, generator=generators(n), num_images_per_prompt=n,
                    num_inference_steps=3, output_type="pt", **kwargs).images


def draw(model, n: int = 2) -> torch.Tensor:
    return model.sample(n, seed=0, prompt=PROMPT, sampler="ddim", steps=3).images


def _lora_layers(module, config) -> dict[str, torch.Tensor]:
    """Random (nonzero) LoRA layers of ``config`` injected by peft; their state, peft-named."""
    from peft import inject_adapter_in_model
    torch.manual_seed(1)
    inject_adapter_in_model(config, module)
    return {k.replace(".default", ""): v.detach().clone() for k, v in module.state_dict().items()
            if ".lora_" in k}


@pytest.fixture(scope="module")
def lora_files(sd, tmp_path_factory):
    """LoRA files as diffusers' ``save_lora_weights`` writes them: "unet" (UNet only, no
    metadata: alpha = rank) and "both" (UNet rank 4 alpha 8, text encoder rank 2 alpha 4,
    with diffusers' lora_adapter_metadata)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextModel
    root = tmp_path_factory.mktemp("loras")
    unet_config = LoraConfig(r=4, lora_alpha=8, target_modules=UNET_TARGETS,
                             init_lora_weights=False)
    text_config = LoraConfig(r=2, lora_alpha=4, target_modules=TEXT_TARGETS,
                             init_lora_weights=False)
    unet = _lora_layers(UNet2DConditionModel.from_pretrained(str(sd / "unet")), unet_config)
    text = _lora_layers(CLIPTextModel.from_pretrained(str(sd / "text_encoder")), text_config)
    StableDiffusionPipeline.save_lora_weights(str(root / "unet"), unet_lora_layers=unet)
    meta = {k: v for k, v in unet_config.to_dict().items() if k in ("r", "lora_alpha")}
    StableDiffusionPipeline.save_lora_weights(
        str(root / "both"), unet_lora_layers=unet, text_encoder_lora_layers=text,
        unet_lora_adapter_metadata={**meta, "target_modules": UNET_TARGETS},
        text_encoder_lora_adapter_metadata={"r": 2, "lora_alpha": 4,
                                            "target_modules": TEXT_TARGETS})
    return root, text_config, text


def test_diffusers_lora_file_matches_load_lora_weights(sd, lora_files):
    root = lora_files[0]
    pipe = diffusers_pipe(sd)
    base = oracle(pipe)
    pipe.load_lora_weights(str(root / "unet"))
    want, half = oracle(pipe), oracle(pipe, cross_attention_kwargs={"scale": 0.5})
    assert (want - base).abs().max() > 1e-2  # the LoRA changes the images
    model = genzoo.load(str(sd), device="cpu")
    assert model.load_lora(root / "unet").name == WEIGHTS
    assert (draw(model) - want).abs().max() < 1e-4
    scaled = genzoo.load(str(sd), device="cpu")
    scaled.load_lora(root / "unet" / WEIGHTS, scale=0.5)
    assert (draw(scaled) - half).abs().max() < 1e-4


def test_text_encoder_lora_and_metadata_alphas(sd, lora_files):
    """The UNet part as diffusers' loader reads it (metadata alpha 8, rank 4); the text
    encoder part as transformers' load_adapter applies it (peft layers, alpha 4, rank 2)."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict
    root, text_config, text = lora_files
    pipe = diffusers_pipe(sd)
    pipe.unet.load_lora_adapter(str(root / "both"), prefix="unet", weight_name=WEIGHTS)
    inject_adapter_in_model(text_config, pipe.text_encoder)
    set_peft_model_state_dict(pipe.text_encoder, text)
    want = oracle(pipe)
    model = genzoo.load(str(sd), device="cpu")
    model.load_lora(root / "both")
    config = model.lora_adapter.config
    assert config.r == 4 and config.lora_alpha == 8 and set(config.rank_pattern.values()) == {2}
    assert (draw(model) - want).abs().max() < 1e-4


def test_older_diffusers_keys_read_too(sd, lora_files, tmp_path):
    """``...to_q.lora.down.weight`` (diffusers before peft) loads as diffusers loads it."""
    from safetensors.torch import load_file, save_file
    state = load_file(str(lora_files[0] / "unet" / WEIGHTS))
    old = {k.replace(".lora_A.", ".lora.down.").replace(".lora_B.", ".lora.up."): v
           for k, v in state.items()}
    (tmp_path / "old").mkdir()
    save_file(old, str(tmp_path / "old" / WEIGHTS))
    pipe = diffusers_pipe(sd)
    pipe.load_lora_weights(str(tmp_path / "old"))
    model = genzoo.load(str(sd), device="cpu")
    model.load_lora(tmp_path / "old")
    assert (draw(model) - oracle(pipe)).abs().max() < 1e-4


def test_lora_folder_loads_on_the_base_its_card_names(sd, lora_files, tmp_path):
    """A folder with the file and a README naming base_model: genzoo.load and genzoo sample
    give the base with the LoRA on; saved, it is a genzoo adapter folder that loads back."""
    from click.testing import CliRunner

    from genzoo.cli import cli
    folder = tmp_path / "my-lora"
    folder.mkdir()
    (folder / WEIGHTS).write_bytes((lora_files[0] / "unet" / WEIGHTS).read_bytes())
    (folder / "README.md").write_text(f"---\nbase_model: {sd}\nlibrary_name: diffusers\n---\n")
    model = genzoo.load(str(folder), device="cpu")
    direct = genzoo.load(str(sd), device="cpu")
    direct.load_lora(folder)
    assert torch.equal(draw(model), draw(direct))
    adapter = model.save_pretrained(tmp_path / "adapter")
    assert torch.allclose(draw(genzoo.load(str(adapter), device="cpu")), draw(model), atol=1e-6)
    out = tmp_path / "x.png"
    result = CliRunner().invoke(cli, ["sample", str(folder), "-n", "1", "--steps", "2",
                                      "--prompt", PROMPT, "-o", str(out)])
    assert result.exit_code == 0, result.output
    (folder / "README.md").write_text("no card\n")
    with pytest.raises(WeightsError, match="names no base_model") as err:
        genzoo.load(str(folder), device="cpu")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("make, message", [
    (lambda t: {"lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight": t},
     "kohya/A1111"),
    (lambda t: {"unet.down_blocks.1.attentions.0.proj_in.alpha": t}, "network-alpha"),
    (lambda t: {"unet.x.to_q.lora_magnitude_vector": t}, "DoRA"),
    (lambda t: {"down_blocks.1.attentions.0.to_q.lora_A.weight": t}, "names no unet"),
    (lambda t: {"unet.down_blocks.9.attentions.0.to_q.lora_A.weight": t,
                "unet.down_blocks.9.attentions.0.to_q.lora_B.weight": t.clone()},
     "does not have"),
    (lambda t: {"text_encoder_2.text_model.x.q_proj.lora_A.weight": t}, "text_encoder_2"),
])
def test_other_lora_formats_are_refused_in_one_line(sd, tmp_path, make, message):
    from safetensors.torch import save_file
    save_file(make(torch.zeros(2, 4)), str(tmp_path / "x.safetensors"))
    model = genzoo.load(str(sd), device="cpu")
    with pytest.raises(WeightsError, match=message) as err:
        model.load_lora(tmp_path / "x.safetensors")
    assert "\n" not in str(err.value)
    assert getattr(model, "lora_adapter", None) is None  # nothing was injected


def test_pickle_and_wrong_sizes_refused(sd, lora_files, tmp_path):
    from safetensors.torch import load_file, save_file
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "pytorch_lora_weights.bin").write_bytes(b"not loaded")
    model = genzoo.load(str(sd), device="cpu")
    for path in (tmp_path / "p", tmp_path / "p" / "pytorch_lora_weights.bin"):
        with pytest.raises(WeightsError, match="pickle"):
            model.load_lora(path)
    state = load_file(str(lora_files[0] / "unet" / WEIGHTS))
    save_file({k: v[:, :3].contiguous() if ".lora_A." in k else v for k, v in state.items()},
              str(tmp_path / "small.safetensors"))
    with pytest.raises(WeightsError, match="does not fit"):
        model.load_lora(tmp_path / "small.safetensors")


def _captioned_folder(root, n: int = 8):
    """``n`` random 40x40 PNGs (resized to the model's 64x64) and a metadata.jsonl."""
    import numpy as np
    from PIL import Image
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "text": f"a {['red', 'blue'][i % 2]} square"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_lora_finetune_trains_only_the_unet_lora_layers(sd, tmp_path):
    from genzoo.engine import lora
    from genzoo.kit.train import check_every_parameter_trained, check_loss_uses_data, \
        run_finetune
    data = _captioned_folder(tmp_path / "data")
    model = genzoo.load(str(sd), device="cpu")
    base = draw(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(0)
    lora.attach(model, {"rank": 4, "alpha": 8})  # save_lora must say alpha 8 to diffusers
    run = run_finetune(model, data, tmp_path / "run", steps=4,
                       options={"lr": 1e-2, "batch_size": 4, "sample_every": None})
    assert all(torch.isfinite(torch.tensor(v)) for v in run.result.metrics.values())
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(".lora_" in n and n.startswith("unet.") for n in trained)
    assert any(".attn2.to_out.0." in n for n in trained)  # cross-attention adapted too
    check_every_parameter_trained(run)  # every LoRA tensor moved ...
    for name, p in model.named_parameters():  # ... and nothing else did
        if ".lora_" not in name:
            assert torch.equal(p, frozen[name.replace(".base_layer", "")]), name
    check_loss_uses_data(run)
    loaded = genzoo.load(str(run.result.folder), device="cpu")
    assert torch.allclose(draw(loaded), draw(model), atol=1e-6)
    assert (draw(loaded) - base).abs().max() > 1e-3
    # written in diffusers' format, diffusers' pipeline draws the same images
    model.save_lora(tmp_path / "shared")
    pipe = diffusers_pipe(sd)
    pipe.load_lora_weights(str(tmp_path / "shared"))
    assert (oracle(pipe) - draw(model)).abs().max() < 1e-4


def test_full_finetune_trains_the_unet_only(sd, tmp_path):
    """Without --lora-rank the UNet trains; the autoencoder and text encoder stay frozen
    (and in eval mode), as in diffusers' train_text_to_image.py."""
    data = _captioned_folder(tmp_path / "data", n=4)
    model = genzoo.load(str(sd), device="cpu")
    model.train()
    assert model.unet.training and not model.vae.training and not model.text_encoder.training
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = genzoo.finetune(model, data, steps=2, out=tmp_path / "run", lr=1e-3,
                             batch_size=2, progress=False, sample_every=None)
    changed = {n.split(".")[0] for n, p in model.named_parameters()
               if not torch.equal(p, before[n])}
    assert changed == {"unet"}
    again = genzoo.load(str(result.folder), device="cpu")
    assert torch.allclose(draw(again), draw(model), atol=1e-6)


def test_cli_finetune_lora_on_an_imagefolder(sd, tmp_path):
    """`genzoo finetune FOLDER --data DATA --lora-rank 4`: an adapter folder that loads onto
    its base; images without captions are refused in one line."""
    from click.testing import CliRunner

    from genzoo.cli import cli
    data = _captioned_folder(tmp_path / "data")
    out = tmp_path / "adapter"
    result = CliRunner().invoke(cli, ["finetune", str(sd), "--data", str(data), "--steps", "3",
                                      "--lora-rank", "4", "--lr", "1e-2", "--batch-size", "4",
                                      "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert (out / "adapter_config.json").is_file()
    adapted = genzoo.load(str(out), device="cpu")
    assert (draw(adapted) - draw(genzoo.load(str(sd), device="cpu"))).abs().max() > 1e-4
    (data / "metadata.jsonl").unlink()
    model = genzoo.load(str(sd), device="cpu")
    with pytest.raises(DataError, match="no captions") as err:
        genzoo.finetune(model, data, steps=1, lora=2, progress=False)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_training_loss_is_diffusers_text_to_image_loss(sd, prediction_type):
    """train_text_to_image_lora.py's loss, drawn in its order from the same global RNG:
    posterior sample * scaling_factor, noise, uniform timesteps, MSE to the noise or
    the velocity of the UNet on the noised latents given the captions."""
    from diffusers import DDPMScheduler

    from genzoo_diffusion.schedule import NoiseSchedule
    model = genzoo.load(str(sd), device="cpu")
    config = {**model.config["scheduler"], "prediction_type": prediction_type}
    model.schedule = NoiseSchedule(config)
    scheduler = DDPMScheduler.from_config(config)
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    captions = ["a red square", "a blue square", ""]
    torch.manual_seed(11)
    got = model.training_loss((images, captions))
    torch.manual_seed(11)
    with torch.no_grad():
        latents = model.vae.encode(images * 2 - 1).latent_dist.sample()
        latents = latents * model.vae.config.scaling_factor
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (3,)).long()
        noisy = scheduler.add_noise(latents, noise, t)
        ids = model.tokenizer(captions, padding="max_length", truncation=True,
                              max_length=model.tokenizer.model_max_length,
                              return_tensors="pt").input_ids
        hidden = model.text_encoder(ids, return_dict=False)[0]
        target = noise if prediction_type == "epsilon" else \
            scheduler.get_velocity(latents, noise, t)
        out = model.unet(noisy, t, hidden, return_dict=False)[0]
        want = torch.nn.functional.mse_loss(out.float(), target.float())
    assert abs(float(got.detach()) - float(want)) < 1e-5 * max(1.0, float(want))


def test_detect_claims_lora_folders_only():
    from genzoo_diffusion.detect import detect_arch
    assert detect_arch({}, [WEIGHTS, "README.md"]) == "diffusers-lora"
    assert detect_arch({}, ["pytorch_lora_weights.bin"]) == "diffusers-lora"  # refused at load
    assert detect_arch({}, ["unet/" + WEIGHTS]) is None  # only at the top
    sd = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json"]
    assert detect_arch({}, sd + [WEIGHTS]) == "diffusers-text2image"  # a pipeline stays one
