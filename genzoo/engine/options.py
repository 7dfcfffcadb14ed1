"""The finetune options, declared once — as a family declares its sampling options: each one's
name, type, default, range and help.

From this declaration come the keywords ``genzoo.finetune`` takes and their checks (an unknown
keyword or a value out of range is a one-line ``OptionError`` naming the flag), the flags of
``genzoo finetune`` (``genzoo.cli.model`` builds them) and the keyword table of docs/plugins.md
(``python -m genzoo.engine.options`` prints it; a test keeps the two equal). Torch-free, so the
CLI checks its flags before the heavy imports.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from genzoo.devices import DTYPE_HELP, check_dtype
from genzoo.errors import OptionError
from genzoo.options import Option

#: ``genzoo finetune --data``'s help: the family reads the data (its ``prepare_data``), so
#: only the family can say what it takes (its ``data_help``, shown by ``--help`` with NAME).
DATA_HELP = ("Training data: whatever the family's prepare_data reads (a path, a folder, a "
             "dataset name); `genzoo finetune NAME --help` says what NAME takes.")

@dataclass(frozen=True)
class FinetuneOption(Option):
    """One finetune keyword (``Option``'s name, type, default, min, max, help) and how it is
    offered: ``shown_default`` is how a default of None reads ("family, else 64"), ``doc`` what
    the docs add to the help line, ``cli`` whether ``genzoo finetune`` has its flag, ``above``
    that the value must exceed ``min`` (a learning rate of 0 trains nothing), ``alias_of`` the
    option a deprecated name stands for, ``parse_with`` a checker of its own (dtype names)."""

    shown_default: str | None = None
    doc: str = ""
    cli: bool = True
    above: bool = False
    alias_of: str | None = None
    metavar: str | None = None
    parse_with: Callable[[Any], Any] | None = field(default=None, compare=False)

    def check(self, value: Any) -> Any:
        """``value`` checked against the declaration (None: the default); anything else is a
        one-line OptionError naming the keyword and its flag."""
        if value is None:
            return self.default
        if self.parse_with is not None:
            return self.parse_with(value)
        if self.type == "bool" and not isinstance(value, bool):
            raise self._wrong("true or false", value)
        if self.type == "str" and not isinstance(value, str):
            raise self._wrong("text", value)
        if self.type in ("int", "float"):
            self._check_number(value)
        return value

    def _check_number(self, value: Any) -> None:
        integer = self.type == "int"
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or not math.isfinite(value):
            raise self._wrong("a whole number" if integer else "a number", value)
        low, high = self.min, self.max
        if (low is not None and (value < low or (self.above and value == low))) or \
                (high is not None and value > high):
            if low is not None and high is not None:
                bound = f"between {_num(low)} and {_num(high)}"
            elif low is not None:
                bound = f"above {_num(low)}" if self.above else f"at least {_num(low)}"
            else:
                bound = f"at most {_num(high or 0)}"
            raise self._wrong(bound, value)

    def _wrong(self, want: str, value: Any) -> OptionError:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "..."
        return OptionError(f"{self.name} must be {want}, got {shown} ({self.flag})")

    def shown(self) -> str:
        """The default as the docs show it."""
        if self.shown_default is not None:
            return self.shown_default
        return f"`{self.default}`" if isinstance(self.default, str) else str(self.default)


#: The data-parallel strategies ``strategy`` accepts.
STRATEGIES = ("ddp", "fsdp")


def _strategy(value: Any) -> str:
    """``strategy`` checked: one of ``STRATEGIES`` (a one-line OptionError otherwise)."""
    if value not in STRATEGIES:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise OptionError(f"strategy must be {' or '.join(STRATEGIES)}, got {shown} "
                          "(--strategy)")
    return value


def _lora(value: Any) -> Any:
    """The ``lora`` keyword as a ``LoraSpec`` (its own checks, in genzoo.engine.lora)."""
    from genzoo.engine.lora import LoraSpec
    return LoraSpec.parse(value)


_F = FinetuneOption

#: The arguments of ``finetune`` itself, before the keywords below.
STEPS = _F("steps", "int", 1000, "Optimizer steps; the learning-rate schedule spans them.",
           min=1, shown_default="(required; 1000 on the command line)")
OUT = _F("out", "str", None, "Output folder: checkpoints, metrics.jsonl, samples and, at the "
         "end, the model itself.", doc="None trains in memory; the command line requires it. "
         "A run that fails before its first checkpoint leaves a folder it made (or found "
         "empty) as it was")

#: Every keyword of ``finetune`` after ``steps`` and ``out``, in the order help lists them.
FINETUNE_OPTIONS: dict[str, FinetuneOption] = {o.name: o for o in (
    _F("batch_size", "int", None, "Samples per step per process (times --grad-accum).", min=1,
       shown_default="family, else 64"),
    _F("lr", "float", None, "Peak learning rate: linear warm-up, then cosine decay.", min=0,
       above=True, shown_default="family, else 1e-3; ×0.1 for a loaded model",
       doc="see below"),
    _F("warmup", "int", None, "Linear warm-up steps, capped at a tenth of the steps.", min=0,
       shown_default="family, else 100"),
    _F("weight_decay", "float", None, "AdamW weight decay, on matrices and kernels only (not "
       "biases or norms).", min=0, shown_default="family, else 0.0"),
    _F("grad_clip", "float", None, "Global gradient-norm clip per stage; 0 turns it off.",
       min=0, shown_default="family, else 1.0"),
    _F("ema_decay", "float", None, "EMA decay, for families that keep EMA weights.", min=0,
       max=1, shown_default="family, else 0.999"),
    _F("grad_accum", "int", 1, "Micro-batches per optimizer step (the same update as one batch "
       "that many times larger).", min=1),
    _F("dtype", "str", "auto", f"Autocast precision of training: {DTYPE_HELP}",
       parse_with=check_dtype, doc="fp16 scales the loss; `float32`/`bfloat16`/`float16` are "
       "accepted too. Weights stay float32"),
    _F("precision", "str", None, "Deprecated: use --dtype.", alias_of="dtype",
       shown_default="—", doc="a `DeprecationWarning`"),
    _F("seed", "int", 0, "Seed of the data order and the global RNG (per rank).", min=0),
    _F("save_every", "int", None, "Checkpoint every N steps (the newest two are kept).", min=1,
       metavar="N"),
    _F("sample_every", "int", None, "Write 16 samples (with the EMA weights) into "
       "OUT/samples every N steps, as the model's modality writes them (a PNG grid, a WAV, "
       "texts).", min=1, metavar="N"),
    _F("resume", "bool", False, "Continue from OUT's last complete checkpoint, with the "
       "results of an uninterrupted run."),
    _F("overwrite", "bool", False, "Allow a non-empty OUT that genzoo did not create (its files "
       "are replaced), or a fresh run over an earlier run's checkpoints.",
       doc="without it both are refused in one line; genzoo writes a `.genzoo-run` marker in "
       "the folders it makes. One run per `out` at a time (an OS lock on `out/.genzoo-lock`, "
       "released if the process dies); `metrics.jsonl` is only appended to"),
    _F("stop_after", "int", None, "Checkpoint and stop at step K (resume later with --resume).",
       min=1, metavar="K"),
    _F("progress", "bool", True, "A progress bar on stderr.", cli=False,
       doc="the command line shows one when stderr is a terminal"),
    _F("log_every", "int", 50, "A metrics.jsonl row (loss per stage, lr, samples/s) every N "
       "steps, and at the end.", min=1, metavar="N"),
    _F("tensorboard", "bool", False, "Also log to OUT/tensorboard (needs the tensorboard "
       "package)."),
    _F("device", "any", None, "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1 or mps.",
       shown_default="auto", doc="under `torchrun` each rank takes its local GPU"),
    _F("strategy", "str", "ddp", "Data parallelism under torchrun: ddp (every process holds "
       "the whole model) or fsdp (FSDP2: parameters, gradients and optimizer state sharded "
       "across processes; sharded checkpoints).", parse_with=_strategy,
       doc="fsdp resumes on another number of processes; see docs/fsdp.md"),
    _F("save_dtype", "any", None, "Torch dtype of the saved weights (None: as trained, "
       "float32).", cli=False),
    _F("lora", "any", None, "Train a LoRA adapter instead of every weight: a rank, or "
       '{"rank", "alpha", "targets", "dropout"}; OUT becomes an adapter folder (needs '
       "genzoo[lora]).", cli=False, parse_with=_lora,
       doc="the command line spells it with the `--lora-*` flags; see "
       "[Adapters](#adapters-lora)"),
)}

#: The fields of the ``lora`` keyword, offered as ``--lora-<name>`` flags; their checks are
#: ``genzoo.engine.lora.LoraSpec``'s.
LORA_OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("rank", "int", None, "Train a LoRA adapter of rank R (peft) instead of every "
           "weight; OUT is then an adapter folder. Needs genzoo[lora]."),
    Option("alpha", "float", None, "LoRA scale numerator (the update is scaled by A/R; "
           "default: R)."),
    Option("targets", "str", None, "Modules to adapt: comma-separated names (c_attn,c_proj) or "
           "a regex peft full-matches (default: the family's choice, else every Linear/Conv "
           "layer)."),
    Option("dropout", "float", None, "Dropout on the LoRA branch, in [0, 1) (default: 0)."),
)}
LORA_METAVARS = {"rank": "R", "alpha": "A", "targets": "PATTERN", "dropout": "P"}


def check_keywords(options: dict[str, Any], stacklevel: int = 3) -> dict[str, Any]:
    """Every finetune keyword, checked, defaults filled in: a deprecated name is mapped to its
    option (a ``DeprecationWarning``), an unknown one or a bad value is a one-line
    ``OptionError``."""
    given = dict(options)
    for name, option in FINETUNE_OPTIONS.items():
        if option.alias_of is None or name not in given:
            continue
        warnings.warn(f"finetune({name}=...) is deprecated: use {option.alias_of}=",
                      DeprecationWarning, stacklevel=stacklevel)
        value = given.pop(name)
        if given.setdefault(option.alias_of, value) != value:
            raise OptionError(f"{name}={value!r} and {option.alias_of}="
                              f"{given[option.alias_of]!r} disagree: pass only "
                              f"{option.alias_of}")
    known = [n for n, o in FINETUNE_OPTIONS.items() if o.alias_of is None]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise OptionError(f"unknown finetune option(s) {', '.join(unknown)}: use "
                          f"{', '.join(sorted(known))}")
    return {name: FINETUNE_OPTIONS[name].check(given.get(name)) for name in known}


def options_table() -> str:
    """The keyword table of docs/plugins.md ("Training: the one engine"), in Markdown."""
    rows = ["| keyword | flag | default | what it does |", "|---|---|---|---|"]
    lora_flags = ", ".join(f"`--lora-{n}`" for n in LORA_OPTIONS)
    for o in (STEPS, OUT, *FINETUNE_OPTIONS.values()):
        flag = ("`-o`, `--out`" if o is OUT else lora_flags if o.name == "lora"
                else f"`{o.flag}`" if o.cli else "—")
        text = o.help.rstrip(".") + (f"; {o.doc}" if o.doc else "")
        rows.append(f"| `{o.name}` | {flag} | {o.shown()} | {text} |")
    return "\n".join(rows) + "\n"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


if __name__ == "__main__":  # python -m genzoo.engine.options: the docs table
    print(options_table(), end="")
