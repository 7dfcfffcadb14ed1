"""``genzoo eval``: measure a model's sample quality and diversity (see ``genzoo.eval.metrics``).

Thin: parse, call ``genzoo.evaluate`` (or ``real_floor``), print a table or JSON, and with
``--write-card`` record the numbers in the model's card. torch is imported only inside the
command, so registering it keeps ``genzoo list`` light.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from genzoo.cli.complete import complete_model_name
from genzoo.cli.options import ModelCommand, model_options
from genzoo.devices import DTYPE_HELP
from genzoo.errors import OptionError
from genzoo.names import CARD_NAME

if TYPE_CHECKING:  # torch-free at import: the name is for annotations only
    from genzoo.model import GenerativeModel

#: Bookkeeping in an evaluation result, never written to a card: who was measured, how long
#: it took, and per-class detail too long for a card.
NOT_FOR_CARDS = frozenset({"model", "family", "sample_seconds", "class_histogram"})


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def card_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """What a card records of an evaluation: every number and setting the model reported
    (the common metrics, the family's own ``evaluate_metrics`` figures, the sampling options
    and how they were measured), floats rounded to 5 significant digits."""
    out: dict[str, Any] = {}
    for key, v in result.items():
        if key in NOT_FOR_CARDS or isinstance(v, bool) or v is None:
            continue
        if isinstance(v, float):
            out[key] = float(f"{v:.5g}") if math.isfinite(v) else str(v)
        elif isinstance(v, (int, str)):
            out[key] = v
    return out


def card_target(target: str) -> Path:
    """The file ``--write-card`` will write for ``target`` (checked writable now, before any
    measuring): the catalog file its card came from, a plugin's own card file included, or a
    model folder's README.md."""
    import os

    from genzoo.catalog.registry import get_registry
    registry = get_registry()
    if target in registry:
        card = registry.get(target)
        catalog = getattr(card, "catalog", None)
        if not catalog:
            raise OptionError(f"{target}: its card comes from {card.origin}, which is not a "
                              "catalog file; metrics can be written only into a card file")
        path = Path(catalog)
    else:
        folder = Path(target).expanduser()
        if not folder.is_dir():
            raise OptionError(f"--write-card needs a card name or a local model folder, got "
                              f"{target!r}")
        path = folder / CARD_NAME
    writable = os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
    if not writable:
        raise OptionError(f"--write-card cannot write {path} (read-only); copy the model to a "
                          "folder you own, or drop --write-card")
    return path


def write_card_metrics(target: str, metrics: dict[str, Any],
                       model: GenerativeModel | None = None) -> str:
    """Merge ``metrics`` into the card of ``target`` (see ``card_target``): a catalog card's
    ``metrics``, or a folder's README.md ``model-index`` (``model`` tells its modality and
    which keys are its sampling options). Returns the path written."""
    from genzoo.modelcard import write_metrics
    from genzoo.catalog.registry import get_registry, reset, update_card
    path = card_target(target)
    if path.name == CARD_NAME and target not in get_registry():
        write_metrics(path, metrics, name=path.parent.resolve().name,
                      modality=getattr(model, "modality", "image"),
                      options=model.options() if model is not None else ())
        return str(path)
    update_card(path, target, metrics={**get_registry().get(target).metrics, **metrics})
    reset()
    return str(path)


@click.command("eval", cls=ModelCommand,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name_or_path", shell_complete=complete_model_name)
@click.option("-n", "--num", "--n", "n", type=click.IntRange(min=2), default=None,
              help="Samples to draw and measure (default: the family's, else 1000; text "
                   "families keep it to a few dozen short samples).")
@click.option("--data", help="Reference data: for images a folder, .npz or mnist:SPLIT (default "
              "mnist:ref for 28x28 digits); for text models a text file; for other samples "
              "(audio ...) what the family's loader reads, as for finetune --data (default: "
              "the family's eval_defaults reference, e.g. synthetic).")
@click.option("--feature", default=None,
              help="Feature network: a registered one (mnist for images, logmel for audio: "
                   "log-mel statistics, not FAD; see `genzoo plugins`) or "
                   "timm:NAME[?pretrained=false&size=S]. Default: the family's eval_defaults, "
                   "else the modality's (mnist for images, logmel for audio).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the samples.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Sampling batch size.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--dtype", default="auto", show_default=True,
              help=f"The precision whose quality is measured: {DTYPE_HELP}")
@click.option("-O", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A sampling option as KEY=VALUE (repeatable); the same as its --KEY flag.")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False),
              help="Also write the results as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--write-card", is_flag=True,
              help="Record the results in the model's card (the file it came from).")
@click.option("--label-accuracy/--no-label-accuracy", "label_accuracy", default=True,
              show_default=True,
              help="For a model that takes class labels the feature net reads: draw n more "
                   "samples, labelled 0, 1, 2 ... in turn, and report the share read as their "
                   "label (doubles the sampling time).")
@click.pass_context
def eval_command(ctx: click.Context, name_or_path: str, n: int | None, data: str | None,
                 feature: str | None, seed: int, batch_size: int | None, device: str, dtype: str,
                 options: tuple[str, ...], out: str | None, as_json: bool,
                 write_card: bool, label_accuracy: bool) -> None:
    """Measure sample quality and diversity of a model (card name or folder).

    Images: FD, KID and precision/recall in a feature space against real images, class
    coverage, speed. Audio (and any other tensor samples): the same figures against the
    family's own reference data in its feature space (logmel: log-mel statistics, which is
    not FAD). Text models: distinct-n of the samples. Every family adds its own figures
    (a VAE's ELBO, a text model's nats per character on --data). Sampling options are the
    model's own flags (`--steps 50`) or -O KEY=VALUE. NAME `mnist:floor` measures real
    held-out digits (the floor any model is compared with).

    A model that takes class labels (the house MNIST models) is sampled twice: n samples
    without a label for the metrics, then n more with labels 0, 1, 2 ... for label_accuracy;
    --no-label-accuracy skips the second draw.
    """
    import sys

    from genzoo.devices import init_distributed
    from genzoo.eval.metrics import evaluate, real_floor
    rank, _ = init_distributed()  # under torchrun: sampling and features are sharded
    if name_or_path.startswith("mnist:"):
        if write_card:
            raise OptionError("--write-card needs a model, not a dataset")
        result = real_floor(feature=feature or "mnist", data=name_or_path, reference=data or "mnist:ref")
    else:
        from genzoo.api import load
        if write_card:
            card_target(name_or_path)  # refuse an unwritable card before measuring
        model = load(name_or_path, device=device, dtype=dtype)
        result = evaluate(model, n=n, data=data, feature=feature, seed=seed,
                          batch_size=batch_size, progress=sys.stderr.isatty(),
                          labels=label_accuracy, **model_options(model, ctx.args, options))
    if rank != 0:
        return  # every rank measured the same figures; rank 0 alone reports and writes
    if write_card:
        where = write_card_metrics(name_or_path, card_metrics(result),
                                   None if name_or_path.startswith("mnist:") else model)
        click.echo(f"metrics written to {where}", err=True)
    if out:
        from genzoo.fsutil import atomic_write_text
        atomic_write_text(Path(out), json.dumps(result, indent=2, default=str) + "\n")
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    width = max(len(k) for k in result)
    for key, value in result.items():
        click.echo(f"{key.ljust(width)}  {_fmt(value)}")


__all__ = ["eval_command", "card_metrics", "card_target", "write_card_metrics"]
