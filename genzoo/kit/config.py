"""The conformance kit's checks on what a model is told: sampling option values and config.

- :func:`check_option_values`: every value the options schema rules out raises
  ``genzoo.errors.OptionError`` (one line), and hostile values for unbounded numeric options
  raise nothing else;
- :func:`check_config_drives_model`: every numeric, bool or int-list config value changes the
  built model (or is validated when changed), unless the author exempts it;
- :func:`check_sampling_options_act`: every declared sampling option, varied within its
  range, changes the samples, unless declared ``affects_output=False``.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Iterator

import torch

from genzoo.kit.conformance import _expect_option_error, make_model
from genzoo.kit.learning import required_values
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
    elif kind == "strs":
        must.append([5])
    elif kind == "json":
        must.append(math.nan)
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
    given = required_values(model, 1)  # a model that samples only given them gets them
    for name, opt in schema.items():
        if name == "batch_size":  # sample()'s own keyword, not an option of generate
            continue
        must, hostile = bad_values(opt, declared)
        for value in must:
            _expect_option_error(lambda: model.sample(1, seed=0, **{**given, name: value}),
                                 f"sample(1, {name}={value!r})")
        for value in hostile:
            try:
                model.sample(1, seed=0, **{**given, name: value})
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
            given = required_values(a, 2)
            if not _same_samples(a.sample(2, seed=0, **options, **given),
                                 b.sample(2, seed=0, **options, **given)):
                return False
    except Exception:  # noqa: BLE001 - a variant that cannot train or sample was changed
        return False
    return True


def _same_samples(xa, xb) -> bool:
    """Equal values and equal metadata (a config's ``sample_rate`` changes the samples even
    where the waveform's numbers stay the same)."""
    if any(xa.meta.get(k) != xb.meta.get(k) for k in xa.spec().metadata):
        return False
    if isinstance(xa.data, list):  # a list modality's values (texts)
        return list(xa.data) == list(xb.data)
    return xa.data.shape == xb.data.shape and torch.equal(xa.data, xb.data)


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
    from genzoo.kit.learning import has_labels, label_hint
    base = make_model(arch, config)
    batch, labelled = None, None
    if data is not None:
        dataset = base.prepare_data(data)
        batch = dataset[torch.arange(min(8, len(dataset)))]
        labelled = has_labels(dataset)
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
        "a reason" + label_hint(base, labelled))


# ---- option effects ---------------------------------------------------------------------
#: Samples compared per call: sample i depends only on (seed, i), so three samples are three
#: seeds' worth of evidence.
EFFECT_SAMPLES = 3


def varied_values(opt, image_values: list[Any] | None = None) -> list[Any]:
    """Values of ``opt`` other than its default and within its declared range, cheapest
    first (small step counts before large ones): other choices, the flipped bool, the
    bounds and halves/doubles of a number, a short text, image stacks (``image_values``). Empty
    for what the kit cannot vary (``any``, ``strs``, ``json``, callables) or what is declared
    inert."""
    if not getattr(opt, "affects_output", True) or \
            opt.type in ("any", "callable", "strs", "json"):
        return []
    if opt.choices:
        return [c for c in opt.choices if c != opt.default]
    if opt.type == "bool":
        return [v for v in (True, False) if v != opt.default]
    if opt.type == "str":
        return [v for v in ("genzoo", "a") if v != opt.default]
    if opt.type == "image":
        return list(image_values or [])
    lo, hi, default = opt.min, opt.max, opt.default
    base = default if default is not None else (lo if lo is not None else 1)
    wanted = [lo, base / 2, base * 2, base + 1, hi]
    out: list[Any] = []
    for v in wanted:
        if v is None or not math.isfinite(v):
            continue
        v = int(round(v)) if opt.type == "int" else float(v)
        inside = (lo is None or v >= lo) and (hi is None or v <= hi)
        if inside and v != default and v not in out:
            out.append(v)
    return out


def _contexts(schema: dict[str, Any], image_values: list[Any] | None) -> list[dict[str, Any]]:
    """The settings an option is varied under: the defaults, then one other option changed,
    since an option may act only beside another (strength with an init image, guidance with
    a label, ``eta`` with the DDIM sampler). Likeliest partners first, to stop early: image
    conditions (and all of them together: a mask needs its init image), other conditions,
    each other choice, then the first two values of each other option."""
    ranked: list[tuple[int, dict[str, Any]]] = []
    for name, opt in schema.items():
        if name == "batch_size":
            continue
        values = varied_values(opt, image_values)
        rank = 1 if opt.type == "image" else 2 if opt.condition else 3 if opt.choices else 4
        # two values of a number: its lowest may be refused (strength 0) or act like the default
        ranked += [(rank, {name: v}) for v in (values if opt.choices else values[:2])]
    images = {name: image_values[0] for name, opt in schema.items()
              if opt.type == "image" and getattr(opt, "affects_output", True)} \
        if image_values else {}
    if len(images) > 1:
        ranked.append((1, images))
    return [{}] + [context for _, context in sorted(ranked, key=lambda rc: rc[0])]


def _key(options: dict[str, Any]) -> tuple:
    return tuple(sorted((k, id(v) if hasattr(v, "shape") else repr(v))
                        for k, v in options.items()))


def _try_sample(model: GenerativeModel, options: dict[str, Any], cache: dict):
    """``sample(EFFECT_SAMPLES, seed=0, **options)`` (remembered in ``cache``), or None when
    the options are refused together (a mask without its init image)."""
    key = _key(options)
    if key not in cache:
        try:
            cache[key] = model.sample(EFFECT_SAMPLES, seed=0, **options)
        except OptionError:
            cache[key] = None
    return cache[key]


def option_acts(model: GenerativeModel, name: str, schema: dict[str, Any],
                image_values: list[Any] | None = None, cache: dict | None = None) -> bool | None:
    """Whether some in-range value of option ``name`` changes the samples under some
    context; None when the kit has no value to try or every value is refused. ``cache``
    keys image stacks by identity: keep ``image_values`` alive while it is used."""
    cache = {} if cache is None else cache
    values = varied_values(schema[name], image_values)
    tried = False
    for context in _contexts(schema, image_values) if values else []:
        if name in context:
            continue
        # the default and each value, compared with each other: where the default is refused
        # in this context (init unset beside a strength), two values can still differ
        seen = [_try_sample(model, context, cache)]
        for value in values:
            seen.append(_try_sample(model, {**context, name: value}, cache))
            valid = [x for x in seen if x is not None]
            if len(valid) >= 2:
                tried = True
                if not all(_same_samples(valid[0], x) for x in valid[1:]):
                    return True
    return False if tried else None


def check_sampling_options_act(model: GenerativeModel, labelled: bool | None = None) -> None:
    """Every declared sampling option, varied within its declared range, changes the
    samples for some seed (alone, or beside one other option changed: another sampler, a
    label, an init image), unless declared ``affects_output=False``. ``batch_size`` is
    exempt: results never depend on it. ``labelled``: whether the model was trained on labelled data (named in the
    message when a label-driven option looks ignored)."""
    from genzoo.kit.conditions import _condition_values
    from genzoo.kit.learning import label_hint
    schema, _ = option_schema(model)
    image_opt = next((o for o in schema.values() if o.type == "image"), None)
    stack = _condition_values(model, image_opt) if image_opt is not None else None
    # two stacks, the second mirrored left to right (an init image acts below strength 1 only
    # and strength is refused without one: then two init images are compared)
    images = None if stack is None else [stack, stack.flip(-1)]
    cache: dict = {}
    ignored = [name for name in schema if name != "batch_size"
               and option_acts(model, name, schema, images, cache) is False]
    assert not ignored, (
        f"sampling option(s) {', '.join(ignored)} do not change the samples (sample("
        f"{EFFECT_SAMPLES}, seed=0) with each in-range value tried, alone and beside each "
        "other option changed): make generate use them, or declare "
        "Option(..., affects_output=False) with a reason" + label_hint(model, labelled))
