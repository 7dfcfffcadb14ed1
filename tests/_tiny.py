"""A tiny image model for engine and contract tests (not a plugin: constructed directly)."""
from __future__ import annotations

import torch
from torch import nn

from genzoo.data import TensorImages
from genzoo.model import GenerativeModel
from genzoo.seeding import per_sample_randn


class TinyModel(GenerativeModel):
    """A 4x4 denoising autoencoder: enough parameters, randomness and EMA to test the engine."""

    arch = "tiny-test"
    family = "test"
    uses_ema = True
    train_defaults = {"batch_size": 8, "lr": 1e-2, "warmup": 2, "ema_decay": 0.9}
    sample_defaults = {"temperature": 1.0}

    def __init__(self, config=None):
        config = {"image_shape": [1, 4, 4], "latent": 3, "nan_at_call": None, **(config or {})}
        super().__init__(config)
        self.enc = nn.Linear(16, config["latent"])
        self.dec = nn.Linear(config["latent"], 16)
        self.calls = 0

    def generate(self, generators, temperature=1.0):
        z = per_sample_randn(generators, (self.config["latent"],), device=self.device) * temperature
        return torch.sigmoid(self.dec(z)).reshape(-1, 1, 4, 4)

    def training_loss(self, images):
        self.calls += 1
        x = images.reshape(len(images), 16)
        noisy = x + 0.1 * torch.randn_like(x)  # uses the global RNG: resume must restore it
        loss = (torch.sigmoid(self.dec(self.enc(noisy))) - x).pow(2).mean()
        if self.config["nan_at_call"] is not None and self.calls >= self.config["nan_at_call"]:
            loss = loss * float("nan")
        return loss


def tiny_data(n: int = 40, seed: int = 0) -> TensorImages:
    """``n`` random 1x4x4 images in [0, 1] with some structure (a bright top row)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=g) * 0.5
    x[:, :, 0] += 0.5
    return TensorImages(x)


class TinyAudio(GenerativeModel):
    """A tiny audio model: (n, 1, T) waveforms in [-1, 1] (negative halves included) at 8 kHz,
    decoded from a per-sample latent; trains on an (N, 1, T) tensor of waveforms. An
    optional ``prompt`` condition (``config["prompt"]``) makes it text-to-audio for cards."""

    arch = "tiny-audio"
    family = "test"
    modality = "audio"
    train_defaults = {"batch_size": 8, "lr": 1e-2, "warmup": 2}

    def __init__(self, config=None):
        config = {"sample_rate": 8000, "length": 32, "latent": 3, "prompt": False,
                  **(config or {})}
        super().__init__(config)
        self.dec = nn.Linear(config["latent"], config["length"])

    def options(self):
        """A ``prompt`` condition where the config asks for one (for card tests)."""
        from genzoo.options import Option
        schema = super().options()
        if self.config["prompt"]:
            schema["prompt"] = Option("prompt", "str", "", "what to sound like", condition=True)
        return schema

    def generate(self, generators, prompt=""):
        z = per_sample_randn(generators, (self.config["latent"],), device=self.device)
        return torch.tanh(self.dec(z)).reshape(-1, 1, self.config["length"])

    def prepare_data(self, data):
        if not isinstance(data, torch.Tensor) or data.dim() != 3:
            from genzoo.errors import DataError
            raise DataError(f"tiny-audio trains on an (N, 1, T) tensor, got {type(data).__name__}")
        return TensorImages(data)

    def training_loss(self, waves):
        z = torch.zeros(len(waves), self.config["latent"], device=waves.device)
        decoded = torch.tanh(self.dec(z + 0.1 * torch.randn_like(z))).unsqueeze(1)
        return (decoded - waves).pow(2).mean()


def tiny_waves(n: int = 24, length: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` (1, length) sine waves in [-1, 1] of random phase."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(n, 1, 1, generator=g) * 6.28
    t = torch.arange(length).view(1, 1, -1)
    return torch.sin(2 * 3.14159 * t / 8 + phase) * 0.8
