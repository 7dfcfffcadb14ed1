"""The conformance kit's checks on what a model is told: sampling option values and config.

- :func:`check_option_values`: every value the options schema rules out raises
  ``genzoo.errors.OptionError`` (one line), and hostile values for unbounded numeric options
  raise nothing else;
- :func:`check_config_drives_model`: every numeric, bool or int-list config value changes the
  built model (or is validated when changed), unless the author exempts it.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Iterator

import torch

from genzoo.kit.conformance import _expect_option_error, make_model
from genzoo.errors import OptionError
from genzoo.model import GenerativeModel

NOT_A_NUMBER = "not-a-number"


# ---- option values ----------------------------------------------------------------------
def option_schema(model: GenerativeModel) -> tuple[dict[str, Any], bool]:
    """``(options, declared)``: ``model.options()`` (the schema), or, with a genzoo that has
    no schema API, options inferred from ``sample_defaults`` with no type promises."""
    if callable(getattr(model, "options", None)):
        return dict(model.options()), True
    inferred = {k: SimpleNamespace(name=k, type=_type_of(v), min=None, max=None, choices=None)
                for k, v in model.sample_defaults.items()}
    return inferred, False


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "str"}.get(type(value), "any")


def bad_values(opt, declared: bool) -> tuple[list[Any], list[Any]]:
    """``(must_fail, hostile)`` values for one option: those the schema rules out (wrong
    type, NaN, out of range, not a choice) and those it allows but that probe the code
    (-1e9, NaN for an unbounded number)."""
    kind = getattr(opt, "type", "any")
    lo, hi, choices = getattr(opt, "min", None), getattr(opt, "max", None), getattr(opt, "choices", None)
    must, hostile = [], []
    if kind in ("int", "float"):
        must.append(NOT_A_NUMBER)
        if kind == "float":
            must.append(math.nan)
        if lo is not None:
            must.append(lo - 1)
        else:
            hostile.append(-10 ** 9 if kind == "int" else -1e9)
        if hi is not None:
            must.append(hi + 1)
    elif kind == "bool":
        must.append("not-a-bool")
    if choices:
        numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
        must.append(max(choices) + 1 if numeric else "genzoo-no-such-choice")
    if not declared:  # without a schema nothing is promised: every value only probes the code
        return [], must + hostile
    return must, hostile


def check_option_values(model: GenerativeModel) -> None:
    """For every option in ``model.options()``: the values its schema rules out raise
    OptionError with a one-line message, and hostile values (-1e9, NaN) for an unbounded
    numeric option raise OptionError or nothing (never ValueError, TypeError, ...)."""
    schema, declared = option_schema(model)
    for name, opt in schema.items():
        if name == "batch_size":  # sample()'s own keyword, not an option of generate
            continue
        must, hostile = bad_values(opt, declared)
        for value in must:
            _expect_option_error(lambda: model.sample(1, seed=0, **{name: value}),
                                 f"sample(1, {name}={value!r})")
        for value in hostile:
            try:
                model.sample(1, seed=0, **{name: value})
            except OptionError as e:
                assert "\n" not in str(e).strip(), \
                    f"sample(1, {name}={value!r}): the message must be one line, got {str(e)!r}"
            except Exception as e:  # noqa: BLE001 - the type is what is checked
                raise AssertionError(
                    f"sample(1, {name}={value!r}) raised {type(e).__name__}({str(e)!r}); "
                    f"validate {name} and raise genzoo.errors.OptionError (declare min/max/"
                    "choices in sample_options and core does it for you)") from e


# ---- config -----------------------------------------------------------------------------
def config_variants(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict]]:
    """``(dotted key, config with that one value changed)`` for every int, float, bool or
    list-of-int value, nested dicts included: ints doubled (0 -> 1), floats doubled
    (0 -> 0.5), bools flipped, each list element doubled."""
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            for sub, changed in config_variants(value, f"{path}."):
                yield sub, {**config, key: changed}
            continue
        new = _changed(value)
        if new is not None:
            yield path, {**config, key: new}


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 if value else 1
    if isinstance(value, float):
        return value * 2 if value else 0.5
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                 for v in value):
        return [v * 2 if v else 1 for v in value]
    return None


def _same_model(a: GenerativeModel, b: GenerativeModel, batch: Any = None) -> bool:
    """Whether two models built at the same seed are indistinguishable: tensor names,
    shapes and values, module repr, training stages (learning-rate scales, and each stage's
    loss on ``batch`` in training mode at the same seed, where dropout acts) and samples
    at the same seed."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys() or repr(a) != repr(b):
        return False
    if any(sa[k].shape != sb[k].shape or not torch.equal(sa[k], sb[k]) for k in sa):
        return False
    try:
        if _training_signature(a, batch) != _training_signature(b, batch):
            return False
        # a value may act only under a non-default choice (a scheduler setting that one
        # sampler reads): sample under each declared choice too, stopping at the first change
        for options in [{}, *_choice_options(a)]:
            if not _same_samples(a.sample(2, seed=0, **options), b.sample(2, seed=0, **options)):
                return False
    except Exception:  # noqa: BLE001 - a variant that cannot train or sample was changed
        return False
    return True


def _same_samples(xa, xb) -> bool:
    if xa.kind == "text":
        return list(xa.texts) == list(xb.texts)
    return xa.images.shape == xb.images.shape and torch.equal(xa.images, xb.images)


def _choice_options(model: GenerativeModel) -> list[dict[str, Any]]:
    """One ``{name: choice}`` per non-default choice of each declared, non-condition option."""
    schema, declared = option_schema(model)
    if not declared:
        return []
    return [{name: choice} for name, opt in schema.items()
            if opt.choices and not getattr(opt, "condition", False)
            for choice in opt.choices if choice != opt.default]


def _training_signature(model: GenerativeModel, batch: Any) -> list:
    stages = model.train_stages()
    sig: list = [(name, st.lr_scale, len(st.params)) for name, st in stages.items()]
    if batch is None:
        return sig
    model.train()
    with torch.no_grad():
        for name, st in stages.items():
            torch.manual_seed(0)
            sig.append((name, float(st.loss(batch))))  # exact: any change in the maths shows
    model.eval()
    return sig


def check_config_drives_model(arch: str, config: dict[str, Any], inert=(), data: Any = None) -> None:
    """Changing any one int, float, bool or int-list value of the (full) config changes the
    built model, or makes construction raise (the value is validated, so it is read). Keys
    in ``inert`` (dotted for nested ones) are exempt. With ``data`` (what finetune takes),
    a value that changes only training (dropout, a stage's learning-rate scale) counts too."""
    base = make_model(arch, config)
    batch = None
    if data is not None:
        dataset = base.prepare_data(data)
        batch = dataset[torch.arange(min(8, len(dataset)))]
    full = {k: v for k, v in base.config.items() if k != "genzoo"}
    ignored = []
    for path, changed in config_variants(full):
        if path in inert or path.split(".")[0] in inert:
            continue
        try:
            variant = make_model(arch, changed)
        except Exception:  # noqa: BLE001 - refusing the value shows that it is read
            continue
        if _same_model(base, variant, batch):
            ignored.append(path)
    assert not ignored, (
        f"config value(s) {', '.join(ignored)} do not change the built model (changed one at "
        "a time, the model's tensors, repr, training losses and samples stay the same): build "
        "from them, validate them, or list them in the Conformance class's config_inert with "
        "a reason")
