"""Reading and writing diffusers latent pipeline folders, component by component.

A Stable Diffusion folder as diffusers saves it: ``model_index.json`` naming the components,
and one subfolder each: ``unet/`` (``UNet2DConditionModel``), ``vae/`` (``AutoencoderKL``),
``text_encoder/`` (CLIP; SDXL adds ``text_encoder_2/``, with projection), ``tokenizer/``
(``tokenizer_2/``) and ``scheduler/``. An AudioLDM folder has a CLAP ``text_encoder/``, a
RoBERTa ``tokenizer/`` and a ``vocoder/`` (``SpeechT5HifiGan``) instead. Which classes each
component may be is a table the model class passes in (``NETWORKS`` is text-to-image's,
``AUDIO_NETWORKS`` text-to-audio's). Each network is loaded by its own library (diffusers,
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
#: AudioLDM's components: the same UNet and (1-channel) autoencoder, a CLAP text encoder and a
#: HiFi-GAN vocoder that turns the decoded mel spectrogram into a waveform.
AUDIO_NETWORKS = {
    "unet": NETWORKS["unet"],
    "vae": NETWORKS["vae"],
    "text_encoder": ("transformers", ("ClapTextModelWithProjection",)),
    "vocoder": ("transformers", ("SpeechT5HifiGan",)),
}
#: A table of networks: component -> (library, class names accepted).
Networks = dict[str, tuple[str, tuple[str, ...]]]
_WEIGHTS = {"diffusers": "diffusion_pytorch_model.safetensors",
            "transformers": "model.safetensors"}


def components(index: dict[str, Any]) -> dict[str, str]:
    """A pipeline's components as {name: class name}, from its parsed model_index.json
    (entries that are null, such as a removed safety checker, are left out)."""
    return {k: v[1] for k, v in index.items()
            if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[1]}


def load_network(folder: Path, name: str, cls_name: str,
                 networks: Networks = NETWORKS) -> torch.nn.Module:
    """Component ``name`` (a subfolder) loaded in float32 by its library, if ``networks``
    accepts its class."""
    library, accepted = networks[name]
    where = folder / name
    if cls_name not in accepted:
        raise WeightsError(f"{where}: the {name} is a {cls_name}; genzoo takes "
                           f"{' or '.join(accepted)} here")
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
    bars = _quiet(library)
    try:
        return cls.from_pretrained(str(where), **kwargs).eval()
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise WeightsError(f"{where}: {library} could not load the {name} ({first[:200]})"
                           ) from e
    finally:
        if bars:
            _import(library).utils.logging.enable_progress_bar()


def _quiet(library: str) -> bool:
    """Turn transformers' per-load progress bar off (a bar per component is noise on genzoo's
    stderr); True when it was on, to be turned back on."""
    if library != "transformers":
        return False
    logging = _import(library).utils.logging
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    return bars


def load_tokenizer(folder: Path, name: str, kind: str = "CLIP") -> Any:
    """A ``kind`` ("CLIP" or "Roberta") tokenizer from subfolder ``name`` (tokenizer.json, or
    vocab.json + merges.txt: both are byte-pair encodings transformers reads either way)."""
    where = folder / name
    if not where.is_dir():
        raise WeightsError(f"{where}: missing; re-download the model")
    try:
        return getattr(_import("transformers"), f"{kind}Tokenizer").from_pretrained(str(where))
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise WeightsError(f"{where}: not a {kind} tokenizer transformers can read "
                           f"({first[:200]})") from e


def network_spec(name: str, module: torch.nn.Module,
                 networks: Networks = NETWORKS) -> dict[str, Any]:
    """What rebuilds a loaded network without its folder: its class and config (JSON), kept in
    the genzoo config.json of a saved model."""
    library = networks[name][0]
    config = (dict(module.config) if library == "diffusers"
              else module.config.to_dict())
    return {"class": type(module).__name__,
            "config": json.loads(json.dumps(config, default=str))}


def build_network(name: str, spec: dict[str, Any],
                  networks: Networks = NETWORKS) -> torch.nn.Module:
    """A freshly initialised network from ``network_spec``'s record (weights are read next)."""
    library, accepted = networks[name]
    if spec.get("class") not in accepted:
        raise WeightsError(f"config.json: network {name} is a {spec.get('class')!r}, not "
                           f"{' or '.join(accepted)}")
    cls = getattr(_import(library), spec["class"])
    if library == "diffusers":
        return cls.from_config(spec["config"]).eval()
    # every transformers model names its configuration class (CLIPTextConfig, ClapTextConfig,
    # SpeechT5HifiGanConfig)
    return cls(cls.config_class.from_dict(spec["config"])).eval()


def _import(library: str) -> Any:
    """diffusers or transformers, imported on first use, with the extra to install if absent."""
    try:
        return importlib.import_module(library)
    except ImportError as e:
        raise PluginMissingError("diffusers pipelines need diffusers and transformers: pip "
                                 "install 'genzoo-diffusion[text2image]' (or [text2audio])"
                                 ) from e
