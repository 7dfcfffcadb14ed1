"""Independent logistic pixels: x = sigmoid(mu + s * logistic noise). Exact NLL is cheap."""
from __future__ import annotations

import math

import torch
from torch import nn

from genzoo.model import GenerativeModel
from genzoo.options import Option


class PixelFlow(GenerativeModel):
    """An invertible per-pixel map of logistic noise, so its likelihood is exact."""

    arch = "testflow-pixel"
    family = "testflow"
    sample_defaults = {"scale": 1.0}
    sample_options = (Option("scale", "float", 1.0, "noise scale", min=0.0, max=4.0),)
    eval_defaults = {"n": 20}

    def __init__(self, config=None):
        config = {"image_shape": [1, 28, 28], **(config or {})}
        super().__init__(config)
        self.mu = nn.Parameter(torch.zeros(*config["image_shape"]))
        self.log_s = nn.Parameter(torch.zeros(*config["image_shape"]))

    def generate(self, generators, scale=1.0):
        u = torch.stack([torch.rand(self.mu.shape, generator=g) for g in generators])
        noise = torch.log(u.clamp(1e-6, 1 - 1e-6)) - torch.log1p(-u.clamp(1e-6, 1 - 1e-6))
        return torch.sigmoid(self.mu + self.log_s.exp() * scale * noise.to(self.mu.device))

    def nll(self, images: torch.Tensor) -> torch.Tensor:
        """Exact negative log-density of images in (0, 1), nats per image."""
        x = images.clamp(1e-4, 1 - 1e-4).to(self.mu.device)
        y = torch.log(x) - torch.log1p(-x)  # the inverse of the sigmoid
        z = (y - self.mu) / self.log_s.exp()
        log_p = -z - 2 * nn.functional.softplus(-z) - self.log_s  # logistic density of y
        log_p = log_p - torch.log(x) - torch.log1p(-x)  # change of variables back to x
        return -log_p.flatten(1).sum(1)

    def training_loss(self, images):
        return self.nll(images).mean()

    def evaluate_metrics(self, reference, *, seed=0):
        """The family's own figure: exact NLL in bits per dimension on the reference."""
        dims = reference[0].numel()
        return {"nll_bits_per_dim": float(self.nll(reference).mean()) / dims / math.log(2)}
