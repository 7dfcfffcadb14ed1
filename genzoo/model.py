"""`GenerativeModel`: the base every family subclasses, and the on-disk model format.

On disk a model is a folder in Hugging Face layout::

    config.json         {"genzoo": {"arch", "family", "format_version", ...}, ...family config}
    model.safetensors   the weights (safetensors only: pickle is never read)
    README.md           a model card with YAML front matter, ``library_name: genzoo``

A family implements a few methods — ``generate`` (one batch of samples from per-sample random
generators), ``training_loss`` (or ``train_stages`` for several optimizers) and, when it trains
on data, ``prepare_data`` — and inherits loading, saving, batching, seeding and devices;
``genzoo.finetune(model, data, ...)`` trains it. This module knows nothing of the finetune
engine (which sits above it) but for the deprecated ``finetune`` alias.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, ContextManager, Iterator

import torch
from torch import nn

from genzoo.devices import autocast as autocast_context
from genzoo.devices import resolve_device, resolve_dtype  # re-exported: genzoo.model API
from genzoo.errors import GenzooError, OptionError, SampleError, WeightsError
from genzoo.options import Option, build_schema, validate
from genzoo.fsutil import atomic_write_text, atomic_dir
from genzoo.samples import Samples, modality as modality_named
from genzoo.batching import (SamplingPlan, batch_rows, check_distributed, per_sample_values,
                             progress_bar, provenance, shard_rounds, sharding)
from genzoo.seeding import check_seed, sample_generators, slerp
# the on-disk format's helpers, re-exported: genzoo.model API (``X as X``: explicit for mypy)
from genzoo.names import CARD_NAME as CARD_NAME, CONFIG_NAME as CONFIG_NAME  # noqa: F401
from genzoo.names import WEIGHTS_NAME as WEIGHTS_NAME  # noqa: F401
from genzoo.modelio import _first_line, _is_tied, _untie  # noqa: F401
from genzoo.modelio import model_card_markdown as model_card_markdown  # noqa: F401
from genzoo.modelio import read_config as read_config, read_safetensors as read_safetensors
from genzoo.modelio import read_json as read_json  # noqa: F401  (for plugins)
from genzoo.modelio import safetensors_weights as safetensors_weights  # noqa: F401
from genzoo.modelio import save_safetensors, skip_init as skip_init

FORMAT_VERSION = 1


@dataclass
class TrainStage:
    """One optimizer's share of a training step: its parameters and its loss.

    A GAN has two (discriminator, then generator); most families have one. ``loss(batch)``
    returns a scalar tensor; the engine runs backward, clips and steps this stage's optimizer.
    """

    params: list[nn.Parameter]
    loss: Callable[[Any], torch.Tensor]
    lr_scale: float = 1.0


class GenerativeModel(nn.Module):
    """Base class of every genzoo architecture.

    Subclasses set ``arch`` and ``family`` and build their modules from ``config`` (a plain,
    JSON-serialisable dict) in ``__init__``.
    """

    arch: ClassVar[str] = ""
    family: ClassVar[str] = ""
    #: The registered modality of what ``sample`` returns (``"image"``, ``"text"``,
    #: ``"audio"`` or a plugin's): it says how samples are held, checked and written.
    modality: ClassVar[str] = "image"
    #: What ``prepare_data`` reads as ``finetune --data`` and as an evaluation's reference, in
    #: a line (``genzoo finetune NAME --help`` shows it); None: the family does not say.
    data_help: ClassVar[str | None] = None
    #: Whether the finetune engine keeps EMA weights and sampling should use them.
    uses_ema: ClassVar[bool] = False
    #: Default training hyper-parameters; ``genzoo.finetune``'s keywords override them.
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: Default sampling options (``sample`` keywords override them; a card's ``sampling``
    #: overrides them per instance, see ``apply_card_sampling``).
    sample_defaults: dict[str, Any] = {}
    #: The sampling options as data (``genzoo.options.Option`` or dicts of its fields): type,
    #: range or choices, help, whether it is a condition. Core builds CLI flags, validation,
    #: ``genzoo info`` and forms from it; a name only in ``sample_defaults`` is inferred.
    sample_options: ClassVar[tuple[Any, ...]] = ()
    #: What ``genzoo eval`` uses unless asked otherwise: ``n``, ``feature`` (a feature net,
    #: e.g. ``"logmel"``), ``reference`` (a data spec for ``prepare_data``, e.g.
    #: ``"synthetic"``) and any sampling options (a text family keeps evaluation short).
    eval_defaults: ClassVar[dict[str, Any]] = {}
    #: Condition options that ``sample`` cannot do without: a model that only transforms its
    #: inputs (an autoencoder reconstructs its ``init`` images; its prior gives no pictures)
    #: and refuses, in its own words, a call without them. Empty (the default): the model
    #: samples from its prior. ``genzoo eval`` gives a required image condition the reference
    #: images (what it measures is then the model's output for them) and the conformance kit
    #: gives each one values of its own.
    required_conditions: ClassVar[tuple[str, ...]] = ()
    #: True once weights were loaded: ``genzoo.finetune`` then defaults to a gentler learning
    #: rate and starts its EMA at the loaded weights.
    pretrained: bool = False

    #: Optional: ``fsdp_modules(self) -> list[nn.Module]``, the submodules that
    #: ``finetune(strategy="fsdp")`` shards one by one, blocks first (each must be called
    #: through its ``forward``). Absent: every element of every ``nn.ModuleList``.

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.autocast_dtype: torch.dtype | None = None
        self.name_or_path: str | None = None
        self.revision: str | None = None

    # ---- what a family implements -------------------------------------------------------
    def generate(self, generators: list[torch.Generator], **options: Any) -> Any:
        """Make ``len(generators)`` samples; sample i draws all its randomness from
        ``generators[i]`` (a CPU generator). Returns what the model's modality holds: an
        (n, C, H, W) tensor in [0, 1] for images, a list of strings for text, an
        (n, channels, T) tensor in [-1, 1] for audio."""
        raise NotImplementedError

    #: Whether the model offers step-by-step sampling (the three methods below), so that a
    #: server can run concurrent requests' samples as one batch that they join and leave
    #: between steps (continuous batching). Declared by the class (a family whose subclasses
    #: differ may make it a property); core never asks the family.
    supports_stepping: bool = False

    def start_sequence(self, generator: torch.Generator, **options: Any) -> Any:
        """Optional (``supports_stepping``): begin ONE sample drawn from ``generator`` with
        checked options (``plan_sampling``'s ``opts``, without ``stream``), run its first
        unit (e.g. a prompt's prefill and first token) and return its state. A state has
        ``done`` (bool), ``take_piece()`` (the output since the last call, for streaming) and
        ``stop()`` (end it now, freeing its memory). The sample equals row 0 of
        ``generate([generator], **options)``, whatever it was stepped with."""
        raise NotImplementedError

    def step_sequences(self, states: list[Any]) -> None:
        """Optional: advance every state of ``states`` that is not done by one unit, in one
        batched call; states started at different times may be mixed freely."""
        raise NotImplementedError

    def collect_sequences(self, states: list[Any], meta: dict[str, Any]) -> Samples:
        """Optional: the finished ``states`` of one request as ``Samples`` with ``meta``
        (plus what the family records per sample)."""
        raise NotImplementedError

    def training_loss(self, batch: Any) -> torch.Tensor:
        """The scalar loss of one batch (families with one optimizer)."""
        raise NotImplementedError

    def train_stages(self) -> dict[str, TrainStage]:
        """Named optimizer stages, run in order each step. Default: one stage, all parameters."""
        return {"model": TrainStage([p for p in self.parameters() if p.requires_grad],
                                    self.training_loss)}

    def ema_module(self) -> nn.Module:
        """The part whose weights the engine averages (a GAN averages only its generator)."""
        return self

    def prepare_data(self, data: Any) -> Any:
        """Turn a data spec (path, tensor, ``mnist``) into an indexable dataset for training
        (``genzoo finetune --data``) and, for a modality other than images and text, for
        evaluation's reference set (``genzoo eval --data``, else ``eval_defaults["reference"]``):
        ``ds[indices]`` gives the samples (or a tuple whose first part they are), and a
        ``labels`` tensor or metadata attributes (``sample_rate``) on ``ds`` are used too."""
        from genzoo.data import load_image_dataset
        return load_image_dataset(data, shape=tuple(self.config["image_shape"]))

    def latents(self, generators: list[torch.Generator], **options: Any) -> torch.Tensor:
        """Optional, for latent-variable families: the (n, ...) latents ``generate`` would
        decode, row i drawn from ``generators[i]``. With ``decode`` it gives ``interpolate``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Optional, with ``latents``: images in [0, 1] from latents."""
        raise NotImplementedError

    @torch.inference_mode()
    def interpolate(self, seed: int, to_seed: int, n: int = 8, **options: Any) -> Samples:
        """``n`` frames from sample 0 of ``seed`` to sample 0 of ``to_seed``, their latents
        along the great circle between them (slerp, which keeps Gaussian latents at a typical
        norm). For families that implement ``latents`` and ``decode``."""
        if type(self).latents is GenerativeModel.latents:
            raise OptionError(f"{self.name_or_path or self.arch} ({self.family}) has no latents "
                              "to interpolate; it supports: "
                              + (", ".join(self.capabilities) or "plain sampling"))
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise OptionError(f"interpolation needs n >= 2 frames, got {n!r}")
        check_seed(seed)
        check_seed(to_seed)
        opts = self.check_options(options)
        opts.pop("batch_size", None)
        self.eval()
        ends = [self.latents(sample_generators(s, 1), **opts)[0] for s in (seed, to_seed)]
        frames = torch.stack([slerp(ends[0], ends[1], i / (n - 1)) for i in range(n)])
        with self.autocast():
            images = self.decode(frames.to(self.device))
        meta = {"model": self.name_or_path or self.arch, "arch": self.arch,
                "revision": self.revision, "seed": seed, "interpolate_to": to_seed,
                **provenance(self.options(), opts)}
        return self.to_samples(images, meta, 0)

    @property
    def capabilities(self) -> list[str]:
        """What this model can be asked for besides plain sampling, from what it declares:
        its condition options (label, init, mask ...), ``interpolate`` when it has latents."""
        caps = [name for name, o in self.options().items() if o.condition]
        if type(self).latents is not GenerativeModel.latents:
            caps.append("interpolate")
        return caps

    def evaluate_metrics(self, reference: Any, *, seed: int = 0) -> dict[str, Any]:
        """Figures only this family can measure, merged into ``genzoo.evaluate``'s result and
        written by ``genzoo eval --write-card`` (the metrics extension point).

        ``reference`` is the evaluation data: an (N, C, H, W) float tensor in [0, 1] for image
        models, the text as a ``str`` for text models, and for other modalities the tensor
        the family's ``prepare_data`` read (audio: (N, channels, T) in [-1, 1]). Return
        named numbers (a VAE's ELBO, a flow's exact NLL, a text model's nats per character).
        Draw randomness from a generator seeded with ``seed``. Default: nothing beyond the
        common metrics."""
        return {}

    def apply_card_sampling(self, sampling: dict[str, Any]) -> None:
        """Make a card's ``sampling`` entries this model's defaults (callers still override
        them); a key the family does not know is a card error, reported like a bad option.
        Defaults the model set for itself (a diffusers repository's scheduler) stay unless
        the card names them."""
        if sampling:
            checked = self.check_options(dict(sampling))
            self.sample_defaults = {**self.sample_defaults,
                                    **{k: checked[k] for k in sampling}}

    def options(self) -> dict[str, Option]:
        """This model's sampling options by name: the family's declared ``sample_options``
        plus names only in ``sample_defaults``, each with this model's default."""
        return build_schema(type(self).sample_options, self.sample_defaults)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Merge the defaults with the caller's options, each value checked by its option's
        schema; an unknown name or a bad value is a one-line ``OptionError``."""
        schema = self.options()
        given = validate(schema, {k: v for k, v in options.items() if v is not None},
                         f"{self.name_or_path or self.arch} ({self.family})")
        return {**{n: o.default for n, o in schema.items()}, **given}

    # ---- the uniform API ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to_device(self, device: str | torch.device = "auto",
                  dtype: str | torch.dtype | None = "auto") -> "GenerativeModel":
        """Move to ``device`` and choose the autocast dtype (``auto``: bf16 on CUDA, else fp32)."""
        dev = resolve_device(device)
        if any(t.device != dev for t in itertools.chain(self.parameters(), self.buffers())):
            self.to(dev)  # .to() walks every module even when nothing moves: a load-time cost
        self.autocast_dtype = resolve_dtype(dtype, dev)
        return self

    def autocast(self) -> ContextManager[Any]:
        """The autocast context for this model's device and dtype (autocast off in fp32)."""
        return autocast_context(self.device, self.autocast_dtype)

    def sample(self, n: int = 16, seed: int = 0, batch_size: int | None = None,
               progress: bool | Callable[[int], None] = False, *, distributed: str = "all",
               **options: Any) -> Samples:
        """Draw ``n`` samples. Sample i depends only on ``(seed, i)``: the first k of
        ``sample(n, seed=s)`` equal ``sample(k, seed=s)`` whatever ``batch_size``. Inside a
        process group the call is sharded over the ranks and, by default, every rank returns
        all ``n`` (``distributed``: see ``iter_samples``); a rank given no samples by
        ``main`` or ``local`` returns an empty ``Samples``."""
        parts = list(self.iter_samples(n, seed, batch_size, progress, distributed=distributed,
                                       **options))
        spec = self.sample_modality()
        if not parts:
            meta = self.plan_sampling(n, seed, batch_size, **options).meta
            return Samples(spec.empty(self.config), self.modality, meta)
        meta = {k: v for k, v in parts[0].meta.items() if k != "start"}
        return Samples(spec.concat([p.data for p in parts]), self.modality, meta)

    def iter_samples(self, n: int, seed: int = 0, batch_size: int | None = None,
                     progress: bool | Callable[[int], None] = False, *,
                     distributed: str = "all", **options: Any) -> Iterator[Samples]:
        """``sample`` batch by batch: each ``Samples`` holds the next ``batch_size`` samples
        (``meta["start"]`` is the index of its first), made from generators created for that
        batch alone, so memory stays bounded whatever ``n`` is. Images holding NaN or Inf
        raise ``SampleError`` before anything is handed on.

        Inside an initialised process group of world > 1 the batches (the same ones as in
        one process) are dealt round-robin over the ranks and exchanged round by round
        (``genzoo.batching``); ``distributed`` says who yields what: ``all`` (default) every
        rank yields every batch in order; ``main`` rank 0 does, the others yield nothing;
        ``local`` each rank yields its own batches; ``off`` this process samples alone. A
        rank's failure raises the same one-line error on every rank. Progress shows on rank
        0 only, counting every rank's samples."""
        mode = check_distributed(distributed)
        plan = self.plan_sampling(n, seed, batch_size, **options)
        rank, world = sharding(mode)
        self.eval()
        bar = progress_bar(progress if rank == 0 else False, n,
                           f"sampling {self.name_or_path or self.arch}")
        starts = list(range(0, n, plan.batch_size))
        try:
            if world > 1:
                yield from shard_rounds(lambda start: self._sample_batch(plan, start), starts,
                                        mode, bar)
                return
            for start in starts:
                batch = self._sample_batch(plan, start)
                bar.update(len(batch))
                yield batch
        finally:
            bar.close()

    def _sample_batch(self, plan: SamplingPlan, start: int) -> Samples:
        """The batch of ``plan`` that begins at sample ``start``."""
        k = min(plan.batch_size, plan.n - start)
        batch_opts = {**plan.opts, **{name: batch_rows(v, start, k)
                                      for name, v in plan.per_sample.items()}}
        with torch.inference_mode(), self.autocast():
            out = self.generate(sample_generators(plan.seed, k, start=start), **batch_opts)
        return self.to_samples(out, {**plan.meta, "start": start}, start)

    def plan_sampling(self, n: int, seed: int = 0, batch_size: int | None = None,
                      **options: Any) -> SamplingPlan:
        """Check a sampling call once — ``n``, ``seed``, the options against the schema, the
        batch size, per-sample value counts — and say what each batch records. ``iter_samples``
        runs the plan batch by batch; a server merging requests runs several in one batch."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise OptionError(f"n must be a positive integer, got {n!r}")
        check_seed(seed)
        opts = self.check_options(options)
        batch_size = batch_size or int(opts.pop("batch_size", 0) or 0) or 64
        opts.pop("batch_size", None)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise OptionError(f"batch_size must be a positive integer, got {batch_size!r}")
        schema = self.options()
        shown = provenance(schema, opts)
        meta = {"model": self.name_or_path or self.arch, "arch": self.arch,
                "revision": self.revision, "seed": seed, **shown, **self.sample_metadata()}
        self.sample_modality().check_meta(meta, self.name_or_path or self.arch)
        return SamplingPlan(n, seed, opts, batch_size, per_sample_values(schema, opts, n),
                            shown, meta)

    def to_samples(self, out: Any, meta: dict[str, Any], start: int) -> Samples:
        """One batch of ``generate``'s output as ``Samples`` of the model's modality, which
        checks it (``Modality.check_batch``: tensors as float32 on the CPU clamped to its
        range, NaN or Inf refused)."""
        where = self.name_or_path or self.arch
        return Samples(self.sample_modality().check_batch(out, where, start), self.modality,
                       meta)

    def sample_modality(self) -> Any:
        """The registered ``genzoo.samples.Modality`` this model's ``modality`` names."""
        return modality_named(self.modality)

    def sample_metadata(self) -> dict[str, Any]:
        """Metadata every batch of samples carries (``Samples.meta``): what the modality
        needs beside the data, e.g. ``{"sample_rate": 16000}`` for audio. By default the
        config's values of the keys the modality names (``Modality.metadata``)."""
        return {k: self.config[k] for k in self.sample_modality().metadata if k in self.config}

    def finetune(self, data: Any, steps: int = 1000,
                 out: str | os.PathLike[str] | None = None, **options: Any) -> Any:
        """Deprecated alias of ``genzoo.finetune(model, data, steps=..., out=..., ...)``."""
        warnings.warn("model.finetune(data, ...) is deprecated: use genzoo.finetune(model, data, "
                      "...)", DeprecationWarning, stacklevel=2)
        from genzoo.engine.train import finetune  # the one way up: the engine sits above
        return finetune(self, data, steps=steps, out=out, **options)

    # ---- the on-disk format -------------------------------------------------------------
    def genzoo_config(self) -> dict[str, Any]:
        """The full config.json content: the family config plus the ``genzoo`` section."""
        from genzoo import __version__
        return {**self.config, "genzoo": {"arch": self.arch, "family": self.family,
                                          "format_version": FORMAT_VERSION,
                                          "genzoo_version": __version__}}

    def save_pretrained(self, folder: str | os.PathLike[str], card: dict[str, Any] | None = None,
                        dtype: torch.dtype | None = None) -> Path:
        """Write config.json, model.safetensors and README.md into ``folder`` atomically.

        ``dtype`` (e.g. ``torch.float16``) stores floating tensors in that precision. (Code that
        changes what a model is, such as an adapter attached to it, may give the instance its
        own ``save_pretrained``.)"""
        folder = Path(folder)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        state = _untie(state)
        with atomic_dir(folder) as tmp:
            save_safetensors(state, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
            atomic_write_text(tmp / CONFIG_NAME, json.dumps(self.genzoo_config(), indent=2))
            atomic_write_text(tmp / CARD_NAME,
                              model_card_markdown(self, {**self.lineage(), **(card or {})}))
            self.save_extra_files(tmp)
        return folder

    def save_extra_files(self, folder: Path) -> None:
        """Hook for families that keep more files (a tokenizer, a scheduler config)."""

    def lineage(self) -> dict[str, Any]:
        """What a saved copy's card inherits from where this model was loaded: its license,
        datasets and tags, and as ``base_model`` the name it was loaded by (a catalog card or
        a Hub repo; a folder passes on its own card's base_model)."""
        origin = dict(getattr(self, "origin", None) or {})
        folder = origin.pop("folder", None)
        if folder is not None:
            from genzoo.modelcard import read_card_data
            front = read_card_data(Path(folder) / CARD_NAME)
            inherited = {k: front[k] for k in ("license", "datasets", "base_model") if front.get(k)}
            origin = {**inherited, **origin}
        return {k: v for k, v in origin.items() if v}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "GenerativeModel":
        """A freshly initialised model from a config dict."""
        return cls(config)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], device: str | torch.device = "auto",
                        dtype: str | torch.dtype | None = "auto") -> "GenerativeModel":
        """Load a genzoo folder: config.json + model.safetensors, verified complete."""
        folder = Path(folder)
        config = read_config(folder)
        try:
            with skip_init():  # every parameter is about to be read from disk
                model = cls.from_config({k: v for k, v in config.items() if k != "genzoo"})
        except GenzooError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AttributeError) as e:
            # a hand-edited config ("latent_dim": "abc", a negative size) fails deep in torch
            raise WeightsError(f"{folder / CONFIG_NAME}: does not describe a valid {cls.arch} "
                               f"model ({type(e).__name__}: {_first_line(e)}); fix the file or "
                               "re-download the model") from e
        model.load_weights(folder / WEIGHTS_NAME)
        model.load_extra_files(folder)
        model.name_or_path = str(folder)
        model.origin = {"folder": str(folder)}  # see lineage(); genzoo.load refines it
        model.pretrained = True
        model.to_device(device, dtype).eval()  # inference until someone finetunes it
        return model

    def load_extra_files(self, folder: Path) -> None:
        """Hook for families that read more files (a tokenizer)."""

    def load_weights(self, path: Path) -> None:
        """Read safetensors weights into the model; a missing, corrupt or mismatched file is a
        one-line ``WeightsError`` naming it."""
        self.load_checked_state(read_safetensors(path), path)

    def load_checked_state(self, state: dict[str, torch.Tensor], path: Path) -> None:
        """Copy ``state`` into the parameters after checking that its names and shapes are
        exactly the model's (tied weights may be stored once)."""
        own = self.state_dict(keep_vars=True)  # the parameters and buffers themselves
        missing = [k for k in own if k not in state and not _is_tied(self, k, state)]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise WeightsError(f"{path}: weights do not fit arch {self.arch!r} "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]}); "
                               "is config.json from the same model?")
        for k, v in state.items():
            if own[k].shape != v.shape:
                raise WeightsError(f"{path}: tensor {k} has shape {tuple(v.shape)}, the config "
                                   f"expects {tuple(own[k].shape)}")
            if v.is_floating_point() and not _finite(v):
                # NaN weights would give black images or NaN arrays with exit 0
                raise WeightsError(f"{path}: tensor {k} holds NaN or Inf values; the weights are "
                                   "corrupt: re-download the model or re-save it from a good run")
        with torch.no_grad():
            for k, v in state.items():
                target = own[k]
                if v.dtype == target.dtype and v.device == target.device:
                    # adopt the loaded (copy-on-write) storage: no copy, so a large model
                    # loads at the speed of safetensors; tied parameters stay one object
                    target.data = v
                else:  # a dtype or device change (fp16 on disk): copy in place
                    target.copy_(v)

    def num_parameters(self) -> int:
        """The number of parameters (tied ones counted once)."""
        return sum(p.numel() for p in self.parameters())


def _finite(t: torch.Tensor) -> bool:
    """No NaN or Inf in ``t``. A float32 sum carries any NaN or Inf and reads the tensor once
    (20x faster than ``isfinite().all()`` on 86M values); only a sum that is not finite, which
    an overflow could also cause, is confirmed element by element."""
    return math.isfinite(float(t.sum(dtype=torch.float32))) or bool(torch.isfinite(t).all())
