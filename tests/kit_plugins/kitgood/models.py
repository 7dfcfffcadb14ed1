"""Tiny conforming models: an MLP VAE over images (and a class-conditional one) and a
byte-level bigram LM."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.data import LabelledImages, load_image_dataset
from genzoo.errors import DataError, OptionError
from genzoo.model import GenerativeModel
from genzoo.options import Option, with_classes
from genzoo.seeding import per_sample_randn


class _MlpVae(GenerativeModel):
    """The MLP VAE that the image and audio families share: ``sample_size`` values per
    sample (flattened), a ``latent``-wide code, one ``hidden`` layer each way."""

    train_defaults = {"batch_size": 16, "lr": 1e-2, "warmup": 2}
    sample_defaults = {"temperature": 1.0}

    def __init__(self, config, sample_size: int):
        config = {"hidden": 16, "latent": 3, **config}
        super().__init__(config)
        self.enc = nn.Sequential(nn.Linear(sample_size, config["hidden"]), nn.SiLU(),
                                 nn.Linear(config["hidden"], 2 * config["latent"]))
        self.dec = nn.Sequential(nn.Linear(config["latent"], config["hidden"]), nn.SiLU(),
                                 nn.Linear(config["hidden"], sample_size))

    def _codes(self, generators, temperature):
        """Each sample's latent code from its own generator, scaled by ``temperature``."""
        if temperature < 0:
            raise OptionError(f"temperature must be >= 0, got {temperature}")
        z = per_sample_randn(generators, (self.config["latent"],), device=self.device)
        return z * temperature

    def _encode(self, x):
        """(a reparameterised code, the KL term summed) of flattened samples ``x``."""
        mu, logvar = self.enc(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return z, 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()


class KitImage(_MlpVae):
    arch = "kit-image"
    family = "kitimg"

    def __init__(self, config=None):
        config = {"image_shape": [1, 6, 6], **(config or {})}
        super().__init__(config, math.prod(config["image_shape"]))

    def generate(self, generators, temperature=1.0):
        x = self.dec(self._codes(generators, temperature))
        return torch.sigmoid(x.float()).reshape(-1, *self.config["image_shape"])

    def training_loss(self, images):
        x = images.flatten(1)
        z, kl = self._encode(x)
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum")
        return (rec + kl) / x.numel()


class KitLabels(KitImage):
    """KitImage conditioned on a class label: a label embedding (its last row means "no
    label") is added to the latent; training drops labels with probability label_dropout,
    which therefore acts only on labelled data."""

    arch = "kit-labels"
    sample_options = (Option("label", "int", None, "class to sample", min=0, condition=True,
                             per_sample=True),)

    def __init__(self, config=None):
        config = {"num_classes": 3, "label_dropout": 0.5, **(config or {})}
        super().__init__(config)
        self.embed = nn.Embedding(config["num_classes"] + 1, self.config["latent"])

    def options(self):
        return with_classes(super().options(), self.config["num_classes"])

    def prepare_data(self, data):
        images = load_image_dataset(data, shape=tuple(self.config["image_shape"]))
        return LabelledImages.of(images, self.config["num_classes"])

    def _condition(self, labels):
        return self.embed(torch.where(labels < 0, self.config["num_classes"], labels))

    def generate(self, generators, temperature=1.0, label=None):
        n = len(generators)
        labels = torch.full((n,), -1) if label is None else \
            torch.as_tensor(label).expand(n) if isinstance(label, int) else torch.as_tensor(label)
        x = self.dec(self._codes(generators, temperature)
                     + self._condition(labels.to(self.device)))
        return torch.sigmoid(x.float()).reshape(-1, *self.config["image_shape"])

    def training_loss(self, batch):
        images, labels = batch
        drop = torch.rand(labels.shape, device=labels.device) < self.config["label_dropout"]
        x = images.flatten(1)
        z, kl = self._encode(x)
        z = z + self._condition(torch.where(drop, -1, labels))
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum")
        return (rec + kl) / x.numel()


class _Windows:
    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return len(self.ids) - 1

    def __getitem__(self, idx):
        return torch.stack([self.ids[idx], self.ids[idx + 1]], dim=1)


class KitText(GenerativeModel):
    arch = "kit-text"
    family = "kittext"
    modality = "text"
    train_defaults = {"batch_size": 64, "lr": 5e-2, "warmup": 2}
    sample_defaults = {"max_new_tokens": 12, "prompt": "t"}

    def __init__(self, config=None):
        super().__init__({**(config or {})})
        self.logits = nn.Parameter(torch.zeros(256, 256))

    def generate(self, generators, max_new_tokens=12, prompt="t"):
        out = []
        for g in generators:
            ids = list(prompt.encode())
            for _ in range(int(max_new_tokens)):
                p = torch.softmax(self.logits[ids[-1]].float().cpu(), -1)
                ids.append(int(torch.multinomial(p, 1, generator=g)))
            out.append(bytes(ids).decode("utf-8", errors="replace"))
        return out

    def prepare_data(self, data):
        try:
            text = open(data, encoding="utf-8").read()
        except OSError as e:
            raise DataError(f"{data}: cannot read ({e})") from e
        return _Windows(torch.tensor(list(text.encode()), dtype=torch.long))

    def training_loss(self, pairs):
        return F.cross_entropy(self.logits[pairs[:, 0]], pairs[:, 1])


class KitAudio(_MlpVae):
    """An MLP VAE over short waveforms: audio (n, 1, T) in [-1, 1] (tanh) at the config's
    sample_rate; trains on an (N, 1, T) tensor or an .npz holding ``audios``."""

    arch = "kit-audio"
    family = "kitaudio"
    modality = "audio"
    data_help = "an (N, 1, T) tensor of waveforms in [-1, 1], or an .npz holding 'audios'"

    def __init__(self, config=None):
        config = {"sample_rate": 8000, "length": 48, **(config or {})}
        super().__init__(config, int(config["length"]))

    def generate(self, generators, temperature=1.0):
        x = self.dec(self._codes(generators, temperature))
        return torch.tanh(x.float()).reshape(-1, 1, self.config["length"])

    def prepare_data(self, data):
        if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
            import numpy as np
            try:
                with np.load(data, allow_pickle=False) as z:
                    data = torch.from_numpy(np.asarray(z["audios"], dtype=np.float32))
            except (OSError, KeyError, ValueError) as e:
                raise DataError(f"{data}: not an .npz holding 'audios' ({e})") from None
        if not isinstance(data, torch.Tensor) or data.dim() != 3:
            raise DataError(f"kit-audio trains on {self.data_help}")
        return data[:, :1, :self.config["length"]].float()

    def training_loss(self, waves):
        x = waves.flatten(1)
        z, kl = self._encode(x)
        rec = (torch.tanh(self.dec(z)) - x).pow(2).sum()
        return (rec + kl) / x.numel()


class KitAudioOwnCard(KitAudio):
    """KitAudio whose family names its own Hub task and tags (``card_fields``): they win
    over what genzoo derives from the modality, in every path that writes a card."""

    arch = "kit-audio-card"
    card_fields = {"pipeline_tag": "text-to-speech", "tags": ["kit-voice"]}
