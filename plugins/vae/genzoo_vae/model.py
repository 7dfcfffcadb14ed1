"""`ConvVAE`: the house variational autoencoder ("vae-conv").

A small convolutional encoder gives a diagonal Gaussian posterior q(z|x); a mirrored decoder
gives per-pixel **Bernoulli logits** p(x|z); the prior is N(0, I).

Why Bernoulli: MNIST pixels are nearly binary ink-or-paper, and the Bernoulli mean (a
probability per pixel) is exactly the clean grey-level image we want to show as a sample.
The continuous Bernoulli is a normalised density on [0, 1] but its mean is not its parameter,
and a discretised logistic needs far more capacity to model the many pure-0/pure-1 pixels;
neither pays for itself at this size.

What the numbers mean: training and evaluation use the grey-level pixels x in [0, 1] as *soft
targets*, i.e. log p(x|z) = sum_j x_j log p_j + (1 - x_j) log(1 - p_j) (minus binary
cross-entropy). For binary images that is the exact Bernoulli log-likelihood; for grey-level
images it is the expected log-likelihood of a binarisation x' ~ Bernoulli(x) taken inside the
log, so ``elbo`` and ``iw_nll`` report nats per image *for this likelihood*. They are
comparable between Bernoulli-decoder models evaluated on the same images, not with
continuous-density NLLs (bits/dim of a model over 256 grey levels).

**Class labels** (``config["num_classes"] = K``; the bundled vae-mnist has 10): a conditional
VAE, q(z|x, y) and p(x|z, y), the one-hot label appended to the encoder's features and to the
latent the decoder reads. A conditional model's latent is (z, one-hot y), which ``latents``
returns and ``decode`` takes, so interpolation can also cross classes. Without a label,
sampling draws y from the class prior (the training labels' frequencies, kept with the
weights) with each sample's own generator; reconstructing a picture without a label uses the
label that explains it best (the lowest negative ELBO at the posterior mean). The likelihood
figures are of x alone: -log sum_y p(y) p(x|y), each p(x|y) bounded as for an unconditional
model. ``decoder_depth`` adds 3x3 convolutions after each of the decoder's upsamplings.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.errors import OptionError
from genzoo.model import GenerativeModel
from genzoo.options import Option, with_classes
from genzoo.seeding import per_sample_labels, per_sample_randn, sample_generators

DEFAULT_CONFIG: dict[str, Any] = {
    "image_shape": [1, 28, 28],
    "latent_dim": 16,
    "channels": [32, 64],   # two stride-2 convolutions: 28 -> 14 -> 7
    "hidden": 256,          # width of the fully connected layer on each side of the latent
    "num_classes": 0,       # K > 0: a conditional VAE of labels 0..K-1
    "decoder_depth": 0,     # 3x3 convolutions after each of the decoder's upsamplings
}


class Encoder(nn.Module):
    """x (N, C, H, W) in [0, 1] -> (mean, log-variance) of q(z|x), each (N, latent_dim)."""

    def __init__(self, in_ch: int, channels: list[int], hidden: int, latent: int, hw: int,
                 num_classes: int = 0):
        super().__init__()
        layers, c = [], in_ch
        for ch in channels:
            layers += [nn.Conv2d(c, ch, 4, stride=2, padding=1), nn.SiLU()]
            c = ch
        self.conv = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(c * hw * hw + num_classes, hidden), nn.SiLU(),
                                nn.Linear(hidden, 2 * latent))

    def forward(self, x, onehot: torch.Tensor | None = None):
        h = self.conv(x * 2 - 1)
        if onehot is not None:
            h = torch.cat([h, onehot.to(h.dtype)], 1)
        mean, logvar = self.fc(h).chunk(2, dim=1)
        return mean, logvar.clamp(-12, 8)  # keeps exp() finite with a diverging input


class Decoder(nn.Module):
    """z (N, latent_dim) -> per-pixel Bernoulli logits (N, C, H, W)."""

    def __init__(self, out_ch: int, channels: list[int], hidden: int, latent: int, hw: int,
                 depth: int = 0):
        super().__init__()
        top = channels[-1]
        self.hw, self.top = hw, top
        self.fc = nn.Sequential(nn.Linear(latent, hidden), nn.SiLU(),
                                nn.Linear(hidden, top * hw * hw), nn.SiLU())
        layers, c = [], top
        for ch in list(reversed(channels))[1:]:
            layers += [nn.ConvTranspose2d(c, ch, 4, stride=2, padding=1), nn.SiLU()]
            for _ in range(depth):
                layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU()]
            c = ch
        layers.append(nn.ConvTranspose2d(c, out_ch, 4, stride=2, padding=1))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z):
        h = self.fc(z).view(z.shape[0], self.top, self.hw, self.hw)
        return self.deconv(h)


class ConvVAE(GenerativeModel):
    """A convolutional VAE over images in [0, 1] with a Bernoulli decoder (see module doc)."""

    arch = "vae-conv"
    family = "vae"
    modality = "image"
    data_help = ("an image folder (class sub-folders or a metadata.jsonl give labels), an .npz/.npy of "
                 "(N, C, H, W) images in [0, 1] (with labels if it has them), or 'mnist'")
    uses_ema = False  # the ELBO is a smooth objective; averaging weights buys nothing visible
    # The loss is in nats per image (hundreds); Adam does not care about its scale, so the
    # clip is only a guard against a bad batch, set well above typical gradient norms.
    # Decoupled weight decay 0.1 is the regulariser: on MNIST's 4,000 training digits it gave
    # the best held-out ELBO of the settings tried (105.8 vs 106.6 nats without it).
    train_defaults = {"batch_size": 128, "lr": 2e-3, "warmup": 100, "weight_decay": 0.1,
                      "grad_clip": 500.0, "betas": (0.9, 0.99)}
    sample_defaults = {"temperature": 1.0, "batch_size": 256}
    sample_options = (
        Option("temperature", "float", 1.0, "latent scale: below 1 cleaner, less varied; 0 the "
               "mode", min=0.0),
        Option("batch_size", "int", 256, "samples per decoder batch", min=1),
        Option("label", "int", None, "class to sample (one, or one per sample: 3,1,4); none: "
               "drawn from the class prior (with init: the label that explains it best)",
               min=0, condition=True, per_sample=True),
        Option("init", "image", None, "reconstruct these pictures (through the posterior: "
               "temperature 0 gives its mean)", condition=True, per_sample=True),
    )

    def __init__(self, config: dict[str, Any] | None = None):
        config = {**DEFAULT_CONFIG, **(config or {})}
        super().__init__(config)
        c, h, w = self.image_shape = tuple(config["image_shape"])
        down = 2 ** len(config["channels"])
        if h != w or h % down:
            raise OptionError(f"vae-conv needs square images with a side divisible by {down}, "
                              f"got {h}x{w}; resize the data or change 'channels'")
        self.latent_dim = int(config["latent_dim"])
        self.num_classes = k = int(config.get("num_classes") or 0)
        channels, hidden, hw = list(config["channels"]), int(config["hidden"]), h // down
        self.encoder = Encoder(c, channels, hidden, self.latent_dim, hw, k)
        self.decoder = Decoder(c, channels, hidden, self.latent_dim + k, hw,
                               int(config.get("decoder_depth") or 0))
        if k:  # the training labels' frequencies (prepare_data), saved with the weights
            self.register_buffer("class_prior", torch.full((k,), 1.0 / k))

    def options(self) -> dict[str, Option]:
        """The declared options; ``label`` only for a conditional VAE (0..K-1)."""
        return with_classes(super().options(), self.num_classes)

    def _onehot(self, labels: torch.Tensor) -> torch.Tensor:
        """(N, K) one-hot rows; all zeros for -1 ("no label")."""
        return F.one_hot(labels.clamp(min=0), self.num_classes).float() * (labels >= 0)[:, None]

    def _with_label(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The decoder's input: ``z`` with the one-hot label appended (conditional models)."""
        return z if labels is None else torch.cat([z, self._onehot(labels.to(z.device))], 1)

    # ---- the extras: encode / decode / reconstruct ---------------------------------------
    def encode(self, images: torch.Tensor, label=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z|x[, y]) of images in [0, 1]: (mean, log-variance), each
        (N, latent_dim). A conditional VAE encodes with ``label`` (an int, or one per image),
        else with ``best_labels``."""
        x = images.to(self.device, torch.float32)
        if not self.num_classes:
            return self.encoder(x)
        return self.encoder(x, self._onehot(self._labels_for(x, label)))

    def decode(self, z: torch.Tensor, label=None) -> torch.Tensor:
        """Latents -> the decoder's mean images (pixel probabilities in [0, 1]). A conditional
        VAE takes (N, latent_dim + K) latents, the label part renormalised to sum 1 (as
        ``latents`` returns them; mixed one-hots interpolate between classes), or
        (N, latent_dim) latents with ``label``."""
        z = z.to(self.device, torch.float32)
        if self.num_classes and z.shape[1] == self.latent_dim:
            if label is None:
                raise OptionError("this conditional VAE decodes (N, latent_dim) latents with a "
                                  "label: decode(z, label=7)")
            z = self._with_label(z, self._labels_for(None, label, len(z)))
        elif self.num_classes:
            code, onehot = z.split([self.latent_dim, self.num_classes], 1)
            z = torch.cat([code, onehot / onehot.sum(1, keepdim=True).clamp(min=1e-6)], 1)
        return torch.sigmoid(self.decoder(z).float())

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, label=None) -> torch.Tensor:
        """Decode the posterior mean of each image: (N, C, H, W) in [0, 1]."""
        x = _check_images(images, self.image_shape).to(self.device)
        labels = self._labels_for(x, label) if self.num_classes else None
        mean, _ = self.encoder(x) if labels is None else self.encoder(x, self._onehot(labels))
        return torch.sigmoid(self.decoder(self._with_label(mean, labels)).float())

    @torch.no_grad()
    def best_labels(self, images: torch.Tensor) -> torch.Tensor:
        """For a conditional VAE: each image's label with the lowest negative ELBO at the
        posterior mean (the class that explains it best), an (N,) tensor."""
        x = _check_images(images, self.image_shape).to(self.device)
        costs = []
        for k in range(self.num_classes):
            labels = torch.full((len(x),), k, device=self.device)
            mean, logvar = self.encoder(x, self._onehot(labels))
            logits = self.decoder(self._with_label(mean, labels)).float()
            costs.append(_bernoulli_nll(logits, x) + _kl_to_prior(mean, logvar))
        return torch.stack(costs, 1).argmin(1)

    def _labels_for(self, x: torch.Tensor | None, label, n: int | None = None) -> torch.Tensor:
        """``label`` as an (N,) tensor; None: the best labels of images ``x``."""
        if label is None:
            return self.best_labels(x)
        values = label if isinstance(label, (list, tuple, torch.Tensor)) else [label] * (
            n if x is None else len(x))
        labels = torch.as_tensor(values, dtype=torch.long, device=self.device)
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise OptionError(f"labels must be 0-{self.num_classes - 1}, got {labels.tolist()}")
        return labels

    # ---- sampling ------------------------------------------------------------------------
    def generate(self, generators, temperature: float = 1.0, init=None, label=None):
        """Decoder means in [0, 1] at z = temperature * eps, eps ~ N(0, I) from each sample's
        own generator (temperature < 1 trades variety for cleaner digits; 0 gives the mode).
        With ``init`` images: their reconstructions, z = mean + temperature * std * eps drawn
        from the posterior q(z|init). A conditional VAE decodes with ``label`` (per sample),
        else a label drawn from the class prior (with init: the best label)."""
        return self.decode(self.latents(generators, temperature, init, label))

    def latents(self, generators, temperature: float = 1.0, init=None, label=None, **options):
        """(n, latent_dim [+ K]) latents: from the prior, or from the posterior of ``init``;
        a conditional VAE appends the one-hot label (drawn after eps)."""
        t = check_temperature(temperature)
        eps = per_sample_randn(generators, (self.latent_dim,), device=self.device,
                               dtype=torch.float32)
        labels = None
        if self.num_classes:
            labels = per_sample_labels(generators, self.class_prior, label, device=self.device)
        if init is None:
            return self._with_label(eps * t, labels)
        x = _check_images(init, self.image_shape).to(self.device)
        if labels is not None and label is None:
            labels = self.best_labels(x)
        mean, logvar = self.encoder(x) if labels is None else \
            self.encoder(x, self._onehot(labels))
        return self._with_label(mean + t * (0.5 * logvar).exp() * eps, labels)

    # ---- training ------------------------------------------------------------------------
    def prepare_data(self, data: Any):
        """Images, with their labels for a conditional VAE (-1: no label); the labels'
        frequencies become the class prior that unlabelled sampling draws from."""
        from genzoo.data import LabelledImages
        images = super().prepare_data(data)
        if not self.num_classes:  # say so rather than drop the data's labels silently
            return images.without_labels(f"this unconditional {self.arch} model")
        return LabelledImages.of(images, self.num_classes, prior=self.class_prior)

    def training_loss(self, batch) -> torch.Tensor:
        """The negative ELBO in nats per image, averaged over the batch (given the label for
        a conditional VAE; unlabelled images train the "no label" path)."""
        images, labels = batch if self.num_classes else (batch, None)
        x = images.float()
        onehot = None if labels is None else self._onehot(labels)
        mean, logvar = self.encoder(x, onehot)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        logits = self.decoder(z if onehot is None else torch.cat([z, onehot], 1)).float()
        return (_bernoulli_nll(logits, x) + _kl_to_prior(mean.float(), logvar.float())).mean()

    # ---- likelihoods, for genzoo.eval.metrics ---------------------------------------------------
    #: Importance samples per image for the ``iw_nll`` that ``genzoo eval`` reports.
    eval_iw_k = 64

    @torch.inference_mode()
    def evaluate_metrics(self, reference: torch.Tensor, *, seed: int = 0) -> dict[str, float]:
        """The likelihood figures ``genzoo eval`` reports for a VAE, in nats per image on the
        reference images: ``neg_elbo`` and the importance-weighted ``iw_nll`` (k=64); both
        are costs (lower is better)."""
        self.eval()
        return {"neg_elbo": float(self.elbo(reference, seed=seed).double().mean()),
                "iw_nll": float(self.iw_nll(reference, k=self.eval_iw_k, seed=seed).double().mean()),
                "iw_k": self.eval_iw_k}

    def _marginal(self, cost, n: int) -> torch.Tensor:
        """A cost of x alone, -log sum_y p(y) exp(-cost(y)), from ``cost(labels)`` per class
        (an unconditional model: ``cost(None)``)."""
        if not self.num_classes:
            return cost(None)
        costs = torch.stack([cost(torch.full((n,), k, device=self.device))
                             for k in range(self.num_classes)], 1)
        return -torch.logsumexp(self.class_prior.float().log() - costs, 1)

    @torch.no_grad()
    def elbo(self, images: torch.Tensor, *, seed: int = 0, batch_size: int = 512) -> torch.Tensor:
        """Per-image negative ELBO in nats, an (N,) CPU tensor (an upper bound on the NLL under
        this Bernoulli likelihood; one posterior sample per image drawn from ``seed``).

        Note the sign convention shared with ``iw_nll``: both are *costs* (lower is better)."""
        x_all = _check_images(images, self.image_shape)
        out = []
        gens = sample_generators(seed, x_all.shape[0])
        for s in range(0, x_all.shape[0], batch_size):
            x = x_all[s:s + batch_size].to(self.device)
            eps = per_sample_randn(gens[s:s + batch_size], (self.latent_dim,), device=self.device,
                                   dtype=torch.float32)

            def cost(labels):
                mean, logvar = self.encoder(x, None if labels is None else self._onehot(labels))
                z = self._with_label(mean + eps * (0.5 * logvar).exp(), labels)
                return _bernoulli_nll(self.decoder(z).float(), x) + _kl_to_prior(mean, logvar)
            out.append(self._marginal(cost, len(x)).float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def iw_nll(self, images: torch.Tensor, k: int = 64, *, seed: int = 0,
               chunk: int = 4096) -> torch.Tensor:
        """Per-image importance-weighted NLL bound in nats (Burda et al., 2016), an (N,) CPU
        tensor: -log (1/k) sum_i p(x, z_i) / q(z_i|x) with z_1..z_k ~ q(z|x). It tightens
        towards the true NLL as ``k`` grows (k=1 is the negative ELBO)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise OptionError(f"k must be a positive integer (importance samples), got {k!r}")
        x_all = _check_images(images, self.image_shape)
        per = max(1, chunk // k)  # images per pass, so that a pass decodes about `chunk` latents
        gens = sample_generators(seed, x_all.shape[0])
        out = []
        for s in range(0, x_all.shape[0], per):
            x = x_all[s:s + per].to(self.device)
            eps = per_sample_randn(gens[s:s + per], (k, self.latent_dim), device=self.device,
                                   dtype=torch.float32)                        # (n, k, d)
            out.append(self._marginal(lambda labels: self._iw_cost(x, eps, labels), len(x)).cpu())
        return torch.cat(out)

    def _iw_cost(self, x: torch.Tensor, eps: torch.Tensor,
                 labels: torch.Tensor | None) -> torch.Tensor:
        """-log of the k-sample importance-weighted estimate of p(x[|y]) per image."""
        n, k = eps.shape[:2]
        mean, logvar = self.encoder(x, None if labels is None else self._onehot(labels))
        z = mean[:, None] + eps * (0.5 * logvar).exp()[:, None]
        flat = self._with_label(z.reshape(n * k, -1),
                                None if labels is None else labels.repeat_interleave(k))
        log_px_z = -_bernoulli_nll(self.decoder(flat).float(),
                                   x.repeat_interleave(k, dim=0)).view(n, k)
        log_qz = _std_normal_logpdf(eps) - (0.5 * logvar).sum(1, keepdim=True)
        log_w = log_px_z + _std_normal_logpdf(z) - log_qz
        return math.log(k) - torch.logsumexp(log_w, dim=1)


def check_temperature(value) -> float:
    """A valid temperature (a finite number >= 0) as a float, else a one-line OptionError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise OptionError(f"temperature must be a finite number >= 0 (1.0 samples the prior, "
                          f"lower is cleaner and less varied), got {value!r}")
    return float(value)


def _check_images(images, shape) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != shape:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise OptionError(f"expected images shaped (N, {', '.join(map(str, shape))}) in [0, 1], "
                          f"got {got}")
    return images.float().clamp(0, 1)


def _bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per image, summed over pixels (x may be grey levels: soft targets)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def _kl_to_prior(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per row, in nats."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def _std_normal_logpdf(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
