"""The checks behind ``genzoo.testing.Conformance``: plain functions that raise AssertionError
(or call ``pytest.skip``) with a message saying what the plugin must change.

Imported only when a conformance test runs, so importing torch here is fine.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from genzoo.kit.learning import required_values, sample_shape, with_labels
from genzoo.plugins import manager as plugins
from genzoo.errors import GenzooError, OptionError
from genzoo.model import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, GenerativeModel
from genzoo.samples import Samples
from genzoo.seeding import sample_generators
from genzoo.engine.train import DEFAULTS as ENGINE_DEFAULTS

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: Modules a plugin must not import at registration (its entry-point module and hooks run for
#: every `genzoo list`); each costs from tens of milliseconds to seconds.
HEAVY_MODULES = ("torch", "numpy", "safetensors", "transformers", "diffusers", "timm", "PIL",
                 "scipy", "pandas", "sklearn", "cv2", "matplotlib", "tensorflow", "jax",
                 "accelerate", "tokenizers", "torchvision")
#: The keys the finetune engine understands in ``train_defaults``.
TRAIN_KEYS = frozenset(ENGINE_DEFAULTS)


# ---- building ---------------------------------------------------------------------------
def arch_class(arch: str) -> type[GenerativeModel]:
    """The class of ``arch`` through the installed plugins; a clear failure when missing."""
    try:
        return plugins.load_arch_class(arch)
    except GenzooError as e:
        pytest.fail(f"{e} — the kit checks installed plugins: run `pip install -e .` in your "
                    "plugin's folder first", pytrace=False)


def make_model(arch: str, config: dict[str, Any]) -> GenerativeModel:
    """A freshly initialised model (seeded, so runs are repeatable) on CPU in fp32."""
    cls = arch_class(arch)
    torch.manual_seed(0)
    model = cls.from_config(config)
    return model.to_device("cpu", "fp32")


def default_data(model: GenerativeModel, tmp_path: Path):
    """The finetune checks' data, shaped by the model's modality: for a tensor modality 16
    smooth synthetic samples shaped like the model's own (``sample_shape``) in the
    modality's ``value_range`` (labelled, classes 0-2, where the model takes ``label``: a
    class-conditional family then trains its labels); for a list modality a short text file.
    A family whose ``prepare_data`` reads neither sets the Conformance class's ``data``."""
    spec = model.sample_modality()
    if spec.holds == "list":
        path = Path(tmp_path) / "kit-text.txt"
        path.write_text("the quick brown fox jumps over the lazy dog.\n" * 60)
        return str(path)
    shape = sample_shape(model)
    g = torch.Generator().manual_seed(1234)
    if len(shape) >= 3:  # a field (C, H, W ...): gaussian blobs over its last two axes
        h, w = shape[-2:]
        centre = torch.rand(16, 2, generator=g) * 0.6 + 0.2
        ys = torch.linspace(0, 1, h).view(1, h, 1)
        xs = torch.linspace(0, 1, w).view(1, 1, w)
        unit = torch.exp(-((ys - centre[:, :1, None]) ** 2 + (xs - centre[:, 1:, None]) ** 2)
                         / 0.02).view(16, *[1] * (len(shape) - 2), h, w)
    else:  # a signal (channels, T) or a vector: a few cycles of a sine, random phase
        t = torch.linspace(0, 1, shape[-1]).view(1, -1)
        phase = torch.rand(16, 1, generator=g) * 2 * math.pi
        wave = 0.5 + 0.4 * torch.sin(2 * math.pi * 4 * t + phase)
        unit = wave.view(16, *[1] * (len(shape) - 1), -1)
    lo, hi = spec.value_range or (0.0, 1.0)
    return with_labels(model, (lo + (hi - lo) * unit.expand(16, *shape)).contiguous())


# ---- registration -----------------------------------------------------------------------
_PROBE = r"""
import json, sys
from genzoo.plugins.manager import PluginManager
heavy = json.loads(sys.argv[3])
before = {k for k in heavy if k in sys.modules}  # what genzoo itself imported is not blamed
m = PluginManager(allow=[sys.argv[1]], strict=False)
archs = m.architectures()
m.model_cards()
info = archs.get(sys.argv[2])
target = info.target.split(":")[0] if info else None
print(json.dumps({"found": info is not None,
                  "target_imported": target in sys.modules if target else False,
                  "heavy": sorted(k for k in heavy if k in sys.modules and k not in before),
                  "errors": [p.error for p in m.infos.values() if p.error]}))
"""


def check_registration(arch: str) -> None:
    """The arch comes from an installed entry point; loading that plugin and calling its
    hooks (in a fresh interpreter) imports no heavy module (``HEAVY_MODULES``: torch, numpy,
    safetensors, transformers, ...) and not the architecture's module."""
    archs = plugins.architectures()
    if arch not in archs:
        known = ", ".join(sorted(archs)) or "none"
        pytest.fail(f"architecture {arch!r} is not registered by any installed plugin "
                    f"(installed: {known}); declare it in genzoo_architectures() and "
                    "`pip install -e .` the plugin", pytrace=False)
    info = archs[arch]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("GENZOO_STRICT_PLUGINS", None)
    proc = subprocess.run([sys.executable, "-c", _PROBE, info.plugin, arch,
                           json.dumps(HEAVY_MODULES)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"probing plugin {info.plugin!r} failed:\n{proc.stderr[-2000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["found"], f"plugin {info.plugin!r} alone does not register {arch!r}: {report}"
    assert not report["errors"], f"plugin {info.plugin!r} recorded errors: {report['errors']}"
    assert not report["heavy"], (
        f"importing plugin {info.plugin!r} and calling its hooks imported "
        f"{', '.join(report['heavy'])}; keep the entry-point module and hooks light: import "
        f"heavy modules only in the architecture's module, named by import string ({info.target})")
    assert not report["target_imported"], (
        f"the architecture module {info.target.split(':')[0]} was imported at registration; "
        "it must be imported only when a model loads")


def check_plugin_health(arch: str) -> None:
    """The providing plugin has status ok (no import, hook or card errors recorded)."""
    from genzoo.catalog.registry import get_registry
    archs = plugins.architectures()
    if arch not in archs:
        pytest.fail(f"architecture {arch!r} is not registered by any installed plugin",
                    pytrace=False)
    get_registry()  # builds the catalog: invalid plugin cards are recorded as plugin errors
    info = {p.name: p for p in plugins.plugins()}[archs[arch].plugin]
    assert info.status == "ok" and not info.error, \
        f"plugin {info.name!r} is {info.status}: {info.error}"


def check_class_contract(arch: str) -> None:
    """Class attributes agree with the registration and have the documented shapes."""
    cls = arch_class(arch)
    registered = plugins.architectures()[arch]
    assert cls.arch == arch, f"{cls.__name__}.arch is {cls.arch!r}, registered as {arch!r}"
    if cls.family != registered.family:
        raise AssertionError(f"{cls.__name__}.family is {cls.family!r}, registered as "
                             f"{registered.family!r}")
    check_modality_registered(cls)
    assert isinstance(cls.sample_defaults, dict) and isinstance(cls.train_defaults, dict)
    extra = set(cls.train_defaults) - TRAIN_KEYS
    assert not extra, f"train_defaults has keys the engine ignores: {sorted(extra)}; " \
                      f"allowed: {sorted(TRAIN_KEYS)}"
    assert isinstance(cls.uses_ema, bool), "uses_ema must be a bool"
    declared = {o.name if hasattr(o, "name") else o.get("name") for o in cls.sample_options}
    required = getattr(cls, "required_conditions", ())
    assert isinstance(required, tuple) and set(required) <= declared, (
        f"required_conditions {required!r} must be a tuple of declared sample_options "
        f"(declared: {sorted(declared)})")
    for name in ("generate",):
        assert getattr(cls, name) is not getattr(GenerativeModel, name), \
            f"{cls.__name__} must implement {name}()"
    own_loss = cls.training_loss is not GenerativeModel.training_loss
    own_stages = cls.train_stages is not GenerativeModel.train_stages
    assert own_loss or own_stages, f"{cls.__name__} must implement training_loss() or train_stages()"


def check_modality_registered(cls: type[GenerativeModel]) -> None:
    """The class's ``modality`` names a registered modality (first-party image, text,
    audio, or one a plugin adds through the ``genzoo_modalities`` hook)."""
    from genzoo.plugins.modalities import modality_names
    names = modality_names()
    assert cls.modality in names, (
        f"{cls.__name__}.modality is {cls.modality!r}, which no installed plugin registers "
        f"(registered: {', '.join(names)}); register it with the genzoo_modalities hook")


# ---- the on-disk format -----------------------------------------------------------------
def check_save_load(model: GenerativeModel, folder: Path, monkeypatch,
                    when: str = "on a fresh model") -> None:
    """The folder holds exactly the format's files, no pickle (by suffix or by content), and
    loads back identically through ``genzoo.load`` with pickle and ``torch.load`` forbidden."""
    import yaml
    from genzoo.api import load
    model.save_pretrained(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME):
        assert (folder / name).is_file(), f"save_pretrained did not write {name}"
    pickles = pickle_files(folder)
    assert not pickles, f"save_pretrained wrote pickle files {pickles}; use safetensors only " \
                        "(tensors) and JSON (everything else)"
    config = json.loads((folder / CONFIG_NAME).read_text())
    section = config.get("genzoo") or {}
    assert section.get("arch") == model.arch and section.get("family") == model.family, \
        f"config.json's genzoo section is {section}"
    text = (folder / CARD_NAME).read_text()
    assert text.startswith("---\n"), "README.md must start with YAML front matter (---)"
    front = yaml.safe_load(text.split("---\n", 2)[1])
    assert front.get("library_name") == "genzoo", f"README.md front matter: {front}"
    with monkeypatch.context() as mp:
        forbid_pickle(mp)
        loaded = load(str(folder), device="cpu", dtype="fp32")
    assert type(loaded) is type(model), f"genzoo.load gave {type(loaded).__name__}"
    assert _normalise(loaded.config) == _normalise(model.config), f"the config changed on reload {when}"
    mine, theirs = model.state_dict(), loaded.state_dict()
    assert mine.keys() == theirs.keys(), f"the reloaded model has different tensors {when}"
    for k in mine:
        assert torch.equal(mine[k], theirs[k]), (
            f"tensor {k} differs after the round trip {when}: save_pretrained/load must keep "
            "every parameter and buffer (does load_extra_files or from_config reset it?)")
    given = required_values(model, 2)
    _assert_same(model.sample(2, seed=0, **given), loaded.sample(2, seed=0, **given), 0.0,
                 f"after reload {when}")


def forbid_pickle(monkeypatch) -> None:
    """Make ``torch.load`` and every pickle entry point raise while ``monkeypatch`` holds."""
    def refuse(what: str):
        def no_pickle(*args, **kwargs):
            raise AssertionError(f"{what} was called while loading: only safetensors and "
                                 "JSON may be read (a pickle can run any code)")
        return no_pickle
    monkeypatch.setattr(torch, "load", refuse("torch.load"))
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse(f"pickle.{name}"))


def pickle_files(folder: Path) -> list[str]:
    """Files under ``folder`` that are pickles: by suffix, by a protocol 2-5 pickle header
    (whatever the suffix), or a zip holding a ``.pkl`` (torch.save's format)."""
    found = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        if path.suffix.lower() in PICKLE_SUFFIXES or _is_pickle_stream(path):
            found.append(str(path.relative_to(folder)))
    return found


def _is_pickle_stream(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        # a safetensors file starts with its header's length (8 bytes, little-endian), which
        # can begin 0x80 0x02..0x05; its header itself then starts with "{"
        return not (len(head) == 9 and head[8:9] == b"{")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                return any(n.endswith(".pkl") for n in z.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    return False


def _normalise(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=str)


# ---- sampling ---------------------------------------------------------------------------
def _generate(model: GenerativeModel, n: int, seed: int = 0):
    opts = model.check_options(required_values(model, n))
    opts.pop("batch_size", None)
    model.eval()
    with torch.inference_mode(), model.autocast():
        return model.generate(sample_generators(seed, n), **opts)


def check_sample_output(model: GenerativeModel) -> None:
    """``generate`` honours its modality's contract (``Modality.check``: layout, dtype,
    range, metadata; for a list modality n values), and ``sample`` returns a Samples of n
    items on the CPU, shaped as ``generate``'s output."""
    spec = model.sample_modality()
    out = _generate(model, 3)
    samples = model.sample(3, seed=0, **required_values(model, 3))
    assert len(samples) == 3, f"sample(3) returned {len(samples)} items"
    spec.check(samples)
    if spec.holds == "list":
        assert isinstance(out, list) and len(out) == 3, \
            f"generate must return a list of n {spec.plural}, got {type(out).__name__}"
        spec.check(Samples(list(out), spec.name, samples.meta))  # the values' own types
        return
    assert isinstance(out, torch.Tensor) and out.shape[0] == 3 and \
        (not spec.layout or out.ndim == len(spec.layout)), (
            f"generate must return an ({', '.join(spec.layout)}) tensor of {spec.plural}, got "
            f"{getattr(out, 'shape', type(out))}")
    assert out.dtype == torch.float32, f"in fp32 mode generate returned {out.dtype}"
    check_raw_range(out, "on a fresh model", spec)
    shape = model.config.get("image_shape")
    if shape:
        assert list(out.shape[1:]) == [int(s) for s in shape], \
            f"samples are {tuple(out.shape[1:])}, config image_shape is {shape}"
    assert samples.data.device.type == "cpu"
    assert tuple(samples.data.shape) == tuple(out.shape)


def check_raw_range(out, when: str, spec=None) -> None:
    """``generate``'s own output (before ``sample`` clamps it) is finite and in the
    modality's ``value_range`` (``spec``: the model's ``Modality``; [0, 1] when not given)."""
    if not isinstance(out, torch.Tensor):
        return  # a list modality's values have no range
    assert torch.isfinite(out).all(), f"generate returned NaN or Inf {when}"
    rng = spec.value_range if spec is not None else (0.0, 1.0)
    if rng is None:
        return
    lo, hi = float(out.min()), float(out.max())
    plural = spec.plural if spec is not None else "images"
    assert lo >= rng[0] - 1e-6 and hi <= rng[1] + 1e-6, (
        f"{plural} must lie in [{rng[0]:g}, {rng[1]:g}]; generate returned [{lo:.4g}, {hi:.4g}] "
        f"{when} (sample() clamps, so squash the output in generate, e.g. "
        f"{'tanh' if rng[0] < 0 else 'sigmoid'} or clamp)")


def _first(samples, k: int):
    """The first ``k`` of ``samples`` (any modality), with their metadata."""
    return Samples(samples.data[:k], samples.modality, samples.meta)


def _assert_same(a, b, atol: float, what: str) -> None:
    plural = a.spec().plural
    if isinstance(a.data, list):
        assert list(a.data) == list(b.data), f"{plural} differ {what}"
        return
    assert a.data.shape == b.data.shape, f"shapes differ {what}"
    diff = float((a.data - b.data).abs().max()) if a.data.numel() else 0.0
    assert diff <= atol, f"samples differ {what} (max |diff| {diff:.3g} > {atol})"


#: How samples drawn in different batch sizes may compare (``Conformance.merged_batches``):
#: equal, equal within ``seed_atol`` (texts equal), or free to differ (discrete outputs,
#: where an argmax flips after a 1e-6 difference in a merged batch's arithmetic).
MERGED_BATCHES = ("exact", "close", "differ")


def check_seeds(model: GenerativeModel, atol: float = 1e-5, merged: str = "close") -> None:
    """Per-sample seeding: the first k of sample(n, s) equal sample(k, s) whatever the batch
    size (``merged``: see ``MERGED_BATCHES``; with "differ" both are drawn one sample per
    batch); another seed, and another index, give another sample. A model with
    ``required_conditions`` gets the kit's values for them (one per sample) and may ignore the
    seed (an autoencoder's reconstruction at its posterior mode)."""
    assert merged in MERGED_BATCHES, \
        f"merged_batches is {merged!r}; use one of {', '.join(MERGED_BATCHES)}"
    one = 1 if merged == "differ" else None  # None: the model's own batch size
    given5, given3 = required_values(model, 5), required_values(model, 3)
    full = model.sample(5, seed=7, batch_size=one or 5, **given5)
    _assert_same(model.sample(5, seed=7, batch_size=one or 5, **given5), full, 0.0, "between "
                 "identical calls; draw all randomness from the generators passed to generate()")
    head = model.sample(3, seed=7, batch_size=one or 2, **given3)
    first = _first(full, 3)
    _assert_same(head, first, 0.0 if merged == "exact" else atol, "between sample(5, seed=7) "
                 f"and the first 3 of sample(3, seed=7, batch_size={one or 2}): sample i must "
                 "depend only on (seed, i)" + ("" if one else "; if merged batches may "
                 "differ (discrete outputs), set merged_batches = 'differ' on the Conformance "
                 "class"))
    other = model.sample(5, seed=8, batch_size=5, **given5)
    if isinstance(full.data, list):
        assert full.data != other.data, f"seeds 7 and 8 gave identical {full.spec().plural}"
        return
    assert getattr(model, "required_conditions", ()) or \
        not torch.equal(full.data, other.data), \
        "seeds 7 and 8 gave identical samples"
    assert not torch.equal(full.data[0], full.data[1]), \
        "samples 0 and 1 are identical: use generators[i] for sample i's randomness"


# ---- errors -----------------------------------------------------------------------------
def check_bad_options(model: GenerativeModel) -> None:
    """Unknown options and bad counts raise OptionError with one line naming the problem."""
    _expect_option_error(lambda: model.sample(1, seed=0, genzoo_no_such_option=1),
                         "sample(1, genzoo_no_such_option=1)", "genzoo_no_such_option")
    for bad in (0, -2):
        _expect_option_error(lambda: model.sample(bad), f"sample({bad})")


def _expect_option_error(call, what: str, mention: str | None = None) -> None:
    error = None
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the type is what is checked, below
        error = e
    assert error is not None, f"{what} did not raise OptionError"
    msg = str(error)
    assert isinstance(error, OptionError), \
        f"{what} raised {type(error).__name__}({msg!r}); raise genzoo.errors.OptionError"
    assert "\n" not in msg.strip(), f"{what}: the message must be one line, got {msg!r}"
    assert mention is None or mention in msg, f"{what}: the message must name {mention!r}"


# ---- cards ------------------------------------------------------------------------------
def check_cards(arch: str) -> None:
    """Cards of this arch with bundled or local weights load (verified) and sample."""
    from genzoo.catalog import hub as hub
    from genzoo.api import load
    from genzoo.catalog.registry import get_registry
    cards = [c for c in get_registry().list() if c.arch == arch]
    local = [c for c in cards if hub.parse_source(c.source).kind != "hf"
             and hub.local_folder(c.source, c.files) is not None]
    if not local:
        pytest.skip(f"no bundled or local cards for {arch!r}"
                    + (f" ({len(cards)} without local weights)" if cards else ""))
    for card in local:
        model = load(card.name, device="cpu", dtype="fp32")
        assert type(model) is arch_class(arch)
        samples = model.sample(1, seed=0, **required_values(model, 1))
        assert len(samples) == 1, f"card {card.name!r} sampled {len(samples)} items"
        assert sorted(card.capabilities) == sorted(model.capabilities), (
            f"card {card.name!r} lists capabilities {sorted(card.capabilities)} but the model "
            f"has {sorted(model.capabilities)}; `genzoo list --can` reads the card")
