"""Reading and writing diffusers text-to-image pipeline folders, component by component.

A Stable Diffusion folder as diffusers saves it: ``model_index.json`` naming the components,
and one subfolder each: ``unet/`` (``UNet2DConditionModel``), ``vae/`` (``AutoencoderKL``),
``text_encoder/`` (CLIP; SDXL adds ``text_encoder_2/``, with projection), ``tokenizer/``
(``tokenizer_2/``) and ``scheduler/``. Each network is loaded by its own library (diffusers,
transformers: imported only here, and this module only when such a model loads), from
safetensors only: a component that has nothing but pickle ``.bin`` files is refused in one line.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch

from genzoo.errors import PluginMissingError, WeightsError
from genzoo.model import read_json, safetensors_weights  # noqa: F401  (read_json re-exported)

MODEL_INDEX = "model_index.json"
SCHEDULER_CONFIG = "scheduler_config.json"
#: component -> (library, class names accepted)
NETWORKS = {
    "unet": ("diffusers", ("UNet2DConditionModel",)),
    "vae": ("diffusers", ("AutoencoderKL",)),
    "text_encoder": ("transformers", ("CLIPTextModel", "CLIPTextModelWithProjection")),
    "text_encoder_2": ("transformers", ("CLIPTextModelWithProjection", "CLIPTextModel")),
}
TOKENIZERS = ("tokenizer", "tokenizer_2")
_WEIGHTS = {"diffusers": "diffusion_pytorch_model.safetensors",
            "transformers": "model.safetensors"}


def components(index: dict[str, Any]) -> dict[str, str]:
    """A pipeline's components as {name: class name}, from its parsed model_index.json
    (entries that are null, such as a removed safety checker, are left out)."""
    return {k: v[1] for k, v in index.items()
            if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[1]}


def load_network(folder: Path, name: str, cls_name: str) -> torch.nn.Module:
    """Component ``name`` (a subfolder) loaded in float32 by its library."""
    library, accepted = NETWORKS[name]
    where = folder / name
    if cls_name not in accepted:
        raise WeightsError(f"{where}: the {name} is a {cls_name}; genzoo's text-to-image "
                           f"models take {' or '.join(accepted)}")
    if not where.is_dir():
        raise WeightsError(f"{where}: missing; re-download the model")
    # the plain set, else the fp16/bf16 variant a --dtype fp16 download kept
    variant = safetensors_weights(where, _WEIGHTS[library], variants=("fp16", "bf16"))
    cls = getattr(_import(library), cls_name)
    kwargs: dict[str, Any] = {"use_safetensors": True, "variant": variant}
    if library == "diffusers":
        # low_cpu_mem_usage needs accelerate; asking for it without warns on every load
        kwargs.update(torch_dtype=torch.float32,
                      low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)
    else:
        kwargs.update(dtype=torch.float32)
    try:
        return cls.from_pretrained(str(where), **kwargs).eval()
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise WeightsError(f"{where}: {library} could not load the {name} ({first[:200]})"
                           ) from e


def load_tokenizer(folder: Path, name: str) -> Any:
    """A CLIP tokenizer from subfolder ``name`` (tokenizer.json, or vocab.json + merges.txt)."""
    where = folder / name
    if not where.is_dir():
        raise WeightsError(f"{where}: missing; re-download the model")
    try:
        return _import("transformers").CLIPTokenizer.from_pretrained(str(where))
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise WeightsError(f"{where}: not a CLIP tokenizer transformers can read ({first[:200]})"
                           ) from e


def network_spec(name: str, module: torch.nn.Module) -> dict[str, Any]:
    """What rebuilds a loaded network without its folder: its class and config (JSON), kept in
    the genzoo config.json of a saved model."""
    library = NETWORKS[name][0]
    config = (dict(module.config) if library == "diffusers"
              else module.config.to_dict())
    return {"class": type(module).__name__,
            "config": json.loads(json.dumps(config, default=str))}


def build_network(name: str, spec: dict[str, Any]) -> torch.nn.Module:
    """A freshly initialised network from ``network_spec``'s record (weights are read next)."""
    library, accepted = NETWORKS[name]
    if spec.get("class") not in accepted:
        raise WeightsError(f"config.json: network {name} is a {spec.get('class')!r}, not "
                           f"{' or '.join(accepted)}")
    cls = getattr(_import(library), spec["class"])
    if library == "diffusers":
        return cls.from_config(spec["config"]).eval()
    config_cls = getattr(_import(library), spec["class"].replace("WithProjection", "")
                         .replace("Model", "Config"))
    return cls(config_cls.from_dict(spec["config"])).eval()


def _import(library: str) -> Any:
    """diffusers or transformers, imported on first use, with the extra to install if absent."""
    try:
        return importlib.import_module(library)
    except ImportError as e:
        raise PluginMissingError("text-to-image models need diffusers and transformers: "
                                 "pip install 'genzoo-diffusion[text2image]'") from e
