"""Planted contract violations, each a small change to a conforming MLP VAE (``KitBase``).

Each passes the checks that existed before it was planted (so the kit's older checks missed
it) and fails exactly one newer check; tests/test_testing.py proves both."""
import math
import pickle

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.model import GenerativeModel
from genzoo.seeding import per_sample_randn


class KitBase(GenerativeModel):
    """A conforming tiny MLP VAE over 1x6x6 images (the mutants' common ancestor)."""

    family = "kitmut"
    train_defaults = {"batch_size": 16, "lr": 1e-2, "warmup": 2}
    sample_defaults = {"temperature": 1.0}

    def __init__(self, config=None):
        config = {"image_shape": [1, 6, 6], "hidden": 16, "latent": 3, **(config or {})}
        super().__init__(config)
        d = math.prod(config["image_shape"])
        self.enc = nn.Sequential(nn.Linear(d, config["hidden"]), nn.SiLU(),
                                 nn.Linear(config["hidden"], 2 * config["latent"]))
        self.dec = nn.Sequential(nn.Linear(config["latent"], config["hidden"]), nn.SiLU(),
                                 nn.Linear(config["hidden"], d))

    def decode(self, z):
        return torch.sigmoid(self.dec(z).float()).reshape(-1, *self.config["image_shape"])

    def generate(self, generators, temperature=1.0):
        z = per_sample_randn(generators, (self.config["latent"],), device=self.device)
        return self.decode(z * temperature)

    def encode(self, x):
        return self.enc(x).chunk(2, dim=1)

    def training_loss(self, images):
        x = images.flatten(1)
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum")
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()
        return (rec + kl) / x.numel()


class KitUnsquashed(GenerativeModel):
    """A Gaussian pixel model with no squashing: mean and spread are learned per pixel. It
    starts at 0.5 +- 0.01 (in range), and training widens the spread to the data's, taking
    raw samples outside [0, 1]; ``sample`` clamps them, so only ``generate`` shows it."""

    arch = "kit-unsquashed"
    family = "kitmut"
    train_defaults = {"batch_size": 16, "lr": 0.3, "warmup": 1}
    sample_defaults = {"temperature": 1.0}

    def __init__(self, config=None):
        super().__init__({"image_shape": [1, 6, 6], **(config or {})})
        d = math.prod(self.config["image_shape"])
        self.mean = nn.Parameter(torch.full((d,), 0.5))
        self.log_std = nn.Parameter(torch.full((d,), math.log(0.01)))

    def generate(self, generators, temperature=1.0):
        eps = per_sample_randn(generators, self.mean.shape, device=self.device)
        out = self.mean + self.log_std.exp() * eps * temperature
        return out.reshape(-1, *self.config["image_shape"])

    def training_loss(self, images):
        x = images.flatten(1)
        return ((x - self.mean) ** 2 / (2 * (2 * self.log_std).exp()) + self.log_std).mean()


class KitHiddenPickle(KitBase):
    """Keeps extra state as a pickle named ``extra.dat`` and reads it back with pickle."""

    arch = "kit-hidden-pickle"

    def save_extra_files(self, folder):
        (folder / "extra.dat").write_bytes(pickle.dumps({"note": "hidden"}))

    def load_extra_files(self, folder):
        self.extra = pickle.loads((folder / "extra.dat").read_bytes())


class KitOldPickle(KitBase):
    """The same with a protocol-0 pickle, whose bytes carry no header: only forbidding
    pickle during load catches it."""

    arch = "kit-old-pickle"

    def save_extra_files(self, folder):
        (folder / "extra.dat").write_bytes(pickle.dumps({"note": "hidden"}, protocol=0))

    def load_extra_files(self, folder):
        self.extra = pickle.loads((folder / "extra.dat").read_bytes())


class KitForgetful(KitBase):
    """A learned output bias (initialised to zeros) that load resets as if it were state to
    rebuild: a fresh model round-trips, a trained one does not."""

    arch = "kit-forgetful"

    def __init__(self, config=None):
        super().__init__(config)
        self.out_bias = nn.Parameter(torch.zeros(math.prod(self.config["image_shape"])))

    def decode(self, z):
        x = torch.sigmoid(self.dec(z).float() + self.out_bias)
        return x.reshape(-1, *self.config["image_shape"])

    def training_loss(self, images):
        x = images.flatten(1)
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = F.binary_cross_entropy_with_logits(self.dec(z) + self.out_bias, x, reduction="sum")
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()
        return (rec + kl) / x.numel()

    def load_extra_files(self, folder):
        with torch.no_grad():
            self.out_bias.zero_()


class KitValueError(KitBase):
    """Validates its temperature with a ValueError instead of OptionError."""

    arch = "kit-value-error"

    def generate(self, generators, temperature=1.0):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        return super().generate(generators, temperature)


class KitInertConfig(KitBase):
    """Accepts a ``depth`` that builds nothing: the MLP has one hidden layer whatever it says."""

    arch = "kit-inert-config"

    def __init__(self, config=None):
        super().__init__({"depth": 2, **(config or {})})


class KitHalfTrained(KitBase):
    """Detaches the encoder's output, so its parameters, named by the default stage, never
    receive a gradient; the decoder alone still lowers the loss."""

    arch = "kit-half-trained"

    def encode(self, x):
        mu, logvar = super().encode(x)
        return mu.detach(), logvar.detach()


class KitDeaf(KitBase):
    """Its loss never reads the batch: it trains on a stand-in of the same shape (uniform
    noise), which lowers that loss just as well."""

    arch = "kit-deaf"

    def training_loss(self, images):
        return super().training_loss(torch.rand_like(images))
