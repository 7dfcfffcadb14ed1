"""`TextToAudioModel` ("diffusers-text2audio"): AudioLDM pipeline folders, sampled by genzoo's
own samplers through the latent engine text-to-image uses (``latent.LatentDiffusionModel``).

An AudioLDM pipeline (Liu et al. 2023) is a latent diffusion model over mel spectrograms: its
UNet2DConditionModel denoises latents of a 1-channel AutoencoderKL whose "images" are log-mel
spectrograms (time down, mel bins across), and a HiFi-GAN vocoder (``SpeechT5HifiGan``) turns
the decoded spectrogram into a waveform. The prompt conditions the UNet through its class
embedding: CLAP's projected text embedding, L2-normalised, is ``class_labels`` (a
"simple_projection" class embedding); the UNet's attention blocks attend to themselves
(``prompts.ClapPromptEncoder``).

The networks and tokenizer load through diffusers and transformers (``pipeline_folder``);
diffusers' own ``AudioLDMPipeline`` (deprecated there) is not needed. Each choice follows that
pipeline, the oracle (same waveforms within 1e-4 in fp32 for the same per-sample generators):

- ``seconds`` is its ``audio_length_in_s``: the spectrogram has ``int(seconds / hop)`` frames
  (``hop`` = the vocoder's upsampling / its sample rate), rounded up to a multiple of the
  latent factor, and the waveform is cut to ``int(seconds * sample_rate)`` samples; the default
  is the UNet's sample size (5.12 s for AudioLDM's 16 kHz checkpoints).
- guidance 2.5 and 10 steps by default, the scheduler's class picks the sampler.

Sample i depends only on (seed, i): its initial latents (and an ancestral sampler's noise)
come from its own generator.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from genzoo.errors import GenzooError, OptionError, WeightsError
from genzoo.options import Option

from . import pipeline_folder as folders
from .latent import BATCH_OPTION, LatentDiffusionModel, guided_options, per_sample
from .prompts import ClapPromptEncoder, Conditioning

#: AudioLDMPipeline's defaults: guidance scale and denoising steps.
DEFAULT_GUIDANCE = 2.5
DEFAULT_STEPS = 10
#: The longest audio asked for in one sample (an hour of 16 kHz audio is a 225k-frame
#: spectrogram, far past what a UNet trained on seconds makes sense of).
MAX_SECONDS = 600.0


class FinetuneUnsupportedError(GenzooError):
    """The model cannot be finetuned by genzoo (yet)."""


class TextToAudioModel(LatentDiffusionModel):
    """An AudioLDM text-to-audio pipeline in genzoo: prompts in, (n, 1, T) waveforms out."""

    arch = "diffusers-text2audio"
    modality = "audio"
    networks = folders.AUDIO_NETWORKS
    tokenizers = ("tokenizer",)
    tokenizer_kind = "Roberta"
    required = ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "vocoder")
    pipeline_kind = "text-to-audio"
    pipeline_class = "AudioLDMPipeline"
    # a batch's memory grows with its length; AudioLDM's 10 s samples fit a CPU four at a time
    sample_defaults = {"sampler": "ddim", "steps": DEFAULT_STEPS, "eta": 0.0, "batch_size": 4,
                       "guidance": DEFAULT_GUIDANCE}
    sample_options = (
        *guided_options("the sound to make", "the empty prompt", DEFAULT_GUIDANCE, "ddim",
                        DEFAULT_STEPS),
        Option("seconds", "float", None, "audio length in seconds (default: the model's, "
               "5.12 for AudioLDM)", min=0.0, max=MAX_SECONDS),
        BATCH_OPTION,
    )

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self._default_length()

    def _default_length(self) -> None:
        """Show the model's own length as ``seconds``' default (``genzoo info``), once known."""
        seconds = (self.config.get("audio") or {}).get("seconds")
        if seconds is not None:
            self.sample_defaults = {**self.sample_defaults, "seconds": seconds}

    # ---- loading -----------------------------------------------------------------------
    def check_pipeline(self, folder: Path) -> None:
        """Refuse, in one line, what AudioLDM's sampling cannot use: a UNet without the class
        embedding the prompt enters through, or mismatched widths."""
        super().check_pipeline(folder)
        unet = self.unet.config
        if unet.get("class_embed_type") is None:
            raise WeightsError(f"{folder}/unet: it has no class embedding, which is how AudioLDM "
                               "conditions on the prompt; this is not an AudioLDM UNet")
        width = self.text_encoder.config.projection_dim
        if unet.get("projection_class_embeddings_input_dim") not in (None, width):
            raise WeightsError(f"{folder}/unet: its class embedding takes "
                               f"{unet.projection_class_embeddings_input_dim} features, the "
                               f"text encoder gives {width}")
        if unet.in_channels != self.vae.config.latent_channels:
            raise WeightsError(f"{folder}/unet: in_channels {unet.in_channels} differ from the "
                               "autoencoder's latent channels")
        if self.vocoder.config.model_in_dim % self.latent_factor:
            raise WeightsError(f"{folder}/vocoder: its {self.vocoder.config.model_in_dim} mel "
                               f"bins are not a multiple of the latent factor {self.latent_factor}")

    def describe(self) -> None:
        """The sample rate and the default length, for ``genzoo info``."""
        self.config["audio"] = {"sample_rate": self.sample_rate,
                                "seconds": self.default_seconds()}
        self._default_length()

    # ---- lengths -----------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """The vocoder's output rate in Hz."""
        return int(self.vocoder.config.sampling_rate)

    def sample_metadata(self) -> dict[str, Any]:
        """What every ``Samples.meta`` carries: the rate the waveforms are sampled at."""
        return {"sample_rate": self.sample_rate}

    def hop_seconds(self) -> float:
        """Seconds of audio per spectrogram frame: the vocoder's upsampling over its rate."""
        return math.prod(self.vocoder.config.upsample_rates) / self.sample_rate

    def default_seconds(self) -> float:
        """The length the UNet was trained at: its sample size in frames."""
        size = self.unet.config.sample_size
        frames = (size if isinstance(size, int) else size[0]) * self.latent_factor
        return frames * self.hop_seconds()

    def _frames(self, seconds: float) -> tuple[int, int]:
        """(spectrogram frames, waveform samples) for ``seconds``, as AudioLDMPipeline
        computes them; too short a length is a one-line OptionError."""
        hop, f = self.hop_seconds(), self.latent_factor
        if seconds < hop * f:
            raise OptionError(f"seconds must be at least {hop * f:g} for this model (one "
                              f"latent frame), got {seconds:g}")
        frames = int(seconds / hop)
        if frames % f:  # rounded up; the waveform is cut back to the length asked for
            frames = math.ceil(frames / f) * f
        return frames, int(seconds * self.sample_rate)

    # ---- sampling ----------------------------------------------------------------------
    def generate(self, generators, prompt="", negative_prompt=None, guidance=DEFAULT_GUIDANCE,
                 sampler="ddim", steps=DEFAULT_STEPS, eta=0.0, seconds=None, progress=None):
        """Waveforms (n, 1, T) in [-1, 1] for the prompts, one per generator (see the module
        docstring)."""
        n = len(generators)
        seconds = self.default_seconds() if seconds is None else float(seconds)
        frames, length = self._frames(seconds)
        f = self.latent_factor
        shape = (self.unet.config.in_channels, frames // f,
                 self.vocoder.config.model_in_dim // f)
        encoder = ClapPromptEncoder(self.tokenizer, self.text_encoder)
        cond = encoder.encode(per_sample(prompt, n))
        if guidance > 1.0:
            cond = Conditioning.cat(encoder.encode(per_sample(negative_prompt, n),
                                                   negative=True), cond)
        latents = self.denoise(generators, shape, cond.kwargs(), guidance, sampler=sampler,
                               steps=steps, eta=eta, progress=progress)
        return self.decode(latents)[:, None, :length]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Waveforms (n, T) from latents in the UNet's space: the autoencoder's mel
        spectrograms (n, 1, frames, bins) through the vocoder."""
        mel = self.decode_latents(z)[:, 0]
        voc_dtype = next(self.vocoder.parameters()).dtype
        return self.vocoder(mel.to(voc_dtype)).float()

    # ---- finetuning --------------------------------------------------------------------
    def prepare_data(self, data: Any):
        """Refused: see ``training_loss``."""
        raise self._no_finetune()

    def train_stages(self):
        """Refused: see ``training_loss``."""
        raise self._no_finetune()

    def training_loss(self, batch) -> torch.Tensor:
        """Refused in one line: training AudioLDM needs its mel front end (STFT settings,
        log compression) on audio-caption pairs, which genzoo does not have yet."""
        raise self._no_finetune()

    def _no_finetune(self) -> FinetuneUnsupportedError:
        return FinetuneUnsupportedError(
            f"{self.name_or_path or self.arch}: finetuning AudioLDM (text-to-audio) is not "
            "supported yet; sample it, or finetune a text-to-image pipeline")
