"""The plugin author's conformance kit: checks an architecture against the genzoo contract.

Three ways to run it, all giving the same tests (registration without heavy imports, the
save/load round trip with pickle forbidden, sample shape/range/dtype, per-sample seeds, option
errors and values, config that drives the model, finetuning and what the trained model must
show, devices, bundled cards)::

    # 1. a test class (works everywhere; what `genzoo new-plugin` writes)
    from genzoo.testing import Conformance

    class TestToyConformance(Conformance):
        arch = "toy-mlp"
        config = {"image_shape": [1, 8, 8], "hidden": 32}   # small and fast

    # 2. module variables (needs this module loaded as a pytest plugin)
    genzoo_arch = "toy-mlp"
    genzoo_config = {"image_shape": [1, 8, 8]}
    genzoo_data = None            # a tensor, a path, or a callable (tmp_path) -> data

    # 3. the command line:  pytest --genzoo-arch toy-mlp --genzoo-config '{"hidden": 32}'

The architecture is found through the installed entry points (``pip install -e .`` first).
pytest loads this module in every run once genzoo is installed, so importing it is cheap and
never imports torch; the checks themselves live in ``genzoo.kit.conformance``.
"""
from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Conformance", "conformance_tests"]

_SUITE_NAME = "TestGenzooConformance"


class Conformance:
    """Subclass as ``TestSomething`` and set ``arch`` (and a small ``config``).

    Class attributes an author may set:

    - ``arch``: the architecture name to check (required);
    - ``config``: the config dict the model is built from (keep it tiny: tests stay fast);
    - ``data``: training data for the finetune check (a tensor, a path, or a callable taking
      ``tmp_path`` or nothing); default: 16 smooth synthetic samples shaped like the
      model's (images, waveforms ...) in its modality's range, or a short text file;
    - ``finetune_steps`` / ``finetune_options``: steps and ``finetune`` keywords (lr, ...);
    - ``finetune_stages``: the optimizer stages whose loss must fall (default: all of them;
      a GAN may name only its discriminator);
    - ``seed_atol``: tolerance when comparing samples drawn in different batch sizes;
    - ``merged_batches``: how samples drawn in different batch sizes compare: ``"close"``
      (default: images within ``seed_atol``, texts equal), ``"exact"``, or ``"differ"`` for
      discrete outputs whose argmax may flip after a 1e-6 difference in a merged batch (the
      kit then draws one sample per batch on both sides);
    - ``frozen_parameters``: names or ``fnmatch`` patterns of parameters that deliberately
      do not train although they require a gradient (``requires_grad=False`` needs none);
    - ``toward_data_steps``: finetune steps on the kit's probe data before
      ``test_finetune_moves_samples_toward_data`` compares samples with it (default 100;
      raise it for a family that learns slowly, 0 skips the check, say why);
    - ``config_inert``: config keys (dotted for nested ones) exempt from
      ``test_config_drives_the_model``, e.g. ``("note",)`` for a free-text field; say why in a
      comment;
    - ``check_cards``: also load the bundled/local model cards of this arch.

    A model that samples only given some conditions declares them itself
    (``GenerativeModel.required_conditions``, e.g. an autoencoder's ``("init",)``): every
    check then samples with the kit's values for them (images of the model's shape, the probe
    images for ``test_finetune_moves_samples_toward_data``), interpolates from a first value
    to a second, and accepts samples that do not change with the seed.

    The checks (one test each): ``test_registers_without_torch`` (no heavy module such as
    torch or numpy imported at registration), ``test_plugin_is_healthy``,
    ``test_class_contract``, ``test_save_load_round_trip`` (no pickle by name or content; load
    calls no pickle), ``test_sample_shape_range_dtype``, ``test_writers_round_trip``,
    ``test_per_sample_seeds``,
    ``test_bad_options_raise_option_error``, ``test_option_values_raise_option_error``,
    ``test_config_drives_the_model``, ``test_cpu_fp32``, ``test_cuda_bf16``,
    ``test_bundled_cards_load``; and on one short finetune shared by the class:
    ``test_finetune_lowers_loss``, ``test_trained_output_in_range``,
    ``test_trained_round_trip``, ``test_finetune_updates_staged_parameters``,
    ``test_finetune_trains_every_parameter``, ``test_sampling_options_change_samples`` and
    ``test_loss_responds_to_data``; and on a second finetune, on the kit's probe data,
    ``test_finetune_moves_samples_toward_data``.
    """

    arch: str = ""
    config: dict[str, Any] = {}
    data: Any = None
    finetune_steps: int = 30
    finetune_options: dict[str, Any] = {}
    finetune_stages: list[str] | None = None
    seed_atol: float = 1e-5
    merged_batches: str = "close"
    frozen_parameters: tuple[str, ...] = ()
    toward_data_steps: int = 100
    config_inert: tuple[str, ...] = ()
    check_cards: bool = True

    # ---- helpers -------------------------------------------------------------------------
    def make_model(self):
        """A fresh model of ``arch`` built from ``config`` on the CPU in fp32 (seeded)."""
        from genzoo.kit import conformance as c
        return c.make_model(self._arch(), dict(type(self).config or {}))

    def make_data(self, model, tmp_path: Path):
        """The training data for the finetune check (see the class docstring)."""
        from genzoo.kit import conformance as c
        data = type(self).data  # class access: a plain function stays unbound
        if data is None:
            return c.default_data(model, tmp_path)
        if callable(data) and not hasattr(data, "shape"):
            return data(tmp_path) if _takes_argument(data) else data()
        return data

    def _arch(self) -> str:
        if not self.arch:
            pytest.fail(f"{type(self).__name__}: set the class attribute arch = 'your-arch'")
        return self.arch

    # ---- the checks ----------------------------------------------------------------------
    def test_registers_without_torch(self):
        """The arch is registered by an installed plugin whose entry-point module (and hooks)
        import no torch and not the architecture's own module."""
        from genzoo.kit import conformance as c
        c.check_registration(self._arch())

    def test_plugin_is_healthy(self):
        """The plugin loads without recorded errors (its hooks and cards are valid)."""
        from genzoo.kit import conformance as c
        c.check_plugin_health(self._arch())

    def test_class_contract(self):
        """Class attributes: arch and family as registered, modality, defaults well-formed."""
        from genzoo.kit import conformance as c
        c.check_class_contract(self._arch())

    def test_save_load_round_trip(self, tmp_path, monkeypatch):
        """save_pretrained writes config.json + model.safetensors + README.md (front matter
        ``library_name: genzoo``, no pickle files); genzoo.load reads them back exactly."""
        from genzoo.kit import conformance as c
        c.check_save_load(self.make_model(), tmp_path / "model", monkeypatch)

    def test_sample_shape_range_dtype(self):
        """generate() returns what the model's modality holds, checked by the modality
        (images (n, C, H, W) in [0, 1], audio (n, channels, T) in [-1, 1] with its
        sample_rate, n strings ...); sample() wraps it."""
        from genzoo.kit import conformance as c
        c.check_sample_output(self.make_model())

    def test_writers_round_trip(self, tmp_path):
        """Each writer the modality declares (.png, .wav, .npz, .txt ...) and a folder write
        the samples: the files exist and are not empty; an .npz reads back equal."""
        from genzoo.kit import writing as w
        w.check_writers(self.make_model(), tmp_path)

    def test_per_sample_seeds(self):
        """Sample i depends only on (seed, i): prefixes and batch sizes do not change it."""
        from genzoo.kit import conformance as c
        c.check_seeds(self.make_model(), atol=self.seed_atol, merged=self.merged_batches)

    # Class-scoped fixtures are classmethods: pytest runs them once per class, on no
    # particular instance (as instance methods they are deprecated, PytestRemovedIn10Warning).
    @pytest.fixture(scope="class")
    @classmethod
    def genzoo_finetune_run(cls, tmp_path_factory):
        """One short finetune of a fresh model per class, shared by the training checks."""
        from genzoo.kit import train as t
        suite = cls()
        model = suite.make_model()
        tmp = tmp_path_factory.mktemp("genzoo-finetune")
        return t.run_finetune(model, suite.make_data(model, tmp), tmp / "finetuned",
                              steps=cls.finetune_steps, options=dict(cls.finetune_options),
                              stages=cls.finetune_stages)

    @pytest.fixture(scope="class")
    @classmethod
    def genzoo_probe_run(cls, tmp_path_factory):
        """A fresh model sampled, finetuned on the kit's probe data and sampled again."""
        from genzoo.kit import learning as lr
        suite = cls()
        model = suite.make_model()
        why_not = lr.probe_applies(model)
        if why_not:
            pytest.skip(why_not)
        if not cls.toward_data_steps:
            pytest.skip("toward_data_steps = 0")
        tmp = tmp_path_factory.mktemp("genzoo-probe")
        return lr.run_probe(model, tmp / "probe", steps=cls.toward_data_steps,
                            options=dict(cls.finetune_options))

    def test_finetune_lowers_loss(self, genzoo_finetune_run):
        """A few steps of genzoo.engine.train.finetune on a tiny batch lower the training loss, and
        the saved folder loads."""
        from genzoo.kit import train as t
        t.check_loss_lowered(genzoo_finetune_run)

    def test_trained_output_in_range(self, genzoo_finetune_run, monkeypatch):
        """After finetuning, and after reloading the result, generate()'s raw output is in
        its modality's range (sample() clamps, so only generate shows it)."""
        from genzoo.kit import train as t
        t.check_trained_output(genzoo_finetune_run, monkeypatch)

    def test_trained_round_trip(self, genzoo_finetune_run, tmp_path, monkeypatch):
        """The finetuned model saves and loads back exactly (every trained parameter kept)."""
        from genzoo.kit import train as t
        t.check_trained_round_trip(genzoo_finetune_run, tmp_path / "trained", monkeypatch)

    def test_finetune_updates_staged_parameters(self, genzoo_finetune_run):
        """Every parameter that train_stages() names changed during the finetune."""
        from genzoo.kit import train as t
        t.check_staged_parameters_trained(genzoo_finetune_run)

    def test_finetune_trains_every_parameter(self, genzoo_finetune_run):
        """Every parameter that requires a gradient changed (each is in some stage and the
        loss reaches it), except the ``frozen_parameters``."""
        from genzoo.kit import train as t
        t.check_every_parameter_trained(genzoo_finetune_run, tuple(self.frozen_parameters))

    def test_sampling_options_change_samples(self, genzoo_finetune_run):
        """On the finetuned model, every declared sampling option, varied within its range,
        changes the samples for some seed, unless declared ``affects_output=False``."""
        from genzoo.kit import config as cc
        run = genzoo_finetune_run
        cc.check_sampling_options_act(run.model, labelled=run.notes.get("labelled"))

    def test_finetune_moves_samples_toward_data(self, genzoo_probe_run):
        """Trained on the kit's probe data, samples move toward it and keep its range and
        sense (mean intensity within 0.1, mean images positively correlated)."""
        from genzoo.kit import learning as lr
        lr.check_moves_toward_data(genzoo_probe_run)

    def test_loss_responds_to_data(self, genzoo_finetune_run):
        """The loss on the real batch differs from the loss on noise at the same seeds."""
        from genzoo.kit import train as t
        t.check_loss_uses_data(genzoo_finetune_run)

    def test_cpu_fp32(self):
        """device="cpu", dtype="fp32": parameters, autocast and samples are plain float32."""
        from genzoo.kit import devices as d
        d.check_cpu_fp32(self.make_model())

    def test_cuda_bf16(self, tmp_path):
        """On CUDA (skipped without one): bf16 sampling and two finetune steps stay finite."""
        from genzoo.kit import devices as d
        d.require_cuda()
        model = self.make_model()
        d.check_cuda_bf16(model, self.make_data(model, tmp_path), tmp_path / "cuda")

    def test_bad_options_raise_option_error(self):
        """An unknown sampling option or a bad n raises OptionError with a one-line message."""
        from genzoo.kit import conformance as c
        c.check_bad_options(self.make_model())

    def test_option_values_raise_option_error(self):
        """Values the options schema rules out (wrong type, NaN, out of range, not a choice)
        raise OptionError; hostile values (-1e9, NaN) raise OptionError or nothing."""
        from genzoo.kit import config as cc
        cc.check_option_values(self.make_model())

    def test_config_drives_the_model(self, tmp_path):
        """Changing any int, float, bool or int-list config value changes the built model
        (tensors, repr, training losses or samples), or is refused; ``config_inert`` lists
        exemptions."""
        from genzoo.kit import config as cc
        model = self.make_model()
        cc.check_config_drives_model(self._arch(), dict(type(self).config or {}),
                                     inert=tuple(self.config_inert),
                                     data=self.make_data(model, tmp_path))

    def test_declared_conditions(self):
        """Each declared condition (label, init, mask ...) and interpolation works and keeps
        per-sample seeds: sample i with per-sample values is what it is alone."""
        from genzoo.kit import conditions as cc
        cc.check_conditions(self.make_model())

    def test_bundled_cards_load(self):
        """Every card of this arch whose weights are bundled or local loads and samples."""
        from genzoo.kit import conformance as c
        if not self.check_cards:
            pytest.skip("check_cards = False")
        c.check_cards(self._arch())


def _takes_argument(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)


def conformance_tests(arch: str, config: dict[str, Any] | None = None, data: Any = None,
                      **attributes: Any) -> dict[str, type]:
    """``{"TestGenzooConformance": <Conformance subclass>}`` for ``globals().update(...)``.

    ``attributes`` set the other class attributes (``finetune_steps=10``, ...)."""
    caller = sys._getframe(1).f_globals.get("__name__", __name__)
    return {_SUITE_NAME: _suite_class(arch, config, data, caller, **attributes)}


def _suite_class(arch, config, data, module_name, **attributes) -> type:
    unknown = set(attributes) - set(vars(Conformance))
    if unknown:
        raise TypeError(f"unknown Conformance attribute(s): {', '.join(sorted(unknown))}")
    body = {"arch": arch, "config": dict(config or {}), "__module__": module_name, **attributes}
    if data is not None:
        body["data"] = staticmethod(data) if inspect.isfunction(data) else data
    return type(_SUITE_NAME, (Conformance,), body)


# ---- the pytest plugin ------------------------------------------------------------------
_CONFIG_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser) -> None:
    """``--genzoo-arch NAME`` runs the conformance suite for an installed architecture."""
    group = parser.getgroup("genzoo", "genzoo plugin conformance")
    group.addoption("--genzoo-arch", default=None, metavar="NAME",
                    help="Run the genzoo conformance suite for architecture NAME.")
    group.addoption("--genzoo-config", default=None, metavar="JSON",
                    help="Config for --genzoo-arch: a JSON object or @file.json (default: {}).")
    group.addoption("--genzoo-data", default=None, metavar="SPEC",
                    help="Training data for --genzoo-arch's finetune check (a path or 'mnist').")


def pytest_configure(config) -> None:
    """With ``--genzoo-arch``, collect this file too (it then yields the suite) beside the
    test paths given on the command line or by the project's ``testpaths``; with neither,
    only this file (not every test under the current directory)."""
    if not config.getoption("genzoo_arch", None):
        return
    config.stash[_CONFIG_KEY] = _cli_config(config.getoption("genzoo_config"))  # fail early
    here = str(Path(__file__).resolve())
    chosen = config.args_source in (pytest.Config.ArgsSource.ARGS,
                                    pytest.Config.ArgsSource.TESTPATHS)
    config.args[:] = [*config.args, here] if chosen else [here]


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """Turn a module's ``genzoo_arch = "..."`` (or, in this file, ``--genzoo-arch``) into the
    conformance class. Everything else is left to pytest."""
    if name == "genzoo_arch" and isinstance(obj, str) and isinstance(collector, pytest.Module):
        module = collector.obj
        cls = _suite_class(obj, getattr(module, "genzoo_config", None),
                           getattr(module, "genzoo_data", None), module.__name__)
        return _collect_class(collector, cls)
    if name in ("Conformance", _SUITE_NAME) and isinstance(collector, pytest.Module) \
            and _same_file(collector.path, __file__):
        arch = collector.config.getoption("genzoo_arch", None)
        if name == _SUITE_NAME:
            return []  # left on this module by an earlier session in this process; not ours
        if arch:
            cls = _suite_class(arch, collector.config.stash.get(_CONFIG_KEY, {}),
                               collector.config.getoption("genzoo_data"), collector.obj.__name__)
            return _collect_class(collector, cls)
    return None


def _collect_class(collector, cls: type):
    """The suite as a pytest Class node; the class is also set on the module because pytest
    finds a node's object by its name there (``--lf`` and node ids keep working)."""
    setattr(collector.obj, cls.__name__, cls)
    return pytest.Class.from_parent(collector, name=cls.__name__, obj=cls)


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _cli_config(text: str | None) -> dict[str, Any]:
    """``--genzoo-config``: inline JSON or ``@path`` to a JSON file."""
    if not text:
        return {}
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        value = json.loads(raw)
    except (OSError, ValueError) as e:
        raise pytest.UsageError(f"--genzoo-config: not a JSON object or @file.json ({e})") from e
    if not isinstance(value, dict):
        raise pytest.UsageError("--genzoo-config must be a JSON object, e.g. '{\"hidden\": 32}'")
    return value
