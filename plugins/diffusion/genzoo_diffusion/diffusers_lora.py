"""The LoRA files people share for Stable Diffusion, in diffusers' format, on a loaded
text-to-image pipeline; and genzoo's LoRA adapters written back in that format.

Two ways in, both ending in the same peft adapter genzoo's own LoRA training makes (so the
model saves as a genzoo adapter folder, merges with ``genzoo merge``, and samples as usual):

- ``model.load_lora(path, scale=1.0)`` on a loaded ``TextToImageModel``: ``path`` is a
  ``.safetensors`` file or a folder holding ``pytorch_lora_weights.safetensors`` (what
  ``pipe.save_lora_weights`` and diffusers' training scripts write), as diffusers'
  ``pipe.load_lora_weights(path)`` takes it; ``scale`` weighs the update as diffusers'
  ``cross_attention_kwargs={"scale": s}`` does.
- a folder holding that file and a README.md whose front matter names the ``base_model``
  (a Hub LoRA repository, or a diffusers training script's output) loads by itself:
  ``genzoo.load(folder)``, ``genzoo sample folder --prompt ...`` (arch "diffusers-lora",
  ``DiffusersLoraFolder``) load the base, then apply the file at scale 1.

Keys are read in diffusers' peft style (``unet.<module>.lora_A.weight`` / ``.lora_B.weight``,
``text_encoder.`` and SDXL's ``text_encoder_2.`` prefixes), and in the older diffusers styles
(``<module>.lora.down.weight``, ``processor.to_q_lora.up.weight``,
``lora_linear_layer.down.weight``). Each module's rank comes from its tensors; its alpha from
the file's ``lora_adapter_metadata`` when diffusers wrote one, else the rank (scale 1), as
diffusers decides. Kohya/A1111 files (``lora_unet_...``, ``lora_te_...``), network alphas,
DoRA, LoKr/LoHa and LoRA biases are refused in one line, as are pickle ``.bin`` files.
"""
from __future__ import annotations

import collections
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genzoo.errors import GenzooError, OptionError, WeightsError

from .text2image import TextToImageModel

if TYPE_CHECKING:
    from genzoo.model import GenerativeModel

#: The file ``save_lora_weights`` writes into a folder.
WEIGHT_NAME = "pytorch_lora_weights.safetensors"
#: The components a LoRA file may adapt: the key prefixes diffusers writes.
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
#: safetensors metadata key under which diffusers stores each component's LoraConfig.
METADATA_KEY = "lora_adapter_metadata"
#: Older diffusers key spellings -> peft's (diffusers' UNET_TO_DIFFUSERS, DIFFUSERS_TO_PEFT).
_OLD_UNET = {".to_out_lora.up": ".to_out.0.lora_B", ".to_out_lora.down": ".to_out.0.lora_A",
             ".to_q_lora.up": ".to_q.lora_B", ".to_q_lora.down": ".to_q.lora_A",
             ".to_k_lora.up": ".to_k.lora_B", ".to_k_lora.down": ".to_k.lora_A",
             ".to_v_lora.up": ".to_v.lora_B", ".to_v_lora.down": ".to_v.lora_A",
             ".lora.up": ".lora_B", ".lora.down": ".lora_A"}
_OLD_TEXT = {".to_q_lora.up": ".q_proj.lora_B", ".to_q_lora.down": ".q_proj.lora_A",
             ".to_k_lora.up": ".k_proj.lora_B", ".to_k_lora.down": ".k_proj.lora_A",
             ".to_v_lora.up": ".v_proj.lora_B", ".to_v_lora.down": ".v_proj.lora_A",
             ".to_out_lora.up": ".out_proj.lora_B", ".to_out_lora.down": ".out_proj.lora_A",
             ".lora_linear_layer.up": ".lora_B", ".lora_linear_layer.down": ".lora_A",
             ".lora.up": ".lora_B", ".lora.down": ".lora_A"}
_PEFT_KEY = re.compile(r"(.+)\.lora_(A|B)\.weight")
_SUPPORTED = ("diffusers' format (unet./text_encoder. keys with lora_A/lora_B, or the older "
              "lora.down/lora.up)")


def find_file(path: str | Path) -> Path:
    """The LoRA safetensors file ``path`` names (itself, or ``pytorch_lora_weights.safetensors``
    in a folder); pickle files and missing ones are one ``WeightsError``."""
    path = Path(path)
    if path.is_dir():
        if (path / WEIGHT_NAME).is_file():
            return path / WEIGHT_NAME
        pickled = sorted(p.name for p in path.glob("*.bin"))
        raise WeightsError(f"{path}: no {WEIGHT_NAME}" + (
            f" (only pickle {pickled[0]}, which genzoo never loads; convert it to safetensors)"
            if pickled else "; give the LoRA .safetensors file itself"))
    if path.suffix.lower() in (".bin", ".pt", ".pth", ".ckpt"):
        raise WeightsError(f"{path}: a pickle file, which genzoo never loads; use the "
                           ".safetensors LoRA file (or convert this one to safetensors)")
    if not path.is_file():
        raise WeightsError(f"{path}: no such LoRA file")
    return path


def read_lora(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """The tensors of a LoRA file and diffusers' per-component LoraConfig metadata
    (``{"unet": {...}}``; empty when the file has none)."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file "
                           f"({str(e).splitlines()[0][:160]})") from None
    try:
        flat = json.loads(raw) if raw else {}
    except ValueError:
        raise WeightsError(f"{path}: its {METADATA_KEY} is not valid JSON") from None
    metadata: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        component, _, field = key.partition(".")
        metadata.setdefault(component, {})[field] = value
    return state, metadata


def peft_keys(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """``state`` under peft's names (``unet.<module>.lora_A.weight``); any other format is
    one line saying which it looks like and what is supported."""
    refused = _refused_format(list(state))
    if refused:
        raise WeightsError(f"{path}: {refused} LoRA files are not supported; genzoo reads "
                           f"{_SUPPORTED}")
    out = {}
    for key, value in state.items():
        component = key.split(".", 1)[0]
        if component not in COMPONENTS:
            raise WeightsError(f"{path}: key {key!r} names no unet/text_encoder component; "
                               f"genzoo reads {_SUPPORTED}")
        new = key.replace(".processor.", ".")
        for old, peft in (_OLD_UNET if component == "unet" else _OLD_TEXT).items():
            if old + "." in new:
                new = new.replace(old + ".", peft + ".")
                break
        if not _PEFT_KEY.fullmatch(new):
            raise WeightsError(f"{path}: key {key!r} is not a LoRA down/up weight; genzoo "
                               f"reads {_SUPPORTED}")
        out[new] = value
    return out


def _refused_format(keys: list[str]) -> str | None:
    """The name of a LoRA format genzoo does not read that ``keys`` are in, or None."""
    checks = (("kohya/A1111 (lora_unet_/lora_te_ keys)",
               lambda k: k.startswith(("lora_unet_", "lora_te"))),
              ("network-alpha (.alpha keys)", lambda k: k.endswith(".alpha")),
              ("DoRA", lambda k: "lora_magnitude_vector" in k or "dora_scale" in k),
              ("LoKr/LoHa", lambda k: ".lokr_" in k or ".hada_" in k),
              ("LoRA-with-bias", lambda k: ".lora_B.bias" in k or ".lora_A.bias" in k))
    for name, match in checks:
        if any(match(k) for k in keys):
            return name
    return None


def lora_config(state: dict[str, torch.Tensor], metadata: dict[str, dict[str, Any]],
                scale: float, path: Path) -> Any:
    """peft's ``LoraConfig`` for ``state`` (peft names): its exact modules, each one's rank
    (from lora_A) and alpha (diffusers' metadata, else the rank) times ``scale``."""
    from genzoo.engine.lora import peft_module
    from peft.utils.other import get_pattern_key
    modules = sorted({_PEFT_KEY.fullmatch(k).group(1) for k in state})  # type: ignore[union-attr]
    ranks, alphas = {}, {}
    for m in modules:
        if m + ".lora_A.weight" not in state or m + ".lora_B.weight" not in state:
            raise WeightsError(f"{path}: {m} has only one of lora_A/lora_B; the file is cut short")
        ranks[m] = int(state[m + ".lora_A.weight"].shape[0])
        if state[m + ".lora_B.weight"].shape[1] != ranks[m]:
            raise WeightsError(f"{path}: {m}'s lora_A and lora_B disagree on the rank")
        component, _, inner = m.partition(".")
        meta = metadata.get(component, {})
        pattern = meta.get("alpha_pattern") or {}
        key = get_pattern_key(list(pattern), inner)
        alpha = pattern.get(key, meta.get("lora_alpha", ranks[m]))
        alphas[m] = float(alpha) * scale
    if any(meta.get("use_dora") for meta in metadata.values()):
        raise WeightsError(f"{path}: a DoRA file (use_dora); genzoo reads plain LoRA only")
    rslora = {bool(meta.get("use_rslora")) for meta in metadata.values()}
    if len(rslora) > 1:
        raise WeightsError(f"{path}: components disagree on use_rslora; not supported")
    r = collections.Counter(ranks.values()).most_common(1)[0][0]
    alpha = collections.Counter(alphas.values()).most_common(1)[0][0]
    return peft_module().LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=modules,
        rank_pattern={re.escape(m): v for m, v in ranks.items() if v != r},
        alpha_pattern={re.escape(m): v for m, v in alphas.items() if v != alpha},
        use_rslora=rslora == {True})


def load_lora(model: TextToImageModel, path: str | Path, scale: float = 1.0) -> Path:
    """Apply a diffusers-format LoRA file (or a folder holding ``pytorch_lora_weights
    .safetensors``) to ``model`` at ``scale``, as peft layers genzoo's adapters use; returns
    the file read. The model must come from ``genzoo.load`` (the adapter names its base)."""
    from genzoo.engine.lora import attach_config, load_adapter_state
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
            or not math.isfinite(scale):
        raise OptionError(f"LoRA scale must be a finite number, got {scale!r}")
    file = find_file(path)
    raw, metadata = read_lora(file)
    if not raw:
        raise WeightsError(f"{file}: holds no tensors")
    state = peft_keys(raw, file)
    absent = sorted({k.split(".", 1)[0] for k in state} - {
        c for c in COMPONENTS if getattr(model, c, None) is not None})
    if absent:
        raise WeightsError(f"{file}: adapts {', '.join(absent)}, which "
                           f"{model.name_or_path or model.arch} does not have (a LoRA for "
                           "another kind of pipeline?)")
    _check_fits(model, state, file)
    attach_config(model, lora_config(state, metadata, float(scale), file))
    load_adapter_state(model, state, file)
    model.eval()
    return file


def _check_fits(model: TextToImageModel, state: dict[str, torch.Tensor], file: Path) -> None:
    """Every module the file adapts exists in ``model`` with the sizes its tensors imply
    (checked before anything is injected, so a LoRA of another base leaves the model as is)."""
    who = model.name_or_path or model.arch
    for key, value in state.items():
        module, kind = _PEFT_KEY.fullmatch(key).groups()  # type: ignore[union-attr]
        try:
            weight = model.get_submodule(module).weight
        except AttributeError:
            raise WeightsError(f"{file}: adapts {module}, which {who} does not have (a LoRA "
                               "for another base model?)") from None
        size, dim = (weight.shape[1], 1) if kind == "A" else (weight.shape[0], 0)
        if value.ndim < 2 or value.shape[dim] != size:
            raise WeightsError(f"{file}: {key} is shaped {tuple(value.shape)}, which does not "
                               f"fit {module} of {who} (a LoRA for another base model?)")


def save_lora(model: GenerativeModel, folder: str | Path) -> Path:
    """Write ``model``'s LoRA adapter as diffusers does (``pytorch_lora_weights.safetensors``
    with peft-style keys and each component's LoraConfig as metadata), for diffusers'
    ``pipe.load_lora_weights`` and the tools that read its format; returns the file."""
    from genzoo.engine.lora import PEFT_PREFIX, adapter_of, adapter_state
    from genzoo.modelio import save_safetensors
    adapter = adapter_of(model)
    if adapter is None:
        raise OptionError(f"{model.name_or_path}: no LoRA adapter to save")
    state = {k[len(PEFT_PREFIX):]: v for k, v in adapter_state(model).items()}
    outside = sorted({k.split(".", 1)[0] for k in state} - set(COMPONENTS))
    if outside:
        raise OptionError(f"the adapter adapts {', '.join(outside)}; diffusers' LoRA format "
                          "holds the unet and text encoders only")
    config = adapter.config.to_dict()
    metadata = {}
    for component in sorted({k.split(".", 1)[0] for k in state}):
        for field in ("r", "lora_alpha", "use_rslora"):
            metadata[f"{component}.{field}"] = config[field]
        for field in ("rank_pattern", "alpha_pattern"):
            metadata[f"{component}.{field}"] = _component_patterns(config[field], component)
        metadata[f"{component}.target_modules"] = sorted(
            {_PEFT_KEY.fullmatch(k).group(1).split(".", 1)[1]  # type: ignore[union-attr]
             for k in state if k.startswith(component + ".")})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / WEIGHT_NAME
    save_safetensors(state, file, metadata={"format": "pt", METADATA_KEY: json.dumps(
        metadata, indent=2, sort_keys=True)})
    return file


def _component_patterns(patterns: dict[str, Any], component: str) -> dict[str, Any]:
    """A whole-model rank/alpha pattern restricted to one component, its keys relative to it."""
    prefix = re.escape(component + ".")
    return {k[len(prefix):]: v for k, v in patterns.items() if k.startswith(prefix)}


def base_of(folder: Path) -> str:
    """The base a LoRA folder's README.md names (``base_model``): a folder (relative to the
    LoRA folder or as given), ``hf://org/repo``, a Hub id ``org/repo`` or a catalog name."""
    from genzoo.modelcard import read_card_data
    data = read_card_data(folder / "README.md")
    name = data.get("base_model")
    if isinstance(name, list) and len(name) == 1:
        name = name[0]
    if not isinstance(name, str) or not name.strip():
        raise WeightsError(f"{folder}: README.md names no base_model; add front matter "
                           "'base_model: <a pipeline folder, catalog name or org/repo>', or "
                           "load the base and call model.load_lora(...)")
    name = name.strip()
    if name.startswith("hf://") or Path(name).is_dir():
        return name
    if (folder / name).is_dir():
        return str((folder / name).resolve())
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return "hf://" + name
    return name


class DiffusersLoraFolder(TextToImageModel):
    """A diffusers LoRA folder (``pytorch_lora_weights.safetensors`` + a README.md naming the
    ``base_model``): loading it loads the base pipeline and applies the file at scale 1."""

    arch = "diffusers-lora"

    @classmethod
    def from_pretrained(cls, folder, device="auto", dtype="auto") -> TextToImageModel:
        """The base the folder's card names, loaded with ``genzoo.load``, with the LoRA on."""
        import genzoo
        folder = Path(folder)
        file = find_file(folder)
        base = base_of(folder)
        try:
            model = genzoo.load(base, device=device, dtype=dtype)
        except GenzooError as e:
            raise WeightsError(f"{folder}: its base {base!r} cannot be loaded "
                               f"({str(e).splitlines()[0]})") from None
        if not isinstance(model, TextToImageModel):
            raise WeightsError(f"{folder}: its base {base!r} is a {model.arch} model, not a "
                               "text-to-image pipeline")
        load_lora(model, file)
        model.origin = {"folder": str(folder)}
        return model
