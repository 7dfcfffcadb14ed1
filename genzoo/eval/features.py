"""Feature networks for evaluation, and `MnistClassifier`, the zoo's own MNIST one.

A feature network is not a generative architecture: plugins register them through the
``genzoo_feature_nets`` hook (core registers ``mnist`` and the audio net ``logmel``, see
``genzoo.eval.logmel``, in ``genzoo/plugins/core.py``) and ``feature_net(spec)`` builds one
by name; ``timm:NAME`` is built in. ``check_feature`` checks a spec against one sample's
shape without loading any weights; ``measure`` calls a net, handing it the samples' metadata
(``sample_rate``) when it takes ``meta``.

The evaluator measures generated digits in the feature space of this small CNN (FD, KID,
precision/recall) and counts which digit each sample looks like (class coverage). It is
trained through the one finetune engine on ``mnist:train`` only — the ``ref`` and ``floor``
splits stay unseen, so its held-out accuracy is honest and the real-data floor is fair.

Light random affine jitter (shifts of a couple of pixels, small rotations and scalings) is
applied in training because generated digits are rarely as well centred as MNIST's.
"""
from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.data import LabelledImages
from genzoo.errors import DataError, OptionError
from genzoo.model import GenerativeModel
from genzoo.samples import Modality

DEFAULT_CONFIG: dict[str, Any] = {
    "image_shape": [1, 28, 28],
    "channels": [32, 64, 128],
    "feature_dim": 128,
    "num_classes": 10,
    "dropout": 0.3,
    "label_smoothing": 0.05,
    # Training-time jitter: pixels of shift, degrees of rotation, relative scale change.
    "augment": {"shift": 2.0, "rotate": 10.0, "scale": 0.1},
}
#: MNIST's pixel mean and std: inputs in [0, 1] are standardised inside the network.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
NOT_A_SAMPLER = "mnist-features is a feature network; it does not sample"


class FeatureVectors(Modality):
    """What a feature network outputs, for its own model card only: (n, D) vectors, the
    Hub's ``feature-extraction`` task. Not registered: there are no samples of it."""

    name = "features"
    layout = ("n", "D")
    plural = "feature vectors"
    pipeline_tags = {"": "feature-extraction"}
    usage = ("from genzoo.eval.features import feature_net\n"
             "feats, probs = feature_net(\"mnist\")(images)")


class MnistClassifier(GenerativeModel):
    """A three-stage CNN digit classifier whose penultimate layer is the evaluator's feature
    space. ``features`` gives those activations, ``predict`` the class probabilities."""

    arch = "mnist-convnet"
    family = "features"
    modality = "features"
    uses_ema = False
    train_defaults = {"batch_size": 128, "lr": 3e-3, "warmup": 50, "weight_decay": 5e-4,
                      "grad_clip": 2.0, "ema_decay": 0.0, "betas": (0.9, 0.99)}
    sample_defaults: dict[str, Any] = {}

    def __init__(self, config: dict[str, Any] | None = None):
        config = {**DEFAULT_CONFIG, **(config or {})}
        super().__init__(config)
        c1, c2, c3 = config["channels"]
        in_ch = config["image_shape"][0]

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        # 28 -> 14 -> 7 -> 3: cheap enough to train on one CPU thread in a few minutes.
        self.body = nn.Sequential(*block(in_ch, c1), nn.MaxPool2d(2),
                                  *block(c1, c2), nn.MaxPool2d(2),
                                  *block(c2, c3), nn.AdaptiveAvgPool2d(3), nn.Flatten())
        # The features are this layer's pre-activations: every unit varies (none is clamped
        # at zero by a ReLU), which suits the Gaussian fit of the Fréchet distance.
        self.penultimate = nn.Linear(c3 * 9, config["feature_dim"])
        self.dropout = nn.Dropout(config["dropout"])
        self.head = nn.Linear(config["feature_dim"], config["num_classes"])

    # ---- the network --------------------------------------------------------------------
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, feature_dim), before the ReLU, of images in [0, 1]."""
        x = (images.to(self.device, torch.float32) - MNIST_MEAN) / MNIST_STD
        return self.penultimate(self.body(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes)."""
        return self.classify(self.embed(images))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from penultimate features."""
        return self.head(self.dropout(F.relu(features)))

    # ---- what the evaluator calls -------------------------------------------------------
    def features(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Penultimate features (N, D), float32 on the CPU, of (N, 1, 28, 28) images in [0, 1]."""
        return self._batched(images, batch_size, self.embed)

    def predict(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Class probabilities (N, 10), float32 on the CPU, of images in [0, 1]."""
        return self._batched(images, batch_size, lambda x: self(x).softmax(-1))

    def features_and_probs(self, images: torch.Tensor, batch_size: int = 500):
        """``(features(images), predict(images))`` in one pass over the network."""
        def both(x):
            f = self.embed(x)
            return torch.cat([f, self.classify(f).softmax(-1)], dim=1)
        out = self._batched(images, batch_size, both)
        d = self.config["feature_dim"]
        return out[:, :d].contiguous(), out[:, d:].contiguous()

    def _batched(self, images: torch.Tensor, batch_size: int, fn) -> torch.Tensor:
        shape = tuple(self.config["image_shape"])
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != shape:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise DataError(f"the MNIST feature network takes (N, {', '.join(map(str, shape))}) "
                            f"images in [0, 1], got {got}")
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                parts = [fn(images[i:i + batch_size]).float().cpu()
                         for i in range(0, len(images), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(parts) if parts else torch.zeros(0, self.config["feature_dim"])

    # ---- the GenerativeModel contract ---------------------------------------------------
    def generate(self, generators, **options):
        """A feature network has nothing to sample: always an OptionError."""
        raise OptionError(NOT_A_SAMPLER)

    def sample(self, *args: Any, **kwargs: Any):
        """Always an OptionError (what a feature network is), before any sampling starts."""
        raise OptionError(NOT_A_SAMPLER)

    def sample_modality(self) -> Any:
        """``FeatureVectors``: what this network gives is no registered modality (nobody
        samples it), but its saved card still asks what it makes."""
        return FeatureVectors()

    def prepare_data(self, data: Any) -> LabelledImages:
        """Labelled digits: ``"mnist"``/``"mnist:SPLIT"`` or an ``(images, labels)`` pair."""
        from genzoo.data import mnist_split
        if isinstance(data, (tuple, list)) and len(data) == 2:
            return LabelledImages(torch.as_tensor(data[0]).float(), torch.as_tensor(data[1]),
                                  "tensors")
        spec = os.fspath(data) if isinstance(data, (str, os.PathLike)) else None
        if spec is None or not (spec == "mnist" or spec.startswith("mnist:")):
            raise DataError("the MNIST classifier trains on labelled digits: use mnist:train or "
                            "pass (images, labels) tensors")
        images, labels = mnist_split(spec.partition(":")[2] or "train")
        return LabelledImages(images, labels, spec)

    def training_loss(self, batch) -> torch.Tensor:
        """Label-smoothed cross-entropy on randomly jittered digits."""
        images, labels = batch
        logits = self(self.jitter(images))
        return F.cross_entropy(logits.float(), labels,
                               label_smoothing=float(self.config.get("label_smoothing", 0.0)))

    def jitter(self, images: torch.Tensor) -> torch.Tensor:
        """A random small affine warp per image (shift, rotation, scale) from torch's RNG."""
        aug = self.config.get("augment") or {}
        n, _, h, _ = images.shape
        dev = images.device

        def uniform(scale):
            return (torch.rand(n, device=dev) * 2 - 1) * scale
        angle = uniform(math.radians(aug.get("rotate", 0.0)))
        scale = 1 + uniform(aug.get("scale", 0.0))
        shift = float(aug.get("shift", 0.0)) * 2 / h  # pixels -> normalised coordinates
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, uniform(shift)], 1),
                             torch.stack([sin, cos, uniform(shift)], 1)], 1)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Top-1 accuracy on labelled images."""
        return float((self.predict(images).argmax(1) == labels.cpu()).float().mean())


#: The digests of the bundled feature-network weights: a catalog file beside them that is not
#: part of the model registry (``genzoo list`` does not show it).
FEATURES_CATALOG = Path(__file__).resolve().parent / "weights" / "features.yaml"


def load_mnist_features(device: str | torch.device = "cpu") -> MnistClassifier:
    """The bundled ``mnist-features`` classifier, its files verified against the sha256
    digests in ``FEATURES_CATALOG``.

    Loaded with ``MnistClassifier.from_pretrained`` directly: the classifier is trained with
    the engine like a model, but it is not registered as an architecture."""
    from genzoo.errors import WeightsError
    from genzoo.catalog.hub import NOT_BUILT, fetch, not_built
    from genzoo.catalog.registry import load_catalog
    [card] = [c for c in load_catalog(FEATURES_CATALOG) if c.name == "mnist-features"]
    if not_built(card.source, card.files):
        raise WeightsError(f"mnist-features: {NOT_BUILT}; build it with "
                           "`python recipes/mnist_features.py train` then `... bundle`")
    folder = fetch(card.source, card.files, name=card.name)
    model = MnistClassifier.from_pretrained(folder, device=device, dtype="fp32")
    model.name_or_path = card.name
    model.folder = folder
    return model.eval()


# ---- feature networks the evaluator can measure in ----------------------------------------
class FeatureNet:
    """A feature extractor for evaluation: ``net(batch) -> (features, probs or None)``.

    ``batch`` is a tensor of samples in the model's modality's layout (images (N, C, H, W)
    in [0, 1], audio (N, channels, T) in [-1, 1]). A net whose ``__call__`` takes a ``meta``
    keyword is called ``net(batch, meta=...)`` with the metadata the modality names (audio:
    ``{"sample_rate": 8000}``; images: ``{}``); one without it is called as before.
    ``name`` is what the user asked for, ``key`` identifies the exact weights (reference
    statistics are cached per key), ``input_shape`` is the sample shape it requires (None when
    it takes any, e.g. resizing images itself)."""

    name: str = ""
    key: str = ""
    input_shape: tuple[int, ...] | None = None

    def __call__(self, images: torch.Tensor):
        """(features (N, D), class probabilities (N, K) or None) of a batch."""
        raise NotImplementedError


def takes_keyword(fn: Any, name: str) -> bool:
    """Whether ``fn`` accepts the keyword ``name`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: do not guess
        return False
    return any((p.name == name and p.kind is not p.POSITIONAL_ONLY) or p.kind is p.VAR_KEYWORD
               for p in params)


def measure(net: Any, batch: torch.Tensor, meta: dict[str, Any] | None = None):
    """``net``'s ``(features, probs)`` of ``batch``, handing it the samples' metadata when it
    asks for it (a ``meta`` keyword): nets written before metadata existed keep working."""
    if takes_keyword(net, "meta"):
        return net(batch, meta=dict(meta or {}))
    return net(batch)


class MnistFeatureNet(FeatureNet):
    """The bundled ``mnist-features`` classifier: 128-d penultimate features and digit classes."""

    input_shape = (1, 28, 28)

    def __init__(self, device="cpu"):
        from genzoo.catalog.integrity import sha256_file
        from genzoo.model import WEIGHTS_NAME
        self.model = load_mnist_features(device)
        self.name = "mnist"
        self.key = "mnist-convnet:" + sha256_file(self.model.folder / WEIGHTS_NAME)

    def __call__(self, images):
        return self.model.features_and_probs(images)


class TimmFeatureNet(FeatureNet):
    """A timm image model's pooled pre-logits features (``timm:NAME[?pretrained=false&size=S]``).

    Pretrained weights are read only from the Hugging Face cache (never downloaded here, never
    from a pickle file). Grey images are repeated to 3 channels and resized to ``size``."""

    def __init__(self, spec: str, device="cpu"):
        import timm
        name, options = _parse_spec(spec)
        pretrained = options.pop("pretrained", "true").lower() not in ("0", "false", "no")
        size = options.pop("size", None)
        if size is not None and not (size.isdigit() and int(size) >= 8):
            raise OptionError(f"feature {spec!r}: size must be a whole number of pixels >= 8")
        if options:
            raise OptionError(f"unknown option(s) {', '.join(options)} in feature {spec!r}; "
                              "allowed: pretrained, size")
        if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
            raise OptionError(f"unknown timm model {name!r} in feature {spec!r}; see "
                              "timm.list_models()")
        overlay = {}
        key = f"timm:{name}:random-init-seed0"
        if pretrained:
            path = _cached_timm_weights(name, spec)
            overlay = {"pretrained_cfg_overlay": {"file": path, "source": ""}}  # that file only
            key = f"timm:{name}:{os.path.basename(os.path.realpath(path))}"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # a random-init network is the same network every time
            net = timm.create_model(name, pretrained=pretrained, num_classes=0, **overlay)
        cfg = net.pretrained_cfg
        self.size = int(size or cfg.get("input_size", (3, 224, 224))[-1])
        self.mean = torch.tensor(cfg.get("mean", (0.5,) * 3)).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.5,) * 3)).view(1, 3, 1, 1)
        self.net = net.eval().to(device)
        self.name, self.key = spec, f"{key}:size={self.size}"

    def __call__(self, images, batch_size: int = 64):
        dev = next(self.net.parameters()).device
        parts = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                x = images[i:i + batch_size].float()
                x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                  align_corners=False, antialias=True)
                x = ((x - self.mean) / self.std).to(dev)
                parts.append(self.net(x).float().flatten(1).cpu())
        return torch.cat(parts), None


def _parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``timm:NAME?a=1&b=2`` -> ("NAME", {"a": "1", "b": "2"})."""
    body = spec.split(":", 1)[1]
    name, _, query = body.partition("?")
    options = {}
    for part in filter(None, query.split("&")):
        k, eq, v = part.partition("=")
        if not eq:
            raise OptionError(f"feature {spec!r}: options look like ?pretrained=false&size=64")
        options[k.strip()] = v.strip()
    if not name:
        raise OptionError(f"feature {spec!r}: name a timm model, e.g. timm:inception_v3")
    return name, options


def _cached_timm_weights(name: str, spec: str) -> str:
    """The cached safetensors of a timm model's default pretrained tag, or a one-line error."""
    from timm.models import get_pretrained_cfg
    cfg = get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    path = None
    if repo:
        from huggingface_hub import try_to_load_from_cache

        from genzoo.catalog.hub import hub_cache_dir  # the cache as the environment names it now
        found = try_to_load_from_cache(repo, "model.safetensors", cache_dir=str(hub_cache_dir()))
        path = found if isinstance(found, str) else None
    if path is None:
        raise OptionError(f"the pretrained weights of timm model {name!r} are not in the Hugging "
                          f"Face cache; download them once online (timm.create_model({name!r}, "
                          f"pretrained=True)) or use {spec.split('?')[0]}?pretrained=false")
    return path


def _registered(spec: Any) -> dict[str, Any]:
    """The registered feature nets, or an OptionError for a spec that is none of them."""
    from genzoo.plugins.manager import feature_nets
    nets = feature_nets()
    if isinstance(spec, str) and (spec in nets or spec.startswith("timm:")):
        return nets
    names = ", ".join(f"'{n}'" for n in sorted(nets)) or "none installed"
    raise OptionError(f"unknown feature network {spec!r}: use a registered one ({names}; "
                      "see `genzoo plugins`) or 'timm:NAME' (e.g. timm:inception_v3)")


def check_feature(spec: str, shape: tuple | None) -> None:
    """Refuse, before anything is loaded, a feature spec that is unknown or whose net takes
    another sample shape than ``shape`` (one sample's, e.g. a model's (C, H, W); None: check
    the name only). No weights are read."""
    nets = _registered(spec)
    if shape is None:
        return
    info = nets.get(spec)
    others = ", ".join(sorted(nets)) or "none installed"
    if info is not None and info.input_shape is not None and \
            tuple(info.input_shape) != tuple(shape):
        hint = "e.g. timm:inception_v3" if len(shape) == 3 else f"registered: {others}"
        raise OptionError(f"feature network {spec!r} takes images of shape "
                          f"{list(info.input_shape)}, but the model makes {list(shape)}; use "
                          f"a feature net for this data ({hint})")
    if info is None and len(shape) != 3:  # timm:NAME measures (C, H, W) images only
        raise OptionError(f"feature network {spec!r} measures images (C, H, W), but the model "
                          f"makes samples shaped {list(shape)}; use a feature net for this "
                          f"data (registered: {others})")


def feature_net(spec: str = "mnist", device="cpu") -> FeatureNet:
    """The feature network named by ``spec``: a registered name (``"mnist"``, or one a
    plugin adds with ``genzoo_feature_nets``) or ``"timm:NAME[?options]"``."""
    nets = _registered(spec)
    if spec in nets:
        from genzoo.plugins.manager import get_manager
        net = get_manager().load_feature_net(spec)(device=device)
        if not callable(net) or not isinstance(getattr(net, "key", None), str) or not net.key:
            raise OptionError(f"feature network {spec!r} ({nets[spec].target}) must build a "
                              "callable with a non-empty str `key` (see "
                              "genzoo.eval.features.FeatureNet)")
        net.name = getattr(net, "name", "") or spec
        return net
    try:
        import timm  # noqa: F401 - only evaluation with timm features needs it
    except ImportError as e:
        raise OptionError("timm feature networks need timm: pip install 'genzoo[eval]'") from e
    return TimmFeatureNet(spec, device)
