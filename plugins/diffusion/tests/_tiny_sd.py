"""Tiny random Stable Diffusion pipelines saved by diffusers itself, offline, with the real
CLIP tokenizer: the sizes of diffusers' own pipeline tests, the vocabulary CLIP ships.

open-clip-torch bundles CLIP's BPE merges (``bpe_simple_vocab_16e6.txt.gz``); the vocabulary
is rebuilt from them exactly as CLIP's ``SimpleTokenizer`` does (the 256 byte symbols, the same
with ``</w>``, one token per merge, then the two special tokens), so a transformers
``CLIPTokenizer`` is made without any download and encodes as openai/clip-vit-large-patch14
does ("a photo of a cat" -> 49406 320 1125 539 320 2368 49407).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

#: CLIP's vocabulary: 256 bytes, 256 bytes + "</w>", 48,894 merges, 2 special tokens.
VOCAB_SIZE = 49408
_MERGES = VOCAB_SIZE - 256 - 256 - 2


def write_clip_tokenizer(folder: Path, pad_token: str = "<|endoftext|>") -> Path:
    """Write CLIP's tokenizer (vocab.json, merges.txt and transformers' files) into ``folder``
    (SD 1.x pads with <|endoftext|>, SD 2.x and SDXL's second tokenizer with "!")."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1:_MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                        model_max_length=77, pad_token=pad_token)
    tok.save_pretrained(str(folder))
    return folder


def _beside(folder: Path, name: str) -> Path:
    """A scratch folder next to the pipeline folder (never inside it)."""
    return folder.parent / f"{folder.name}-{name}"


def _text_encoder(projection: bool = False, seed: int = 0):
    """A 5-layer, 32-wide CLIP text encoder over the real vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    config = CLIPTextConfig(bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
                            hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
                            num_attention_heads=4, num_hidden_layers=5, vocab_size=VOCAB_SIZE,
                            max_position_embeddings=77, hidden_act="gelu", projection_dim=32)
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _vae(block_out_channels=(4, 8), norm_num_groups=2, seed: int = 0):
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=list(block_out_channels), in_channels=3,
                         out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                         up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4,
                         norm_num_groups=norm_num_groups, sample_size=32).eval()


#: SD 1.5's scheduler/scheduler_config.json (PNDM, the repository default).
SD15_SCHEDULER = {"_class_name": "PNDMScheduler", "beta_end": 0.012,
                  "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                  "clip_sample": False, "num_train_timesteps": 1000, "set_alpha_to_one": False,
                  "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None}


def tiny_sd(folder: Path, in_channels: int = 4, scheduler: dict | None = None,
            prediction_type: str = "epsilon"):
    """A StableDiffusionPipeline (or, with ``in_channels=9``, an inpainting one) of diffusers'
    test sizes, saved to ``folder`` in diffusers' layout; returns (folder, pipeline)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.schedulers import PNDMScheduler
    from transformers import CLIPTokenizer
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=32,
                                in_channels=in_channels, out_channels=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=32, norm_num_groups=2).eval()
    sched_config = {**SD15_SCHEDULER, "prediction_type": prediction_type, **(scheduler or {})}
    sched = PNDMScheduler.from_config(sched_config)
    if sched_config["_class_name"] != "PNDMScheduler":
        import diffusers
        sched = getattr(diffusers, sched_config["_class_name"]).from_config(sched_config)
    tokenizer = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(_beside(folder, "tokenizer"))))
    pipe = StableDiffusionPipeline(unet=unet, scheduler=sched, vae=_vae(),
                                   text_encoder=_text_encoder(), tokenizer=tokenizer,
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):  # as real SD repositories ship them
        (folder / "tokenizer" / name).write_bytes((_beside(folder, "tokenizer") / name).read_bytes())
    return folder, pipe


def tiny_sdxl(folder: Path):
    """A StableDiffusionXLPipeline of diffusers' test sizes (two text encoders, the second
    with projection; text_time additional embeddings), saved to ``folder``."""
    from diffusers import (EulerDiscreteScheduler, StableDiffusionXLPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTokenizer
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(2, 4), layers_per_block=2, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80, cross_attention_dim=64,
        norm_num_groups=1).eval()
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                   beta_schedule="scaled_linear", timestep_spacing="leading")
    tok = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(_beside(folder, "tokenizer"))))
    tok2 = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(_beside(folder, "tokenizer_2"), "!")))
    pipe = StableDiffusionXLPipeline(
        vae=_vae((32, 64), 32), text_encoder=_text_encoder(), tokenizer=tok,
        text_encoder_2=_text_encoder(projection=True, seed=1), tokenizer_2=tok2, unet=unet,
        scheduler=sched, add_watermarker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder, pipe
