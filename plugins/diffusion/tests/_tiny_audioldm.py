"""Tiny random AudioLDM pipelines saved by diffusers itself, offline: the sizes of diffusers'
own AudioLDM pipeline tests (``tests/pipelines/audioldm/test_audioldm.py``), with a RoBERTa
byte-level BPE tokenizer trained here by ``tokenizers`` on a few sentences (diffusers' tests
download ``hf-internal-testing/tiny-random-roberta``; nothing is downloaded here).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

#: RoBERTa's special tokens, in the order that gives them its ids (<s> 0, <pad> 1, </s> 2).
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
#: What the tokenizer learns its merges from: sound descriptions, as AudioLDM's prompts are.
SENTENCES = [
    "A hammer is hitting a wooden surface",
    "a dog barking in the distance while rain falls on a roof",
    "techno music with a strong, upbeat tempo and high melodic riffs",
    "birds chirping in a forest, wind through the leaves",
    "a man speaking over a crowd, then applause",
    "water running from a tap into a metal sink",
    "a car engine starting and idling, a door closing",
    "a piano playing a slow melody in a large hall",
]
#: diffusers' test vocoder: 8 mel bins in, 16 kHz out, 2 * 2 samples per mel frame.
VOCODER = {"model_in_dim": 8, "sampling_rate": 16000, "upsample_initial_channel": 16,
           "upsample_rates": [2, 2], "upsample_kernel_sizes": [4, 4],
           "resblock_kernel_sizes": [3, 7], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
           "normalize_before": False}
#: The scheduler of diffusers' AudioLDM tests (DDIM, scaled-linear betas).
SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "clip_sample": False, "set_alpha_to_one": False}


def write_roberta_tokenizer(folder: Path, vocab_size: int = 1000,
                            model_max_length: int = 77) -> Path:
    """Train a byte-level BPE (RoBERTa's kind) on ``SENTENCES`` and save it into ``folder`` as
    transformers' RobertaTokenizer files (vocab.json, merges.txt, tokenizer_config.json ...)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 4, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=SPECIALS, show_progress=False)
    bpe.save_model(str(folder))
    tok = RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                           model_max_length=model_max_length)
    tok.save_pretrained(str(folder))
    return folder


def audible(vocoder: torch.nn.Module, seed: int = 0) -> None:
    """Re-draw the vocoder's convolution weights at unit gain (std 1/sqrt(fan-in)).

    HiFi-GAN initialises them at std 0.01, so a random vocoder's waveforms are ~1e-6 and any
    two outputs agree "within 1e-4"; at unit gain they are ~0.1, and a 1e-4 comparison of
    waveforms says something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, w in vocoder.named_parameters():
            if name.endswith("weight") and w.ndim == 3:
                # a transposed convolution's weight is (in, out, k): its fan-in is out * k
                fan_in = w.shape[2] * (w.shape[0] if "upsampler" in name else w.shape[1])
                w.copy_(torch.randn(w.shape, generator=g) / math.sqrt(fan_in))


def tiny_audioldm(folder: Path, block_out_channels=(8, 16), sample_size: int = 32,
                  mel_bins: int = 8, text_width: int = 8, vocoder: dict | None = None,
                  scheduler: dict | None = None):
    """An AudioLDMPipeline of diffusers' test sizes (or wider, for the benchmark), saved to
    ``folder`` in diffusers' layout; returns (folder, pipeline). The UNet takes the CLAP text
    embedding as a class embedding ("simple_projection", concatenated to the time
    embedding); its attention blocks attend to themselves (no encoder states)."""
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import (ClapTextConfig, ClapTextModelWithProjection, RobertaTokenizer,
                              SpeechT5HifiGan, SpeechT5HifiGanConfig)
    channels = tuple(block_out_channels)
    groups = min(8, channels[0])
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=channels, layers_per_block=1, norm_num_groups=groups,
        sample_size=sample_size, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=channels,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=text_width,
        class_embeddings_concat=True).eval()
    sched = DDIMScheduler(**{**SCHEDULER, **(scheduler or {})})
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=list(channels), in_channels=1, out_channels=1,
                        norm_num_groups=groups, down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4).eval()
    torch.manual_seed(0)
    text = ClapTextModelWithProjection(ClapTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=text_width, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=1, num_hidden_layers=1, pad_token_id=1,
        vocab_size=1000, projection_dim=text_width)).eval()
    scratch = folder.parent / f"{folder.name}-tokenizer"  # beside the pipeline, never inside
    tokenizer = RobertaTokenizer.from_pretrained(str(write_roberta_tokenizer(scratch)))
    torch.manual_seed(0)
    voc = SpeechT5HifiGan(SpeechT5HifiGanConfig(**{**VOCODER, "model_in_dim": mel_bins,
                                                   **(vocoder or {})})).eval()
    audible(voc)
    pipe = AudioLDMPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                            scheduler=sched, vocoder=voc)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder, pipe
