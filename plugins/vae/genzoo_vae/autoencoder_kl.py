"""`AutoencoderKLModel` ("diffusers-autoencoderkl"): diffusers' AutoencoderKL in genzoo.

The KL autoencoder of Stable Diffusion (a pipeline's ``vae/`` folder, or a repository such as
``stabilityai/sd-vae-ft-mse``: ``config.json`` naming ``AutoencoderKL`` plus
``diffusion_pytorch_model.safetensors``), loaded through diffusers itself (imported only here,
and this module only when such a model loads: ``pip install 'genzoo-vae[diffusers]'``).

What sampling means: its KL term is weighted so lightly (1e-6 in Stable Diffusion's training)
that the posterior drifts far from N(0, I), so decoding prior draws gives no pictures. This
model therefore only *reconstructs*: ``sample(n, init=images)`` maps images in [0, 1] to
[-1, 1], encodes them, takes the posterior's mode (``latent="sample"``: a draw from it with
each sample's own generator, so sample i depends only on (seed, i)), decodes and maps back to
[0, 1]. Without ``init`` sampling is refused in one line; the model declares ``init`` in
``required_conditions``, so ``genzoo eval`` measures its reconstructions of the reference
images and the conformance kit checks it with images given.

Latents: ``latents`` and ``decode`` speak the autoencoder's *raw* latent space (the
posterior as the encoder gives it), not a diffusion pipeline's: diffusers pipelines multiply
encoded latents by ``scaling_factor`` (and subtract ``shift_factor``) before a UNet sees them;
nothing in genzoo feeds these latents to a UNet, so no scaling is applied and those two config
values are kept only to be saved back. ``interpolate`` decodes the straight line between the
latents of two init images.

Weights are read from safetensors only; a folder with nothing but ``.bin`` files is refused.
A finetuned copy is saved in genzoo's own format (config.json with a ``genzoo`` section and the
diffusers config under ``diffusers_vae``, model.safetensors), which loads here too.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from genzoo.errors import OptionError, PluginMissingError, WeightsError
from genzoo.model import CONFIG_NAME, GenerativeModel, read_json, safetensors_weights
from genzoo.options import Option
from genzoo.samples import Samples
from genzoo.seeding import check_seed, per_sample_randn, sample_generators

ARCH = "diffusers-autoencoderkl"
VAE_CLASS = "AutoencoderKL"
VAE_WEIGHTS = "diffusion_pytorch_model.safetensors"
#: Stable Diffusion's KL weight (diffusers' train_autoencoderkl example uses the same).
DEFAULT_KL_WEIGHT = 1e-6


class AutoencoderKLModel(GenerativeModel):
    """A diffusers ``AutoencoderKL`` that reconstructs images (see the module docstring)."""

    arch = ARCH
    family = "vae"
    modality = "image"
    data_help = ("an image folder or an .npz/.npy of (N, C, H, W) images in [0, 1] of the "
                 "model's size, or 'mnist' (labels are ignored)")
    required_conditions = ("init",)
    # a pretrained autoencoder is finetuned gently; the engine scales lr down once more for it
    train_defaults = {"batch_size": 8, "lr": 1e-4, "warmup": 50, "grad_clip": 1.0}
    sample_defaults = {"latent": "mode", "batch_size": 8}
    sample_options = (
        Option("init", "image", None, "images to reconstruct (required: a KL autoencoder's "
               "prior gives no pictures)", condition=True, per_sample=True),
        Option("latent", "str", "mode", "which latent of each image is decoded: the "
               "posterior's mode, or a sample from it (drawn with the sample's own seed)",
               choices=("mode", "sample")),
        Option("batch_size", "int", 8, "images per encoder/decoder batch", min=1),
    )

    def __init__(self, config: dict[str, Any], vae: torch.nn.Module | None = None):
        config = {"kl_weight": DEFAULT_KL_WEIGHT, **config}
        super().__init__(config)
        raw = config.get("diffusers_vae")
        if not isinstance(raw, dict):
            raise OptionError(f"{ARCH} needs 'diffusers_vae' in its config: the AutoencoderKL "
                              "config (block_out_channels, latent_channels ...)")
        self.vae = vae if vae is not None else _vae_class().from_config(dict(raw))
        # the full diffusers config (defaults filled in), JSON-clean, is what gets saved
        self.config["diffusers_vae"] = vae_config(self.vae)
        self.config["image_shape"] = _checked_shape(config, self.config["diffusers_vae"])
        self.kl_weight = _check_kl_weight(config["kl_weight"])
        self.down = 2 ** (len(self.config["diffusers_vae"]["block_out_channels"]) - 1)

    # ---- encode / decode ------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z|x) of images in [0, 1]: (mean, log-variance) in float32, each
        (N, latent_channels, H / f, W / f) with f = 2 ** (len(block_out_channels) - 1), in
        the raw latent space (not multiplied by ``scaling_factor``)."""
        x = self._check_init(images).to(self.device) * 2 - 1
        dist = self.vae.encode(x).latent_dist
        return dist.mean.float(), dist.logvar.float()  # diffusers clamps logvar to [-30, 20]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents (N, latent_channels, h, w) -> images in [0, 1], float32."""
        out = self.vae.decode(z.to(self.device)).sample
        return ((out.float() + 1) / 2).clamp(0, 1)

    def latents(self, generators: list[torch.Generator], init: torch.Tensor | None = None,
                latent: str = "mode", **options: Any) -> torch.Tensor:
        """The raw latent of each ``init`` image: the posterior's mode, or with
        ``latent="sample"`` mean + std * eps, eps drawn from ``generators[i]`` for image i
        (as diffusers' ``latent_dist.sample(generator=[...])`` draws it)."""
        if init is None:
            raise OptionError(self._refusal())
        mean, logvar = self.encode(init)
        if latent == "mode":
            return mean
        if len(generators) != len(mean):
            raise OptionError(f"{len(mean)} init images for {len(generators)} samples")
        eps = per_sample_randn(generators, tuple(mean.shape[1:]), device=mean.device,
                               dtype=torch.float32)
        return mean + (0.5 * logvar).exp() * eps

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Decode the posterior mode of each image, batch by batch: (N, C, H, W) in [0, 1] on
        the CPU (what ``sample(n, init=images)`` gives with the defaults)."""
        size = int(batch_size or self.sample_defaults["batch_size"])
        parts = []
        for s in range(0, len(images), size):
            with self.autocast():
                parts.append(self.decode(self.encode(images[s:s + size])[0]).cpu())
        return torch.cat(parts)

    # ---- sampling ------------------------------------------------------------------------
    def generate(self, generators, init=None, latent: str = "mode"):
        """Reconstructions in [0, 1] of the ``init`` images (one per generator); refused in
        one line without them."""
        return self.decode(self.latents(generators, init=init, latent=latent))

    def plan_sampling(self, n: int, seed: int = 0, batch_size: int | None = None,
                      **options: Any):
        """The base plan, refused up front (before any batch runs) without ``init``."""
        plan = super().plan_sampling(n, seed, batch_size, **options)
        if plan.opts.get("init") is None:
            raise OptionError(self._refusal())
        self._check_init(plan.opts["init"])
        return plan

    @torch.inference_mode()
    def interpolate(self, seed: int, to_seed: int, n: int = 8, **options: Any) -> Samples:
        """``n`` frames from the first of two ``init`` images to the second, decoded along the
        straight line between their latents (the latents are not Gaussian draws, so a line,
        not the base class's slerp). Each end's latent is what ``sample`` takes: the mode, or
        with ``latent="sample"`` a draw with sample 0 of ``seed`` (first image) and of
        ``to_seed`` (second). Frame 0 is ``sample(1, seed=seed, init=init[:1])`` and the last
        frame ``sample(1, seed=to_seed, init=init[1:])``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise OptionError(f"interpolation needs n >= 2 frames, got {n!r}")
        check_seed(seed)
        check_seed(to_seed)
        opts = self.check_options(options)
        size = int(opts.pop("batch_size"))
        init = opts.pop("init")
        if init is None or len(init) != 2:
            got = "none" if init is None else str(len(init))
            raise OptionError(f"interpolating {self.name_or_path or self.arch} needs two init "
                              f"images (--init a folder of two pictures), got {got}")
        self.eval()
        with self.autocast():
            ends = [self.latents(sample_generators(s, 1), init=init[i:i + 1], **opts)[0]
                    for i, s in enumerate((seed, to_seed))]
            frames = torch.stack([torch.lerp(ends[0], ends[1], i / (n - 1)) for i in range(n)])
            images = torch.cat([self.decode(frames[s:s + size]) for s in range(0, n, size)])
        meta = {"model": self.name_or_path or self.arch, "arch": self.arch,
                "revision": self.revision, "seed": seed, "interpolate_to": to_seed,
                **_provenance(self, {**opts, "init": init})}
        return self.to_samples(images, meta, 0)

    def _refusal(self) -> str:
        """Why sampling without ``init`` is refused, and what to do, in one line."""
        return (f"{self.name_or_path or self.arch} is a KL autoencoder: its prior does not give "
                "images, it reconstructs them; pass --init IMAGES (init= in the API)")

    def _check_init(self, images: Any) -> torch.Tensor:
        """``images`` as a float32 (N, C, H, W) tensor of this model's channels, with sides
        that are multiples of the encoder's downsampling factor; else a one-line error."""
        c = self.config["image_shape"][0]
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != c \
                or images.shape[2] % self.down or images.shape[3] % self.down:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise OptionError(f"init images must be shaped (N, {c}, H, W) with H and W multiples "
                              f"of {self.down} (the encoder halves them "
                              f"{int(math.log2(self.down))} times), got {got}")
        return images.float()

    # ---- training ------------------------------------------------------------------------
    def prepare_data(self, data: Any):
        """Images of the model's shape (class labels, if the data has any, are ignored with a
        logged note: this autoencoder takes none)."""
        return super().prepare_data(data).without_labels(f"this {self.arch} model")

    def training_loss(self, batch) -> torch.Tensor:
        """Mean squared reconstruction error in [-1, 1] pixel space of a posterior sample,
        plus ``kl_weight`` times the KL to N(0, I) (summed over the latent, averaged over
        the batch), as diffusers' train_autoencoderkl example computes it without its
        perceptual and adversarial terms."""
        x = batch.float() * 2 - 1
        dist = self.vae.encode(x).latent_dist
        z = dist.mean + dist.std * torch.randn_like(dist.mean)
        recon = self.vae.decode(z).sample.float()
        return F.mse_loss(recon, x) + self.kl_weight * _kl(dist.mean.float(),
                                                           dist.logvar.float()).mean()

    # ---- evaluation ----------------------------------------------------------------------
    @torch.inference_mode()
    def evaluate_metrics(self, reference: torch.Tensor, *, seed: int = 0) -> dict[str, float]:
        """Reconstruction figures on the reference images (posterior mode, in batches):
        ``psnr`` (dB, the mean over images of 10 log10(1 / MSE) for pixels in [0, 1]; higher
        is better), ``mse`` (per pixel) and ``latent_kl`` (nats per image, KL of q(z|x) to
        N(0, I): how far the latents sit from the prior). Deterministic: ``seed`` is unused."""
        self.eval()
        size = int(self.sample_defaults["batch_size"])
        psnr, mse, kl = [], [], []
        for s in range(0, len(reference), size):
            x = reference[s:s + size].float().clamp(0, 1)
            with self.autocast():
                mean, logvar = self.encode(x)
                recon = self.decode(mean).cpu()
            err = (recon - x).pow(2).flatten(1).mean(1).double()
            mse.append(err)
            psnr.append(10 * torch.log10(1 / err.clamp(min=1e-10)))
            kl.append(_kl(mean, logvar).double().cpu())
        return {"psnr": float(torch.cat(psnr).mean()), "mse": float(torch.cat(mse).mean()),
                "latent_kl": float(torch.cat(kl).mean())}

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder, device="auto", dtype="auto") -> "AutoencoderKLModel":
        """Load a diffusers AutoencoderKL folder (or a genzoo folder saved from one)."""
        folder = Path(folder)
        config = read_json(folder / CONFIG_NAME, required=False)
        if "genzoo" in config:
            return super().from_pretrained(folder, device=device, dtype=dtype)
        vae = load_diffusers_vae(folder, config)
        model = cls(foreign_config(vae), vae=vae)
        model.name_or_path = str(folder)
        model.origin = {"folder": str(folder)}  # a saved copy inherits its README's license
        model.pretrained = True
        return model.to_device(device, dtype).eval()


def load_diffusers_vae(folder: Path, config: dict[str, Any]) -> torch.nn.Module:
    """diffusers' ``AutoencoderKL.from_pretrained`` on ``folder`` from safetensors only, every
    failure a one-line ``WeightsError``."""
    name = config.get("_class_name")
    if name != VAE_CLASS:
        raise WeightsError(f"{folder}: config.json describes {name or 'no diffusers class'}, "
                           f"not an {VAE_CLASS}")
    safetensors_weights(folder, VAE_WEIGHTS)
    cls = _vae_class()
    from safetensors import SafetensorError
    try:
        # low_cpu_mem_usage needs accelerate; asking for it without warns on every load
        vae = cls.from_pretrained(str(folder), use_safetensors=True, torch_dtype=torch.float32,
                                  low_cpu_mem_usage=importlib.util.find_spec("accelerate")
                                  is not None)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise WeightsError(f"{folder}: diffusers could not load the {VAE_CLASS} ({first})") from e
    for key, p in vae.state_dict().items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise WeightsError(f"{folder}: tensor {key} holds NaN or Inf values; the weights "
                               "are corrupt: re-download the model")
    return vae


def vae_config(vae: torch.nn.Module) -> dict[str, Any]:
    """An AutoencoderKL's diffusers config without diffusers' private keys, JSON-clean
    (tuples as lists), as genzoo saves it."""
    return json.loads(json.dumps({k: v for k, v in vae.config.items() if not k.startswith("_")}))


def foreign_config(vae: torch.nn.Module) -> dict[str, Any]:
    """The genzoo config of a diffusers AutoencoderKL: its ``image_shape`` (in_channels,
    sample_size, sample_size), its diffusers config and the default KL weight."""
    cfg = vae_config(vae)
    return {"image_shape": [cfg["in_channels"], *_side(cfg)], "diffusers_vae": cfg,
            "kl_weight": DEFAULT_KL_WEIGHT}


def _side(cfg: dict[str, Any]) -> list[int]:
    """[height, width] from ``sample_size`` (an int, or a pair)."""
    size = cfg.get("sample_size")
    hw = [size, size] if isinstance(size, int) else list(size or [])
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise OptionError(f"diffusers_vae.sample_size must be a positive int, got {size!r}")
    return hw


def _checked_shape(config: dict[str, Any], cfg: dict[str, Any]) -> list[int]:
    """``image_shape`` = [in_channels, sample_size, sample_size], sides a multiple of the
    downsampling factor, and out_channels = in_channels; else a one-line OptionError."""
    expected = [cfg["in_channels"], *_side(cfg)]
    shape = list(config.get("image_shape") or expected)
    down = 2 ** (len(cfg["block_out_channels"]) - 1)
    if shape != expected:
        raise OptionError(f"image_shape {shape} does not match the AutoencoderKL config "
                          f"(in_channels, sample_size): {expected}")
    if cfg["out_channels"] != cfg["in_channels"]:
        raise OptionError(f"an AutoencoderKL with in_channels {cfg['in_channels']} and "
                          f"out_channels {cfg['out_channels']} does not reconstruct its input")
    if shape[1] % down or shape[2] % down:
        raise OptionError(f"sample_size {shape[1:]} must be a multiple of {down} (the encoder "
                          "downsampling factor)")
    return shape


def _check_kl_weight(value: Any) -> float:
    """A finite ``kl_weight`` >= 0 as a float, else a one-line OptionError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise OptionError(f"kl_weight must be a finite number >= 0, got {value!r}")
    return float(value)


def _kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per image, summed over the latent, in nats."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def _provenance(model: GenerativeModel, opts: dict[str, Any]) -> dict[str, Any]:
    """Options as a sample's provenance records them (images by their sha256)."""
    from genzoo.batching import provenance
    return provenance(model.options(), opts)


def _vae_class():
    """diffusers' AutoencoderKL, imported on first use (diffusers takes seconds to import)."""
    try:
        from diffusers import AutoencoderKL
    except ImportError as e:
        raise PluginMissingError("diffusers AutoencoderKL models need diffusers: "
                                 "pip install 'genzoo-vae[diffusers]'") from e
    return AutoencoderKL
