"""LoRA on every family peft's layers fit: the bundled GAN (generator and discriminator),
diffusion UNet and VAE, the diffusers format's UNet2DModel and the transformers format's
Llama. Each trains a few steps, its adapter folder reloads to the same samples, and merging
it gives them again."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import genzoo

pytest.importorskip("peft")
from genzoo.engine import lora  # noqa: E402


def _roundtrip(model, data, out, **options):
    """Train an adapter; its folder must reload to the same outputs, and merge to them."""
    genzoo.finetune(model, data, steps=3, out=out, progress=False, batch_size=4, lr=5e-2,
                    lora={"rank": 2}, **options)
    assert 0 < lora.trainable_count(model) < 0.2 * model.num_parameters()
    if model.modality == "text":
        def draw(m):
            return m.sample(2, seed=0, prompt="the", max_new_tokens=6).texts
    else:
        def draw(m):
            return m.sample(3, seed=0).images
    live = draw(model)
    loaded = genzoo.load(out, device="cpu")
    again = draw(loaded)
    lora.merge(loaded)
    merged = draw(loaded)
    if model.modality == "text":
        assert live == again == merged
    else:
        assert torch.allclose(live, again, atol=1e-5)
        assert torch.allclose(live, merged, atol=1e-3)
    return loaded


@pytest.mark.parametrize("name", ["gan-mnist", "diffusion-mnist", "vae-mnist"])
def test_bundled_image_families_take_an_adapter(name, tmp_path):
    model = genzoo.load(name, device="cpu")
    before = genzoo.load(name, device="cpu").sample(3, seed=0).images
    _roundtrip(model, "mnist", tmp_path / "run")
    after = model.sample(3, seed=0).images
    assert not torch.allclose(before, after, atol=1e-6)  # the adapter changed the samples


def test_the_gan_adapts_its_generator_and_keeps_training_its_discriminator(tmp_path):
    model = genzoo.load("gan-mnist", device="cpu")
    genzoo.finetune(model, "mnist", steps=2, out=tmp_path / "run", progress=False,
                    batch_size=4, lora=2)
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert {"generator", "discriminator"} <= trained


def test_a_diffusers_format_model_takes_an_adapter(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1,
                                 layers_per_block=1, block_out_channels=(8, 16),
                                 norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    unet.save_pretrained(tmp_path / "flat", safe_serialization=True)
    diffusers.DDPMScheduler(num_train_timesteps=1000).save_pretrained(tmp_path / "flat")
    np.savez(tmp_path / "data.npz", images=np.random.default_rng(0).random((16, 8, 8)))
    model = genzoo.load(tmp_path / "flat", device="cpu")
    assert model.arch != "diffusion-unet"  # the diffusers format, not the house UNet
    _roundtrip(model, tmp_path / "data.npz", tmp_path / "run", sample_every=None)


def test_a_transformers_format_model_takes_an_adapter(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    text = ["the quick brown fox jumps over the lazy dog", "to be or not to be"] * 8
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                                  eos_token="<|endoftext|>")
    cfg = transformers.LlamaConfig(vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64,
                                   bos_token_id=hf_tok.bos_token_id,
                                   eos_token_id=hf_tok.eos_token_id)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "llama")
    hf_tok.save_pretrained(tmp_path / "llama")
    (tmp_path / "text.txt").write_text("\n".join(text * 4))
    model = genzoo.load(tmp_path / "llama", device="cpu")
    assert model.arch == "transformers-causal-lm"
    _roundtrip(model, tmp_path / "text.txt", tmp_path / "run")
