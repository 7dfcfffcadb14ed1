"""`DCGAN`: the house generative adversarial network ("gan-dcgan").

A DCGAN-shaped generator (a linear layer to 7x7, then stride-2 transposed convolutions up to
28x28) and discriminator (stride-2 convolutions, each followed by a 3x3 one, down to 7x7, then a
linear score), trained with a recipe chosen to be stable without tuning:

- **spectral normalisation** on every discriminator layer (Miyato et al., 2018), which bounds
  D's Lipschitz constant so its gradients stay informative;
- the **hinge loss** (or the non-saturating loss, ``config["loss"] = "ns"``);
- **GroupNorm** rather than BatchNorm in the generator: it acts the same in training and
  sampling and never mixes samples of a batch, so per-sample seeds hold by construction (and
  in a short trial BatchNorm gave grainier digits);
- an **EMA generator**: the engine averages the generator's weights (``uses_ema``,
  ``ema_module``) and samples with the average;
- two optimizer stages per step, discriminator then generator, each with its own AdamW
  (``train_stages``), with GAN-style betas (0.5, 0.99).

**Class labels** (``config["num_classes"] = K``, the bundled gan-mnist has 10): the generator
takes the label as a one-hot vector appended to its latent, and the discriminator is a
*projection discriminator* (Miyato & Koyama, 2018): its score adds the inner product of a class
embedding with its features, which asks "is this a real image *of this class*". Images without
a label train against a learned "no label" embedding. Without a label, sampling draws each
sample's label from the class prior (the training labels' frequencies, kept with the weights)
with the sample's own generator, so ``label=k`` reproduces every sample whose drawn label was k.

Sampling draws each latent from its sample's own generator; ``truncation`` (psi in (0, 1])
keeps the central psi of each latent coordinate's probability mass, redrawing the coordinates
that fall outside it, so lower psi gives cleaner, less varied digits and 1.0 is plain N(0, I).
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genzoo.errors import OptionError
from genzoo.model import GenerativeModel, TrainStage
from genzoo.options import Option, with_classes
from genzoo.seeding import per_sample_labels, per_sample_randn

DEFAULT_CONFIG: dict[str, Any] = {
    "image_shape": [1, 28, 28],
    "latent_dim": 64,
    "g_channels": [128, 64],      # 7x7 -> 14x14, then the output layer -> 28x28
    "d_channels": [64, 128],      # 28x28 -> 14x14 -> 7x7
    "d_depth": 1,                 # stride-1 3x3 layers after each of D's stride-2 layers
    "loss": "hinge",
    "g_lr_scale": 1.0,            # the generator's learning rate relative to the engine's lr
    "num_classes": 0,             # K > 0: class-conditional (labels 0..K-1)
}
LOSSES = ("hinge", "ns")


class Generator(nn.Module):
    """z (N, latent) -> images (N, C, H, W) in [-1, 1]."""

    def __init__(self, latent: int, channels: list[int], out_ch: int, base: int):
        super().__init__()
        self.base, self.c0 = base, channels[0]
        self.fc = nn.Linear(latent, channels[0] * base * base)
        layers: list[nn.Module] = [_group_norm(channels[0]), nn.ReLU()]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1),
                       _group_norm(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(channels[-1], out_ch, 4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(self.fc(z).view(z.shape[0], self.c0, self.base, self.base))


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (as many as divide ``channels``)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class Discriminator(nn.Module):
    """images (N, C, H, W) in [-1, 1] -> one real-vs-fake score per image (N,)."""

    def __init__(self, in_ch: int, channels: list[int], side: int, depth: int = 1,
                 num_classes: int = 0):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_ch
        for ch in channels:
            layers += [spectral_norm(nn.Conv2d(c, ch, 4, stride=2, padding=1)),
                       nn.LeakyReLU(0.2)]
            for _ in range(depth):  # stride-1 3x3 layers: depth is what SN discriminators need
                layers += [spectral_norm(nn.Conv2d(ch, ch, 3, padding=1)), nn.LeakyReLU(0.2)]
            c = ch
        flat = c * (side // 2 ** len(channels)) ** 2
        self.net = nn.Sequential(*layers, nn.Flatten(), spectral_norm(nn.Linear(flat, 1)))
        # the projection: one embedding per class and one for "no label" (index num_classes)
        self.embed = spectral_norm(nn.Embedding(num_classes + 1, flat)) if num_classes else None

    def forward(self, x, label: torch.Tensor | None = None):
        """Scores (N,); ``label`` (N,) class indices, or ``num_classes`` for "no label"."""
        if self.embed is None:
            return self.net(x).squeeze(1)
        h = self.net[:-1](x)
        return self.net[-1](h).squeeze(1) + (self.embed(label) * h).sum(1)


class DCGAN(GenerativeModel):
    """A DCGAN over images in [0, 1] (the networks see [-1, 1]); see the module docstring."""

    arch = "gan-dcgan"
    family = "gan"
    modality = "image"
    data_help = ("an image folder (class sub-folders or a metadata.jsonl give labels), an .npz/.npy of "
                 "(N, C, H, W) images in [0, 1] (with labels if it has them), or 'mnist'")
    uses_ema = True
    # No gradient clipping: spectral norm already bounds D, and clipping would fight Adam's
    # per-parameter scaling in a two-player game. Weight decay would shrink D's margin.
    train_defaults = {"batch_size": 64, "lr": 5e-4, "warmup": 100, "weight_decay": 0.0,
                      "grad_clip": 0.0, "ema_decay": 0.999, "betas": (0.5, 0.99)}
    sample_defaults = {"truncation": 1.0, "batch_size": 256}
    sample_options = (
        Option("truncation", "float", 1.0, "latent truncation psi: below 1 trades variety for "
               "fidelity", min=0.0, max=1.0),
        Option("label", "int", None, "class to sample (one, or one per sample: 3,1,4); none: "
               "drawn from the class prior", min=0, condition=True, per_sample=True),
        Option("batch_size", "int", 256, "samples per generator batch", min=1),
    )

    def __init__(self, config: dict[str, Any] | None = None):
        config = {**DEFAULT_CONFIG, **(config or {})}
        super().__init__(config)
        c, h, w = self.image_shape = tuple(config["image_shape"])
        g_ch, d_ch = list(config["g_channels"]), list(config["d_channels"])
        up = 2 ** len(g_ch)
        if h != w or h % up or h % 2 ** len(d_ch):
            raise OptionError(f"gan-dcgan needs square images with a side divisible by "
                              f"{max(up, 2 ** len(d_ch))}, got {h}x{w}; resize the data")
        if config["loss"] not in LOSSES:
            raise OptionError(f"unknown GAN loss {config['loss']!r}: use one of "
                              f"{', '.join(LOSSES)}")
        self.latent_dim = int(config["latent_dim"])
        self.num_classes = k = int(config.get("num_classes") or 0)
        self.generator = Generator(self.latent_dim + k, g_ch, c, h // up)
        self.discriminator = Discriminator(c, d_ch, h, int(config["d_depth"]), k)
        if k:  # the training labels' frequencies (prepare_data), saved with the weights
            self.register_buffer("class_prior", torch.full((k,), 1.0 / k))

    def options(self) -> dict[str, Option]:
        """The declared options; ``label`` only for a class-conditional network (0..K-1)."""
        return with_classes(super().options(), self.num_classes)

    # ---- sampling ------------------------------------------------------------------------
    def generate(self, generators, truncation: float = 1.0, label=None):
        """Images in [0, 1] from latents drawn per sample (truncated when psi < 1), of class
        ``label`` (per sample) or of a class drawn from the prior."""
        return self.decode(self.latents(generators, truncation, label).to(self.device))

    def latents(self, generators, truncation: float = 1.0, label=None, **options) -> torch.Tensor:
        """(n, latent_dim [+ K]) latents, row i from generator i (truncated when psi < 1);
        a class-conditional model appends the one-hot label (drawn after the latent)."""
        z = truncated_latents(generators, self.latent_dim, check_truncation(truncation))
        if not self.num_classes:
            return z
        labels = per_sample_labels(generators, self.class_prior, label)
        return torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The generator's images in [0, 1] for latents ``z`` (their label part is
        renormalised to sum 1: an interpolation between two classes mixes their one-hots)."""
        z = z.to(self.device)
        if self.num_classes:
            code, onehot = z.split([self.latent_dim, self.num_classes], 1)
            z = torch.cat([code, onehot / onehot.sum(1, keepdim=True).clamp(min=1e-6)], 1)
        return (self.generator(z).float() + 1) / 2

    # ---- training ------------------------------------------------------------------------
    def ema_module(self) -> nn.Module:
        """Only the generator is averaged (the EMA generator is what samples)."""
        return self.generator

    def train_stages(self) -> dict[str, TrainStage]:
        """Discriminator first, then generator, each with its own optimizer."""
        return {"discriminator": TrainStage(list(self.discriminator.parameters()), self.d_loss),
                "generator": TrainStage(list(self.generator.parameters()), self.g_loss,
                                        lr_scale=float(self.config["g_lr_scale"]))}

    def prepare_data(self, data: Any):
        """Images, with their class labels for a class-conditional model (-1: no label); the
        labels' frequencies become the class prior that unlabelled sampling draws from."""
        from genzoo.data import LabelledImages
        images = super().prepare_data(data)
        if not self.num_classes:  # say so rather than drop the data's labels silently
            return images.without_labels(f"this unconditional {self.arch} model")
        return LabelledImages.of(images, self.num_classes, prior=self.class_prior)

    def _split(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(images in [-1, 1], labels or None) of a training batch."""
        if not self.num_classes:
            return batch.float() * 2 - 1, None
        images, labels = batch
        return images.float() * 2 - 1, labels

    def _fake(self, n: int, device, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` fakes; for a class-conditional model, of ``labels`` (the real batch's: -1,
        no label, draws one from the class prior)."""
        z = torch.randn(n, self.latent_dim, device=device)
        if labels is None:
            return self.generator(z)
        drawn = torch.multinomial(self.class_prior, n, replacement=True).to(device)
        labels = torch.where(labels < 0, drawn, labels)
        return self.generator(torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], 1))

    def _scores(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """D's scores; unlabelled images (and the fakes paired with them) are judged with the
        "no label" embedding."""
        if labels is None:
            return self.discriminator(x).float()
        return self.discriminator(x, torch.where(labels < 0, self.num_classes, labels)).float()

    def d_loss(self, batch) -> torch.Tensor:
        """The discriminator's loss on a real batch and as many fresh fakes of the same labels
        (G is frozen: the fakes are made without a graph, so this stage never touches G's
        gradients)."""
        real, labels = self._split(batch)
        with torch.no_grad():
            fake = self._fake(real.shape[0], real.device, labels)
        # One forward over real+fake: one spectral-norm power iteration per step, and faster.
        both = None if labels is None else torch.cat([labels, labels])
        scores = self._scores(torch.cat([real, fake.to(real.dtype)]), both)
        s_real, s_fake = scores.chunk(2)
        if self.config["loss"] == "hinge":
            return F.relu(1 - s_real).mean() + F.relu(1 + s_fake).mean()
        return F.softplus(-s_real).mean() + F.softplus(s_fake).mean()

    def g_loss(self, batch) -> torch.Tensor:
        """The generator's loss on as many fakes as the real batch, of its labels (only G's
        optimizer steps, so the gradients this leaves on D are cleared before D's next
        stage)."""
        real, labels = self._split(batch)
        score = self._scores(self._fake(real.shape[0], real.device, labels), labels)
        if self.config["loss"] == "hinge":
            return -score.mean()
        return F.softplus(-score).mean()


def check_truncation(value) -> float:
    """A valid truncation psi (a number in (0, 1]) as a float, else a one-line OptionError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= 1:
        raise OptionError(f"truncation must be a number in (0, 1] (1.0 = none; lower is cleaner "
                          f"and less varied), got {value!r}")
    return float(value)


def truncated_latents(generators, dim: int, psi: float = 1.0) -> torch.Tensor:
    """(n, dim) latents, row i from ``generators[i]``: standard normal, with every coordinate
    outside the central ``psi`` of the probability mass redrawn (by the inverse CDF, from the
    same generator) inside it, so each coordinate follows the truncated normal exactly and
    psi=1 is plain N(0, I)."""
    z = per_sample_randn(generators, (dim,))
    if psi >= 1.0:
        return z
    limit = NormalDist().inv_cdf(0.5 + psi / 2)
    for row, g in zip(z, generators):
        out = row.abs() > limit
        if out.any():  # one uniform per redrawn coordinate: no rejection loop for tiny psi
            u = torch.rand(int(out.sum()), generator=g, dtype=torch.float64)
            row[out] = torch.special.ndtri(0.5 + (u - 0.5) * psi).to(row.dtype)
    return z
