"""Planted contract violations, each a small change to a conforming MLP VAE (``KitBase``).

Each passes the checks that existed before it was planted (so the kit's older checks missed
it) and fails exactly one newer check; tests/test_testing.py and test_testing_checks.py prove
both. KitInertOption and KitTextMerged conform once they declare what they do."""
import math
import pickle

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.model import GenerativeModel, TrainStage
from genzoo.options import Option
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


class KitBright(KitBase):
    """Samples 1.5x too bright, clamped into [0, 1]: in range, finite, and its loss falls,
    but the samples leave the data's statistics."""

    arch = "kit-bright"

    def generate(self, generators, temperature=1.0):
        return (super().generate(generators, temperature) * 1.5).clamp(0, 1)


class KitInverted(KitBase):
    """Samples inverted and halved (0.5 * (1 - x)): in [0, 1], but against the data's sense."""

    arch = "kit-inverted"

    def generate(self, generators, temperature=1.0):
        return 0.5 * (1 - super().generate(generators, temperature))


class KitFrozenDecoder(KitBase):
    """Stages only the encoder's parameters for the optimizer: the decoder never trains,
    though every staged parameter moves and the loss (its KL term) falls."""

    arch = "kit-frozen-decoder"

    def train_stages(self):
        return {"model": TrainStage(list(self.enc.parameters()), self.training_loss)}


class KitIgnoredOption(KitBase):
    """Declares a ``temperature`` option (a bounded float) that generate never reads."""

    arch = "kit-ignored-option"
    sample_options = (Option("temperature", "float", 1.0, "latent scale", min=0.0, max=2.0),)

    def generate(self, generators, temperature=1.0):
        return self.decode(per_sample_randn(generators, (self.config["latent"],),
                                            device=self.device))


class KitInertOption(KitIgnoredOption):
    """The same, with the option declared inert (``affects_output=False``): conforming."""

    arch = "kit-inert-option"
    sample_options = (Option("temperature", "float", 1.0, "kept for old scripts", min=0.0,
                             max=2.0, affects_output=False),)


class KitTextMerged(GenerativeModel):
    """A byte bigram LM decoding greedily after a random first letter, whose logits carry a
    1e-6 wobble that depends on the batch size (as a merged batch's arithmetic can): its
    zero-initialised logits tie, so merged batches give other texts. It conforms once it
    declares ``merged_batches = "differ"``."""

    arch = "kit-text-merged"
    family = "kitmut"
    modality = "text"
    train_defaults = {"batch_size": 64, "lr": 5e-2, "warmup": 2}
    sample_defaults = {"max_new_tokens": 8}

    def __init__(self, config=None):
        super().__init__({**(config or {})})
        self.logits = nn.Parameter(torch.zeros(256, 256))

    def generate(self, generators, max_new_tokens=8):
        wobble = 1e-6 * torch.sin(torch.arange(256.0) * len(generators))
        out = []
        for g in generators:
            ids = [97 + int(torch.randint(26, (1,), generator=g))]
            for _ in range(int(max_new_tokens)):
                ids.append(int((self.logits[ids[-1]].detach().float().cpu() + wobble).argmax()))
            out.append(bytes(ids).decode("latin-1"))
        return out

    def prepare_data(self, data):
        ids = torch.tensor(list(open(data, "rb").read()), dtype=torch.long)
        return torch.stack([ids[:-1], ids[1:]], dim=1)

    def training_loss(self, pairs):
        return F.cross_entropy(self.logits[pairs[:, 0]], pairs[:, 1])


class KitAudioBase(GenerativeModel):
    """A conforming tiny waveform model: (n, 1, 32) in [-1, 1] at 8 kHz (the audio mutants'
    common ancestor)."""

    family = "kitmut"
    modality = "audio"
    train_defaults = {"batch_size": 16, "lr": 1e-2, "warmup": 2}

    def __init__(self, config=None):
        super().__init__({"sample_rate": 8000, "length": 32, "latent": 3, **(config or {})})
        self.dec = nn.Linear(self.config["latent"], self.config["length"])

    def generate(self, generators):
        z = per_sample_randn(generators, (self.config["latent"],), device=self.device)
        return torch.tanh(self.dec(z)).reshape(-1, 1, self.config["length"])

    def prepare_data(self, data):
        return data

    def training_loss(self, waves):
        z = torch.zeros(len(waves), self.config["latent"])
        return (torch.tanh(self.dec(z)) - waves.flatten(1)).pow(2).mean()


class KitAudioLoud(KitAudioBase):
    """Waveforms 1.5x too loud: raw output leaves [-1, 1] (an image-minded kit, checking
    [0, 1], would have refused every correct waveform instead)."""

    arch = "kit-audio-loud"

    def generate(self, generators):
        return 1.5 * super().generate(generators) + 0.5


class KitAudioFlat(KitAudioBase):
    """Waveforms without their channel axis: (n, T) rather than (n, channels, T)."""

    arch = "kit-audio-flat"

    def generate(self, generators):
        return super().generate(generators).flatten(1)


class KitSmell(KitAudioBase):
    """Declares a modality nothing registers."""

    arch = "kit-smell"
    modality = "smell"
