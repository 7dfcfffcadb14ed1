"""LoRA adapters through peft: attach one to a loaded model, save and load adapter folders,
merge one into its base.

An adapter folder is peft's layout (``adapter_config.json`` + ``adapter_model.safetensors``,
keys prefixed ``base_model.model.`` as ``PeftModel.save_pretrained`` writes them) plus a
genzoo README.md card whose front matter names the base (``base_model``: a catalog name, a
folder or ``hf://org/repo``; ``base_model_revision``) and the sha256 of every base file
(``base_model_sha256``). Loading resolves the base, refuses one whose files differ, then
injects the adapter. The LoRA layers are peft's own (``peft.LoraModel`` on the plain
``nn.Module``); genzoo writes no LoRA arithmetic of its own.

A family needs nothing to take an adapter: every ``nn.Linear``, ``nn.Conv1d/2d/3d`` and
transformers ``Conv1D`` is adapted. It may narrow that with a ``lora_targets`` class
attribute (module names, or a regex peft full-matches), opt out with ``lora_targets = ()``,
and swap layers peft does not know for equivalent ones in a ``prepare_lora()`` method. A
family that reads its ecosystem's LoRA files (diffusers' ``pytorch_lora_weights.safetensors``)
injects them with ``attach_config`` (a peft ``LoraConfig`` it built) and ``load_adapter_state``.
peft is imported only here, only when an adapter is used (the ``genzoo[lora]`` extra).
"""
from __future__ import annotations

import json
import math
import os
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from genzoo.errors import GenzooError, OptionError, WeightsError
from genzoo.names import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CARD_NAME

if TYPE_CHECKING:
    import torch
    from genzoo.model import GenerativeModel

#: The key prefix ``PeftModel.save_pretrained`` writes, so peft itself can read our folders.
PEFT_PREFIX = "base_model.model."
ADAPTER_NAME = "default"
INSTALL = "pip install 'genzoo[lora]'"
_SPEC_KEYS = {"rank", "r", "alpha", "lora_alpha", "targets", "target_modules", "dropout"}


def peft_module() -> Any:
    """``import peft``, or one line with the pip command when the extra is missing."""
    try:
        import peft
    except ImportError:
        raise GenzooError(f"LoRA adapters need peft: {INSTALL}") from None
    return peft


def is_adapter_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a LoRA adapter (peft's adapter_config.json)."""
    return (Path(folder) / ADAPTER_CONFIG).is_file()


@dataclass
class LoraSpec:
    """What to adapt: ``rank`` (r), ``alpha`` (default: rank, a scale of 1), ``targets`` (module
    names or a regex; default: the family's ``lora_targets``, else every supported layer)."""

    rank: int = 8
    alpha: float | None = None
    targets: str | list[str] | None = None
    dropout: float = 0.0

    @classmethod
    def parse(cls, value: Any) -> LoraSpec:
        """From ``finetune(lora=...)``: a rank, a dict (rank/r, alpha, targets, dropout) or a
        ``LoraSpec``; anything else, or a bad value, is a one-line OptionError."""
        if isinstance(value, LoraSpec):
            spec = value
        elif isinstance(value, int) and not isinstance(value, bool):
            spec = cls(rank=value)
        elif isinstance(value, dict):
            unknown = sorted(set(value) - _SPEC_KEYS)
            if unknown:
                raise OptionError(f"unknown lora option(s) {', '.join(unknown)}: use rank, "
                                  "alpha, targets, dropout")
            spec = cls(rank=value.get("rank", value.get("r", 8)),
                       alpha=value.get("alpha", value.get("lora_alpha")),
                       targets=value.get("targets", value.get("target_modules")),
                       dropout=value.get("dropout", 0.0))
        else:
            raise OptionError(f"lora must be a rank or a dict like {{'rank': 8}}, got {value!r}")
        spec.check()
        return spec

    def check(self) -> None:
        """One-line OptionError for a rank < 1, a non-positive alpha or a dropout outside [0, 1)."""
        r = self.rank
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise OptionError(f"lora rank must be a whole number >= 1, got {r!r} (--lora-rank)")
        a = self.alpha
        if a is not None and (isinstance(a, bool) or not isinstance(a, (int, float))
                              or not math.isfinite(a) or a <= 0):
            raise OptionError(f"lora alpha must be a number above 0, got {a!r} (--lora-alpha)")
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise OptionError(f"lora dropout must be in [0, 1), got {d!r}")
        if isinstance(self.targets, str) and not self.targets.strip():
            raise OptionError("lora targets must name modules or be a regex (--lora-targets)")


@dataclass
class Adapter:
    """What an adapted model carries (as ``model.lora_adapter``): peft's config and tuner,
    and the base it adapts (name, revision, sha256 of each file)."""

    config: Any
    tuner: Any = field(repr=False)
    base: dict[str, Any]
    #: parameters that trained before peft froze them (restored by ``merge``)
    trainable: set[str] = field(default_factory=set, repr=False)


def adapter_of(model: Any) -> Adapter | None:
    """The adapter attached to ``model``, or None."""
    return getattr(model, "lora_adapter", None)


def supported_layers(model: torch.nn.Module) -> list[str]:
    """Names of the modules peft's LoRA can adapt: Linear, Conv1d/2d/3d, transformers Conv1D."""
    import torch
    from transformers.pytorch_utils import Conv1D  # peft depends on transformers
    kinds = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, Conv1D)
    return [name for name, m in model.named_modules() if name and isinstance(m, kinds)]


def _targets(model: GenerativeModel, spec: LoraSpec) -> str | list[str]:
    """The target_modules peft gets: the caller's, else the family's, else every supported
    layer; a family that declares ``lora_targets = ()`` takes no adapter (one line)."""
    declared = getattr(type(model), "lora_targets", None)
    who = f"{model.name_or_path or model.arch} ({model.family})"
    if declared is not None and len(declared) == 0:
        raise OptionError(f"{who} cannot take a LoRA adapter (its family declares no "
                          "adaptable layers); finetune it fully instead (drop --lora-rank)")
    targets = spec.targets if spec.targets is not None else declared
    if targets is None:
        targets = supported_layers(model)
        if not targets:
            raise OptionError(f"{who} has no layer peft can adapt (Linear, Conv1d/2d/3d); "
                              "finetune it fully instead (drop --lora-rank)")
    return list(targets) if isinstance(targets, (list, tuple)) else targets


def attach(model: GenerativeModel, spec: Any, base: dict[str, Any] | None = None) -> Adapter:
    """Inject fresh LoRA layers (peft's) into ``model`` in place and freeze everything else.

    ``base`` (name, revision, sha256) defaults to where ``model`` was loaded from: an
    adapter must name a base that can be found again, so a model built from a config alone
    is refused."""
    spec = LoraSpec.parse(spec)
    if adapter_of(model) is not None:
        raise OptionError(f"{model.name_or_path} already carries a LoRA adapter; merge it first "
                          "(genzoo merge) to train another on top")
    base = base or base_reference(model)
    config = peft_module().LoraConfig(
        r=spec.rank, lora_alpha=spec.alpha if spec.alpha is not None else spec.rank,
        lora_dropout=spec.dropout, target_modules=None, bias="none",
        base_model_name_or_path=base["name"], revision=base.get("revision"))
    return _inject(model, config, base, spec)


def attach_config(model: GenerativeModel, config: Any,
                  base: dict[str, Any] | None = None) -> Adapter:
    """Inject LoRA layers built from a ready peft ``LoraConfig`` (its exact target modules,
    per-module ``rank_pattern``/``alpha_pattern``: a LoRA file converted by a family) into
    ``model`` in place, as ``attach`` does; load their weights with ``load_adapter_state``."""
    if adapter_of(model) is not None:
        raise OptionError(f"{model.name_or_path} already carries a LoRA adapter; merge it first "
                          "(genzoo merge) to apply another")
    return _inject(model, config, base or base_reference(model))


def load_adapter_state(model: GenerativeModel, state: dict[str, torch.Tensor],
                       where: Any) -> None:
    """Copy adapter tensors (peft's names without the ``base_model.model.`` prefix) into the
    injected layers; every LoRA tensor must be there and nothing else (one line naming
    ``where`` otherwise)."""
    peft = peft_module()
    expected = set(peft.get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME,
                                                  save_embedding_layers=False))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise WeightsError(f"{where}: adapter tensors do not fit its config (missing "
                           f"{missing[:2]}, unexpected {unexpected[:2]})")
    peft.set_peft_model_state_dict(model, state, adapter_name=ADAPTER_NAME)


def _inject(model: GenerativeModel, config: Any, base: dict[str, Any],
            spec: LoraSpec | None = None) -> Adapter:
    """peft's ``LoraModel`` on ``model`` (same object, layers swapped in place)."""
    peft = peft_module()
    prepare = getattr(model, "prepare_lora", None)
    if callable(prepare):  # a family swaps layers peft does not know for equivalent ones
        prepare()
    if config.target_modules is None:
        config.target_modules = _targets(model, spec or LoraSpec())
    device = model.device
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    try:
        with warnings.catch_warnings():
            # peft sets fan_in_fan_out per layer kind (Conv1D stores (in, out)) and says so
            warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
            tuner = peft.LoraModel(model, config, ADAPTER_NAME)
    except ValueError as e:  # no module matched, or an unsupported one was named
        raise OptionError(f"LoRA targets {config.target_modules!r} do not fit "
                          f"{model.name_or_path or model.arch}: {str(e).splitlines()[0][:200]}"
                          " (--lora-targets names modules, or is a regex)") from None
    model.to(device)
    adapter = Adapter(config, tuner, base, trainable)
    model.lora_adapter = adapter  # a plain attribute: the tuner wraps model, never the reverse
    # an adapted model saves as its adapter folder, whatever its class's save_pretrained does;
    # set on the instance (``merge`` removes it), so the model contract knows nothing of LoRA
    model.save_pretrained = types.MethodType(_save_pretrained, model)
    return adapter


def _save_pretrained(model: GenerativeModel, folder: str | os.PathLike[str],
                     card: dict[str, Any] | None = None, dtype: Any = None) -> Path:
    """``save_pretrained`` of an adapted model: its adapter folder (``save_adapter``); the
    adapter's tensors keep their dtype, so ``dtype`` does not apply."""
    return save_adapter(model, folder, card)


def adapter_state(model: GenerativeModel) -> dict[str, torch.Tensor]:
    """The adapter's tensors under peft's saved names (``base_model.model.<module>...``)."""
    peft = peft_module()
    # save_embedding_layers=False: "auto" looks the base up on the Hub (a network call)
    state = peft.get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME,
                                           save_embedding_layers=False)
    return {PEFT_PREFIX + k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def trainable_count(model: torch.nn.Module) -> int:
    """Parameters that train (the adapter's, once one is attached)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def base_reference(model: GenerativeModel) -> dict[str, Any]:
    """Where ``model`` was loaded from, as an adapter card names its base: ``name`` (catalog
    name, ``hf://org/repo`` or absolute folder), ``revision`` and the sha256 of its files."""
    from genzoo.engine.lora_base import base_digests
    folder = getattr(model, "loaded_from", None)
    name = model.name_or_path
    if folder is None or not name:
        raise OptionError("a LoRA adapter adapts a loaded model: load it with genzoo.load "
                          "(a catalog name, a folder or hf://org/repo) before finetuning")
    if Path(name).is_dir():
        name = str(Path(name).resolve())
    return {"name": name, "revision": model.revision,
            "sha256": base_digests(model, Path(folder))}


def save_adapter(model: GenerativeModel, folder: str | os.PathLike[str],
                 card: dict[str, Any] | None = None) -> Path:
    """Write ``folder``: adapter_config.json, adapter_model.safetensors and a README.md card
    naming the base and its digests, atomically (files already there are kept)."""
    from genzoo.fsutil import atomic_dir, atomic_write_text
    from genzoo.modelio import model_card_markdown, save_safetensors
    adapter = adapter_of(model)
    if adapter is None:
        raise OptionError(f"{model.name_or_path}: no LoRA adapter to save")
    folder = Path(folder)
    base = adapter.base
    info = {**model.lineage(), **(card or {}), "base_model": base["name"]}
    info["summary"] = (f"A LoRA adapter (rank {adapter.config.r}, {trainable_count(model):,} "
                       f"parameters) of {base['name']}; genzoo.load applies it to that base. "
                       + str(info.get("summary") or ""))
    info["tags"] = list(dict.fromkeys([*info.get("tags", []), "lora", "peft"]))
    with atomic_dir(folder) as tmp:
        save_safetensors(adapter_state(model), tmp / ADAPTER_WEIGHTS, metadata={"format": "pt"})
        adapter.config.save_pretrained(str(tmp))
        text = model_card_markdown(model, info)
        atomic_write_text(tmp / CARD_NAME, _with_base(text, base))
        # the base's own extra files (a tokenizer) are not copied: the base provides them
    return folder


def _with_base(readme: str, base: dict[str, Any]) -> str:
    """Add the base's revision and digests to a card's YAML front matter."""
    import yaml
    _, front, body = readme.split("---\n", 2)
    data = yaml.safe_load(front) or {}
    data["base_model_revision"] = base.get("revision")
    data["base_model_sha256"] = dict(base.get("sha256") or {})
    return "---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n" + body


def read_adapter_card(folder: Path) -> dict[str, Any]:
    """The base an adapter folder names: ``{name, revision, sha256}``; one line when the card
    is missing or names none."""
    import yaml
    readme = folder / CARD_NAME
    try:
        text = readme.read_text(encoding="utf-8")
        front = yaml.safe_load(text.split("---\n", 2)[1]) if text.startswith("---\n") else {}
    except (OSError, IndexError, yaml.YAMLError, UnicodeDecodeError):
        front = {}
    name = front.get("base_model") if isinstance(front, dict) else None
    if not isinstance(name, str) or not name:
        raise WeightsError(f"{folder}: adapter card README.md names no base_model; an adapter "
                           "folder written by genzoo finetune --lora-rank has one")
    digests = front.get("base_model_sha256")
    return {"name": name, "revision": front.get("base_model_revision"),
            "sha256": digests if isinstance(digests, dict) else {}}


def adapter_info(folder: Path) -> dict[str, Any]:
    """What ``genzoo info`` shows of an adapter folder, without torch or peft: the base
    (name, revision, sha256 of its files) and the LoRA settings of adapter_config.json."""
    base = read_adapter_card(folder)
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"{folder / ADAPTER_CONFIG}: not valid JSON ({e})") from None
    targets = config.get("target_modules")
    shown = ", ".join(targets) if isinstance(targets, list) else str(targets)
    return {"name": str(folder), "path": str(folder.resolve()), "adapter": True,
            "summary": f"a LoRA adapter (rank {config.get('r')}, alpha "
                       f"{config.get('lora_alpha')}, targets {shown}) of {base['name']}",
            "origin": f"base {base['name']}" + (f"@{base['revision']}" if base["revision"] else ""),
            "status": "LoRA adapter (genzoo.load applies it to its verified base)",
            "base_model": base["name"], "base_model_revision": base["revision"],
            "base_model_sha256": base["sha256"], "lora": config,
            "files": sorted(p.name for p in folder.iterdir() if p.is_file()
                            and not p.name.startswith("."))}


def load_adapter(folder: str | os.PathLike[str], loader: Callable[..., GenerativeModel],
                 device: str = "auto", dtype: str = "auto",
                 revision: str | None = None) -> GenerativeModel:
    """Load an adapter folder: the base its card names through ``loader`` (``genzoo.load``,
    which calls this for adapter folders), its files checked against the card's sha256,
    then the adapter applied."""
    from genzoo.engine.lora_base import verify_base
    folder = Path(folder)
    peft = peft_module()
    base = read_adapter_card(folder)
    try:
        model = loader(base["name"], device=device, dtype=dtype, revision=base.get("revision"))
    except GenzooError as e:
        raise WeightsError(f"{folder}: its base {base['name']!r} cannot be loaded "
                           f"({str(e).splitlines()[0]})") from None
    verify_base(model, base, folder)
    try:
        config = peft.LoraConfig.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{folder / ADAPTER_CONFIG}: not a LoRA config peft reads "
                           f"({str(e).splitlines()[0][:160]})") from None
    _inject(model, config, base)
    _load_weights(model, folder / ADAPTER_WEIGHTS)
    model.name_or_path = str(folder)
    model.origin = {"folder": str(folder)}
    model.revision = revision
    model.eval()
    return model


def _load_weights(model: GenerativeModel, path: Path) -> None:
    """Read the adapter tensors into the injected layers; every LoRA tensor must be there."""
    from genzoo.modelio import read_safetensors
    state = read_safetensors(path)
    state = {k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k: v for k, v in state.items()}
    load_adapter_state(model, state, path)


def merge(model: GenerativeModel) -> GenerativeModel:
    """Bake the adapter into the base weights (peft's ``merge_and_unload``): the same model
    object, its plain layers back, ready for ``save_pretrained`` as a full model folder."""
    adapter = adapter_of(model)
    if adapter is None:
        raise OptionError(f"{model.name_or_path}: no LoRA adapter to merge")
    import torch
    with torch.no_grad():  # weights a sampling pass touched may be inference tensors
        adapter.tuner.merge_and_unload()
    del model.lora_adapter
    model.__dict__.pop("save_pretrained", None)  # its class's again: a full model folder
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in adapter.trainable:  # a merged model finetunes like any other
                if p.is_inference():
                    p.data = p.data.clone()
                p.requires_grad_(True)
    model.origin = {"base_model": adapter.base["name"]}
    return model


__all__ = ["LoraSpec", "Adapter", "attach", "attach_config", "load_adapter_state", "adapter_of",
           "save_adapter", "load_adapter", "merge", "is_adapter_folder", "adapter_state",
           "supported_layers", "trainable_count", "peft_module", "ADAPTER_CONFIG",
           "ADAPTER_WEIGHTS"]
