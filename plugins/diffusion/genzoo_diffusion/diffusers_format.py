"""`DiffusersUNetModel` ("diffusers-unet"): diffusers UNet2DModel repositories in genzoo.

Loads a diffusers folder through diffusers itself (imported only here, and this module only
when such a model loads) and samples it with genzoo's native samplers, which match diffusers'
schedulers step for step. Layouts (see ``detect.py``):

- a UNet folder: ``config.json`` (``UNet2DModel``) + ``diffusion_pytorch_model.safetensors``,
  with ``scheduler_config.json`` beside it (flat ``google/ddpm-*`` layout) or in ../scheduler;
- a pipeline folder: ``model_index.json`` + ``unet/`` + ``scheduler/``.

Class labels: a UNet2DModel with ``num_class_embeds`` (an ``nn.Embedding`` of class labels,
``class_embed_type`` null) takes ``label``/``guidance`` like the house UNet. UNet2DModel has no
null class of its own, so genzoo's rule is the one diffusers' class-conditional DiT uses: the
LAST embedding is "no label" (trained by label dropout). Such a repository has
``num_classes = num_class_embeds - 1`` labels, 0..num_class_embeds-2; sampling without a label
uses index num_class_embeds-1, and classifier-free guidance contrasts it with the label. A
repository trained without a null class still loads, but its unconditional samples and
guidance are then only as good as that last class. Other ``class_embed_type`` values
("timestep", "identity": continuous conditioning, not class labels) are refused at load.

Weights are read from safetensors only; a folder with nothing but ``.bin`` files is refused.
Once finetuned, the model is saved in genzoo's own format (config.json with a ``genzoo``
section holding the UNet and scheduler configs, model.safetensors), which loads here too.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from genzoo.errors import OptionError, PluginMissingError, WeightsError
from genzoo.model import CONFIG_NAME, read_json, safetensors_weights

from .model import DiffusionModel

UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
SCHEDULER_CONFIG = "scheduler_config.json"
#: Schedulers over the same discrete beta schedule (VP, integer timesteps) as genzoo's samplers.
VP_SCHEDULERS = {"DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler",
                 "DPMSolverSinglestepScheduler", "DEISMultistepScheduler",
                 "UniPCMultistepScheduler", "EulerDiscreteScheduler",
                 "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
                 "LMSDiscreteScheduler"}
#: The genzoo sampler that runs what a repository's scheduler class runs: the repository's
#: default (a DPM-Solver scheduler only with the ++ algorithm, the one genzoo implements).
SCHEDULER_SAMPLERS = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim",
                      "DPMSolverMultistepScheduler": "dpmsolver++",
                      "EulerDiscreteScheduler": "euler",
                      "EulerAncestralDiscreteScheduler": "euler-a"}


class DiffusersUNetModel(DiffusionModel):
    """A diffusers ``UNet2DModel`` plus its scheduler config, sampled by genzoo."""

    arch = "diffusers-unet"
    # Ecosystem UNets are far bigger than the house one: smaller batches bound CPU memory.
    sample_defaults = {**DiffusionModel.sample_defaults, "batch_size": 32}
    #: Parity by default: diffusers' pipelines run contiguous tensors, and channels-last
    #: convolutions round differently (DDIM-10 on ddpm-butterflies-128's UNet config: 5.6e-4
    #: to 1.9e-3 from DDIMPipeline with it, bit-identical without). Opt in for speed
    #: (``model.channels_last = True``: 6-16% faster sampling on CPU).
    channels_last = False
    #: Without a label: the repository's null class (its last embedding), not a class prior
    #: (a repository records none).
    unlabelled_from_prior = False

    def __init__(self, config: dict[str, Any] | None = None):
        super().__init__(config)
        # the repository's scheduler class picks the default sampler (kept in config.json
        # when saved, so a finetuned copy samples the same way)
        sampler = self.config.get("default_sampler")
        if sampler is not None:
            self.sample_defaults = {**self.sample_defaults, "sampler": sampler}

    def build_network(self, config: dict[str, Any]) -> torch.nn.Module:
        """A freshly initialised ``UNet2DModel`` from the stored diffusers UNet config."""
        _check_class_embedding("diffusers_unet", config["diffusers_unet"])
        return _unet_class().from_config(config["diffusers_unet"])

    @property
    def num_classes(self) -> int:
        """Class labels the UNet takes: ``num_class_embeds - 1``, the last embedding being the
        null class (module docstring); 0 for an unconditional UNet. The house UNet's
        ``num_classes`` config entry does not apply to a diffusers UNet."""
        # diffusers documents num_class_embeds only as the embedding's input size
        # (models/unets/unet_2d.py) and ships no pipeline for a class-conditional UNet2DModel;
        # its one class-conditional pipeline, DiT, keeps the null class last: LabelEmbedding
        # is nn.Embedding(num_classes + 1) when trained with label dropout, token_drop maps
        # dropped labels to num_classes, and DiTPipeline guides against class_null = 1000
        # (models/embeddings.py, pipelines/dit/pipeline_dit.py, diffusers 0.42).
        return max(class_embeds(self.config["diffusers_unet"]) - 1, 0)

    def model_output(self, x: torch.Tensor, t: torch.Tensor,
                     label: torch.Tensor | None = None) -> torch.Tensor:
        """The UNet's prediction at noisy ``x``, timesteps ``t`` (one per sample), for class
        ``label`` (one per sample; None: the null class of a class-conditional UNet)."""
        if not class_embeds(self.config["diffusers_unet"]):
            if label is not None:  # sample() never gets here: options() has no label then
                raise OptionError("this diffusers UNet is unconditional: it takes no label")
            return self.unet(x, t, return_dict=False)[0]
        if label is None:
            # diffusers' UNet2DModel raises without class_labels once it has an embedding
            label = torch.full((x.shape[0],), self.num_classes, dtype=torch.long,
                               device=x.device)
        return self.unet(x, t, class_labels=label, return_dict=False)[0]

    @classmethod
    def from_pretrained(cls, folder, device="auto", dtype="auto") -> "DiffusersUNetModel":
        """Load a diffusers UNet or pipeline folder (or a genzoo folder saved from one)."""
        folder = Path(folder)
        if "genzoo" in read_json(folder / CONFIG_NAME, required=False):
            return super().from_pretrained(folder, device=device, dtype=dtype)
        unet_dir, scheduler_path = locate(folder)
        unet_config = read_json(unet_dir / CONFIG_NAME)
        _check_unet_config(unet_dir, unet_config)
        scheduler = read_json(scheduler_path)
        if scheduler.get("_class_name", "DDPMScheduler") not in VP_SCHEDULERS:
            raise WeightsError(f"{scheduler_path}: scheduler {scheduler['_class_name']} is not a "
                               "discrete beta-schedule scheduler; genzoo's samplers cannot run it")
        safetensors_weights(unet_dir, UNET_WEIGHTS)
        try:
            # low_cpu_mem_usage needs accelerate; asking for it without warns on every load
            unet = _unet_class().from_pretrained(
                str(unet_dir), use_safetensors=True, torch_dtype=torch.float32,
                low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise WeightsError(f"{unet_dir}: diffusers could not load the UNet ({first})") from e
        size = unet.config.sample_size
        hw = [size, size] if isinstance(size, int) else list(size)
        config = {"image_shape": [unet.config.in_channels, *hw],
                  "unet": None,  # the house UNet's settings do not apply
                  "diffusers_unet": {k: v for k, v in unet.config.items() if not k.startswith("_")},
                  "scheduler": {k: v for k, v in scheduler.items() if not k.startswith("_")},
                  "default_sampler": default_sampler(scheduler)}
        model = cls(config)
        model.unet = unet  # the weights diffusers loaded replace the fresh initialisation
        model.name_or_path = str(folder)
        return model.to_device(device, dtype)


def default_sampler(scheduler: dict[str, Any]) -> str | None:
    """The genzoo sampler matching a scheduler config's ``_class_name`` (None: genzoo has no
    such sampler, so the family default stays)."""
    name = scheduler.get("_class_name", "DDPMScheduler")
    if name == "DPMSolverMultistepScheduler" and \
            scheduler.get("algorithm_type", "dpmsolver++") != "dpmsolver++":
        return None
    return SCHEDULER_SAMPLERS.get(name)


def locate(folder: Path) -> tuple[Path, Path]:
    """(UNet folder, scheduler_config.json) of a diffusers UNet or pipeline folder."""
    folder = Path(folder)
    own = read_json(folder / CONFIG_NAME, required=False)
    if own.get("_class_name") is not None:
        unet_dir = folder
        candidates = [folder / SCHEDULER_CONFIG, folder / "scheduler" / SCHEDULER_CONFIG,
                      folder.parent / "scheduler" / SCHEDULER_CONFIG]
    elif (folder / "model_index.json").is_file():
        unet_dir = folder / "unet"
        candidates = [folder / "scheduler" / SCHEDULER_CONFIG]
    else:
        raise WeightsError(f"{folder}: not a diffusers UNet or pipeline folder (no config.json "
                           "naming UNet2DModel, no model_index.json)")
    for path in candidates:
        if path.is_file():
            return unet_dir, path
    raise WeightsError(f"{folder}: no {SCHEDULER_CONFIG} beside the UNet or in a scheduler/ "
                       "folder; genzoo needs it to know the noise schedule")


def class_embeds(unet_config: dict[str, Any]) -> int:
    """The number of class embeddings of a UNet2DModel config (0: unconditional)."""
    return int(unet_config.get("num_class_embeds") or 0)


def _check_class_embedding(where: str | Path, config: dict[str, Any]) -> None:
    """Refuse class conditioning other than an embedding of class labels, in one line."""
    kind = config.get("class_embed_type")
    if kind is not None:
        # "timestep"/"identity" add a continuous vector to the time embedding: there is no
        # class label (nor null class) for genzoo's label/guidance options to drive
        raise WeightsError(f"{where}: class_embed_type {kind!r} is not supported; genzoo takes "
                           "unconditional UNet2DModels and class-conditional ones with "
                           "num_class_embeds (class_embed_type null)")


def _check_unet_config(unet_dir: Path, config: dict[str, Any]) -> None:
    """Refuse UNets the samplers cannot drive, with a one-line reason."""
    name = config.get("_class_name")
    if name != "UNet2DModel":
        raise WeightsError(f"{unet_dir}: the UNet is a {name}, not a UNet2DModel; only "
                           "UNet2DModel repositories are supported")
    _check_class_embedding(unet_dir, config)
    if config.get("out_channels", 3) != config.get("in_channels", 3):
        raise WeightsError(f"{unet_dir}: out_channels != in_channels (a learned-variance UNet); "
                           "genzoo's samplers need a plain noise/velocity/sample prediction")


def _unet_class():
    """diffusers' UNet2DModel, imported on first use (diffusers takes seconds to import)."""
    try:
        from diffusers import UNet2DModel
    except ImportError as e:
        raise PluginMissingError("diffusers-format models need diffusers: "
                                 "pip install 'genzoo-diffusion[diffusers]'") from e
    return UNet2DModel
