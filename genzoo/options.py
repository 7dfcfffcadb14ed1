"""Sampling options as data: what a family declares, core validates, prints and turns into flags.

A family lists its options once (``GenerativeModel.sample_options``); from that single
declaration genzoo builds the CLI flags of ``genzoo sample`` (``--steps 20``), checks every
value with a one-line ``OptionError``, shows the schema in ``genzoo info NAME`` and hands it
to anything else that needs a form (the serve page). Nothing here imports torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from genzoo.errors import OptionError

#: The value types an option may declare. ``any`` accepts what JSON or YAML can say;
#: ``callable`` is an API-only hook (a streaming callback) that the CLI never offers;
#: ``image`` is a (N, C, H, W) or (C, H, W) float tensor in [0, 1] (the CLI reads a picture
#: or a folder of them, converted to the model's shape). ``strs`` is a string or a list of
#: strings (a repeated CLI flag gives a list); ``json`` is a JSON document (lists, objects,
#: strings, numbers, booleans, null; nested at most ``JSON_DEPTH`` deep) whose CLI text is
#: inline JSON or the path of a ``.json`` file (only the command line reads files).
TYPES = ("int", "float", "str", "bool", "any", "callable", "image", "strs", "json")
#: How deeply a ``json`` option's value may nest (a bound on work, not on honest use).
JSON_DEPTH = 32
#: The largest ``.json`` file a ``json`` option reads from the command line.
JSON_FILE_BYTES = 16 * 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One sampling option: its name, value type, default, bounds or choices and help line.

    ``condition`` marks a conditioning input (a class label, an init image) rather than a
    knob of the sampler; ``per_sample`` lets a value be one per sample (a list, or images
    stacked along the first dimension), which ``sample`` slices batch by batch so that sample
    i gets value i. ``None`` is accepted wherever the default is ``None`` (unset).
    ``affects_output=False`` declares that the option never changes what is sampled on this
    model (a speed knob, or one this model's configuration ignores); the conformance kit then
    does not require that varying it changes the samples."""

    name: str
    type: str = "any"
    default: Any = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    condition: bool = False
    per_sample: bool = False
    affects_output: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise OptionError(f"option name {self.name!r} must be a Python identifier")
        if self.type not in TYPES:
            raise OptionError(f"option {self.name!r}: type {self.type!r} is not one of "
                              f"{', '.join(TYPES)}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    @property
    def flag(self) -> str:
        """The CLI flag: ``max_new_tokens`` -> ``--max-new-tokens``."""
        return "--" + self.name.replace("_", "-")

    def with_default(self, default: Any) -> "Option":
        """The same option with another default (a model card's sampling settings)."""
        from dataclasses import replace
        return replace(self, default=default)  # keeps every other field (and the subclass)

    def parse(self, value: Any) -> Any:
        """``value`` converted to the declared type and checked against bounds and choices.

        Strings (from the command line or a form) are converted; anything out of place raises
        a one-line ``OptionError`` that names the option and what it accepts."""
        if value is None:
            if self.default is None or self.type == "callable":
                return None
            raise self._bad(value)
        if self.type == "callable":
            if not callable(value):
                raise OptionError(f"option {self.name!r} takes a function (API only)")
            return value
        if self.type == "image":
            return self._image(value)
        if self.per_sample and isinstance(value, (list, tuple)):
            if not value:
                raise OptionError(f"option {self.name!r}: an empty list; give one value per "
                                  "sample, or one for all")
            return [self._one(v) for v in value]
        return self._one(value)

    def _one(self, value: Any) -> Any:
        converted = _convert(self.type, value)
        if converted is _INVALID:
            raise self._bad(value)
        if isinstance(converted, float) and not math.isfinite(converted):
            raise OptionError(f"option {self.name!r} must be a finite number, got {value!r}")
        if self.choices is not None and converted not in self.choices:
            raise OptionError(f"option {self.name!r} must be one of "
                              f"{', '.join(map(str, self.choices))}; got {value!r}")
        if isinstance(converted, (int, float)) and not isinstance(converted, bool):
            if (self.min is not None and converted < self.min) or \
                    (self.max is not None and converted > self.max):
                raise OptionError(f"option {self.name!r} must be {self.describe_range()}; "
                                  f"got {value!r}")
        return converted

    def _image(self, value: Any) -> Any:
        """A (N, C, H, W) float tensor in [0, 1] (a (C, H, W) one gains the N axis)."""
        ndim = getattr(value, "ndim", None)
        if ndim not in (3, 4) or not getattr(value, "is_floating_point", lambda: False)():
            raise OptionError(f"option {self.name!r} takes images: a float tensor shaped "
                              "(N, C, H, W) or (C, H, W) in [0, 1] (the CLI takes a path)")
        value = value[None] if ndim == 3 else value
        if len(value) == 0 or not bool(value.isfinite().all()) or float(value.min()) < 0 \
                or float(value.max()) > 1:
            raise OptionError(f"option {self.name!r}: images must hold finite values in [0, 1]")
        return value

    def parse_text(self, text: str, read_image: Callable[[str], Any] | None = None) -> Any:
        """``parse`` for a value typed as text (a CLI flag, ``-O KEY=VALUE``, a form field):
        an ``any`` option reads JSON (numbers, true, null, lists) and keeps other text as is;
        a per-sample option takes a comma-separated list (``--label 3,5,7``). An ``image``
        option's text is a path that ``read_image`` turns into images."""
        if self.type == "image":
            if read_image is None:
                raise OptionError(f"option {self.name!r} takes images; as text it needs a "
                                  "reader of image paths")
            return self.parse(read_image(text))
        # text is never split: commas belong to it ("a cat, in the snow"); a repeated flag
        # gives one text per sample instead (parse_flags)
        if self.per_sample and self.type not in ("image", "any", "str") and "," in text:
            return self.parse([part.strip() for part in text.split(",")])
        if self.type == "any":
            try:
                return self.parse(json.loads(text))
            except ValueError:
                return self.parse(text)
        if self.type == "json":
            return self.parse(self._read_json_text(text))
        return self.parse(text)

    def _read_json_text(self, text: str) -> Any:
        """A ``json`` option's command-line text: inline JSON (``[...]``, ``{...}``) or the
        path of a JSON file; a missing, unreadable or malformed file is a one-line error."""
        from pathlib import Path
        inline = text.lstrip()[:1] in ("[", "{")
        where = "inline JSON" if inline else text
        if not inline:
            path = Path(text).expanduser()
            try:
                if path.stat().st_size > JSON_FILE_BYTES:
                    raise OptionError(f"option {self.flag}: {text} is larger than "
                                      f"{JSON_FILE_BYTES // 2**20} MiB")
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                reason = getattr(e, "strerror", None) or "not UTF-8 text"
                raise OptionError(f"option {self.flag} takes a .json file or inline JSON; "
                                  f"cannot read {where}: {reason}") from None
        try:
            return json.loads(text)
        except RecursionError:
            raise OptionError(f"option {self.flag}: {where} nests too deeply") from None
        except ValueError as e:
            raise OptionError(f"option {self.flag}: {where} is not valid JSON "
                              f"({str(e).splitlines()[0]})") from None

    def describe_range(self) -> str:
        """``"between 0 and 2"``, ``">= 1"`` or ``"any number"``, for messages and help."""
        if self.min is not None and self.max is not None:
            return f"between {_num(self.min)} and {_num(self.max)}"
        if self.min is not None:
            return f">= {_num(self.min)}"
        if self.max is not None:
            return f"<= {_num(self.max)}"
        return "any number"

    def _bad(self, value: Any) -> OptionError:
        want = {"int": "a whole number", "float": "a number", "bool": "true or false",
                "str": "a string of valid UTF-8 text", "any": "a value",
                "image": "images", "strs": "a string or a list of strings",
                "json": f"JSON (lists, objects, strings, numbers, booleans, null; at most "
                        f"{JSON_DEPTH} levels deep)"}[self.type]
        if self.type in ("int", "float") and (self.min is not None or self.max is not None):
            want += f" {self.describe_range()}"
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "..."
        return OptionError(f"option {self.name!r} must be {want}; got {shown}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (``genzoo info --json``, forms)."""
        return {"name": self.name, "type": self.type, "default": _jsonable(self.default),
                "help": self.help, "min": self.min, "max": self.max,
                "choices": list(self.choices) if self.choices is not None else None,
                "condition": self.condition, "per_sample": self.per_sample, "flag": self.flag}


_INVALID = object()


def _convert(kind: str, value: Any) -> Any:
    """``value`` as ``kind``, or ``_INVALID``; strings are parsed, bools are never numbers."""
    if kind == "any":
        return value
    if kind == "str":
        return value if _utf8_text(value) else _INVALID
    if kind == "strs":
        if isinstance(value, (list, tuple)):
            return list(value) if all(_utf8_text(v) for v in value) else _INVALID
        return value if _utf8_text(value) else _INVALID
    if kind == "json":
        return value if _json_document(value, JSON_DEPTH) else _INVALID
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        return _INVALID
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, str):
        try:
            value = float(value.strip()) if kind == "float" else int(value.strip(), 10)
        except ValueError:
            return _INVALID
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else _INVALID
    return float(value) if isinstance(value, (int, float)) else _INVALID


def _utf8_text(value: Any) -> bool:
    """True for a ``str`` that encodes as UTF-8 (undecodable bytes from the terminal arrive
    as lone surrogates, which would fail later, far from their cause)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_document(value: Any, depth: int) -> bool:
    """True when ``value`` is what JSON can say (string keys, finite numbers), nested at most
    ``depth`` levels; iterative checks would be longer and the depth already bounds recursion."""
    if value is None or isinstance(value, (bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return _utf8_text(value)
    if depth <= 0:
        return False
    if isinstance(value, (list, tuple)):
        return all(_json_document(v, depth - 1) for v in value)
    if isinstance(value, dict):
        return all(_utf8_text(k) and _json_document(v, depth - 1) for k, v in value.items())
    return False


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def infer_option(name: str, default: Any) -> Option:
    """An option a family only listed in ``sample_defaults``: its type read off the default."""
    kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default), "any")
    return Option(name, kind, default)


def build_schema(declared: Iterable[Option | Mapping[str, Any]],
                 defaults: Mapping[str, Any]) -> dict[str, Option]:
    """The options of a model: the ``declared`` ones (Option objects or dicts of its fields),
    then any name found only in ``defaults``; ``defaults`` also set each option's default."""
    schema: dict[str, Option] = {}
    for item in declared:
        opt = item if isinstance(item, Option) else _option_from_mapping(item)
        if opt.name in schema:
            raise OptionError(f"option {opt.name!r} is declared twice")
        schema[opt.name] = opt
    for name, default in defaults.items():
        if name in schema:
            schema[name] = schema[name].with_default(default)
        else:
            schema[name] = infer_option(name, default)
    return schema


def with_classes(schema: dict[str, Option], num_classes: int,
                 names: Iterable[str] = ("label",)) -> dict[str, Option]:
    """A class-conditional family's schema: ``label`` bounded to the network's classes
    (0..num_classes-1), or, for a network without classes (0), ``names`` (the label and what
    only makes sense with one, such as guidance) removed."""
    from dataclasses import replace
    if not num_classes:
        for name in names:
            schema.pop(name, None)
    elif "label" in schema:
        schema["label"] = replace(schema["label"], max=num_classes - 1)
    return schema


def _option_from_mapping(item: Mapping[str, Any]) -> Option:
    if not isinstance(item, Mapping):
        raise OptionError(f"an option must be a genzoo.options.Option or a dict, got "
                          f"{type(item).__name__}")
    fields = set(Option.__dataclass_fields__)
    unknown = set(item) - fields
    if unknown:
        raise OptionError(f"option {item.get('name')!r}: unknown field(s) "
                          f"{', '.join(sorted(unknown))}; allowed: {', '.join(sorted(fields))}")
    return Option(**item)


def validate(schema: Mapping[str, Option], values: Mapping[str, Any], owner: str,
             as_text: bool = False,
             read_image: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Every value parsed by its option (``as_text``: values typed as text, see
    ``Option.parse_text``); an unknown name lists the options ``owner`` takes."""
    unknown = sorted(set(values) - set(schema))
    if unknown:
        allowed = ", ".join(sorted(n for n, o in schema.items() if o.type != "callable")) or "none"
        raise OptionError(f"unknown option(s) {', '.join(unknown)} for {owner}; allowed: {allowed}")
    if as_text:
        return {name: schema[name].parse_text(str(value), read_image)
                for name, value in values.items()}
    return {name: schema[name].parse(value) for name, value in values.items()}


def parse_key_values(pairs: Iterable[str]) -> dict[str, Any]:
    """``["steps=50", "sampler=ddim"]`` -> ``{"steps": "50", "sampler": "ddim"}``.

    The one KEY=VALUE parser of every command (``-O/--option``). Values stay text: the
    model's option schema types them (``validate(..., as_text=True)``). Dashes in keys become
    underscores, so ``-O max-new-tokens=5`` names ``max_new_tokens``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise OptionError(f"bad option {pair!r}: write it as -O KEY=VALUE (e.g. -O steps=50)")
        out[key] = value
    return out


def parse_flags(args: Iterable[str], schema: Mapping[str, Option], owner: str,
                read_image: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Model option flags left over by click (``--steps 20 --no-ema --top-p=0.9``) read against
    ``schema``: ``--name VALUE`` or ``--name=VALUE``, ``--flag`` / ``--no-flag`` for bools; a
    per-sample text option given more than once (``--prompt A --prompt B``) takes one text per
    sample, and a ``strs`` option given more than once (``--stop A --stop B``) a list."""
    by_flag = {o.flag: o for o in schema.values() if o.type != "callable"}
    args = list(args)
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, inline = arg.partition("=")
        negated = flag.startswith("--no-") and ("--" + flag[5:]) in by_flag
        opt = by_flag.get("--" + flag[5:] if negated else flag)
        if opt is None:
            shown = ", ".join(sorted(by_flag)) or "none"
            what = "unexpected argument" if not arg.startswith("-") else "no such option"
            raise OptionError(f"{what} {arg!r} for {owner}; its options: {shown} "
                              "(`genzoo info NAME` describes them)")
        if opt.type == "bool" and not eq:
            out[opt.name] = not negated
            i += 1
            continue
        if eq:
            value = inline
        elif i + 1 < len(args):
            value, i = args[i + 1], i + 1
        else:
            raise OptionError(f"option {opt.flag} needs a value")
        parsed = opt.parse_text(value, read_image)
        if opt.name in out and (opt.type == "strs" or (opt.per_sample and opt.type == "str")):
            # --prompt A --prompt B: one value per sample, in order; --stop A --stop B: a list
            before = out[opt.name]
            parsed = (before if isinstance(before, list) else [before]) + [parsed]
        out[opt.name] = parsed
        i += 1
    return out


__all__ = ["Option", "TYPES", "build_schema", "infer_option", "validate", "parse_key_values",
           "parse_flags"]
