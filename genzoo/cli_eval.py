"""``genzoo eval``: measure a model's sample quality and diversity (see ``genzoo.metrics``).

Thin: parse, call ``genzoo.evaluate`` (or ``real_floor``), print a table or JSON, and with
``--write-card`` record the numbers in the model's card. torch is imported only inside the
command, so registering it keeps ``genzoo list`` light.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from .errors import OptionError

#: Result keys worth recording in a model card (numbers that describe the model).
CARD_KEYS = ("fd", "kid", "kid_std", "precision", "recall", "class_entropy", "class_max_share",
             "classes_covered", "neg_elbo", "iw_nll", "nats_per_token", "nats_per_char",
             "perplexity", "bits_per_char", "distinct_1", "distinct_2", "distinct_3")
#: Settings recorded beside them, so a number says how it was measured.
SETTING_KEYS = ("n", "seed", "feature", "reference", "data")
#: Other result keys that are neither; whatever else a result holds is a sampling option.
RESULT_KEYS = {"model", "family", "reference_n", "samples_per_s", "sample_seconds",
               "class_confidence", "class_histogram", "iw_k", "tokens", "chars", "mean_chars"}


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``("sampler=ddim", "steps=50")`` -> {"sampler": "ddim", "steps": 50} (YAML scalars)."""
    import yaml
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise OptionError(f"--option expects KEY=VALUE (e.g. -o sampler=ddim), got {pair!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else None
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def card_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The subset of an evaluation result stored in a card: rounded numbers, the settings they
    were measured with (``eval_n``, ``eval_feature`` ...) and any sampling options."""
    out: dict[str, Any] = {}
    for key in CARD_KEYS:
        v = result.get(key)
        if isinstance(v, float):
            out[key] = float(f"{v:.5g}")
        elif isinstance(v, int) and not isinstance(v, bool):
            out[key] = v
    for key, v in result.items():
        if key in SETTING_KEYS or (key not in RESULT_KEYS and key not in CARD_KEYS
                                   and isinstance(v, (str, int, float))):
            out[f"eval_{key}"] = v
    return out


def write_card_metrics(target: str, metrics: dict[str, Any]) -> str:
    """Merge ``metrics`` into the card of ``target``: a registry card (in the catalog file that
    holds it) or a model folder's README.md front matter (``genzoo_metrics``). Returns where."""
    from .registry import get_registry, reset, update_card
    registry = get_registry()
    if target in registry:
        card = registry.get(target)
        path = Path(card.origin.rsplit(" (entry ", 1)[0])
        if not path.is_file():
            raise OptionError(f"{target}: its card comes from {card.origin}, not a catalog file; "
                              "metrics can be written only into registry.yaml-style files")
        update_card(path, target, metrics={**card.metrics, **metrics})
        reset()
        return str(path)
    folder = Path(target).expanduser()
    if not folder.is_dir():
        raise OptionError(f"--write-card needs a card name or a local model folder, got {target!r}")
    write_readme_metrics(folder / "README.md", metrics)
    return str(folder / "README.md")


def write_readme_metrics(readme: Path, metrics: dict[str, Any]) -> None:
    """Set ``genzoo_metrics`` in a README's YAML front matter (created if absent), atomically."""
    import yaml

    from .fsutil import atomic_write_text
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    front, body = {}, text
    if text.startswith("---"):
        head, sep, rest = text[3:].partition("\n---")
        if sep:
            loaded = yaml.safe_load(head) or {}
            if not isinstance(loaded, dict):
                raise OptionError(f"{readme}: front matter is not a YAML mapping; fix it by hand")
            front, body = loaded, rest.lstrip("\n")
    front.setdefault("library_name", "genzoo")
    front["genzoo_metrics"] = {**(front.get("genzoo_metrics") or {}), **metrics}
    dumped = yaml.safe_dump(front, sort_keys=False)
    atomic_write_text(readme, f"---\n{dumped}---\n\n{body}" if body else f"---\n{dumped}---\n")


@click.command("eval")
@click.argument("name_or_path")
@click.option("--n", "n", default=1000, show_default=True, help="Samples to draw and measure.")
@click.option("--data", help="Reference data: a folder, .npz or mnist:SPLIT (images; default "
              "mnist:ref for 28x28 digits), or a text file (text models).")
@click.option("--feature", default="mnist", show_default=True,
              help="Feature network: mnist, or timm:NAME[?pretrained=false&size=S].")
@click.option("--seed", default=0, show_default=True, help="Seed of the samples.")
@click.option("--batch-size", type=int, help="Sampling batch size.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--dtype", default="auto", show_default=True,
              help="auto, fp32, bf16, fp16: measure the quality a precision gives.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="A sampling option, repeatable (e.g. -o sampler=ddim -o steps=50).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--write-card", is_flag=True, help="Record the results in the model's card.")
def eval_command(name_or_path, n, data, feature, seed, batch_size, device, dtype, options,
                 as_json, write_card):
    """Measure sample quality and diversity of a model (card name or folder).

    Images: FD, KID and precision/recall in a feature space against real images, class
    coverage, speed; VAEs add ELBO and importance-weighted NLL. Text models: nats/perplexity on
    --data and distinct-n of the samples. NAME `mnist:floor` measures real held-out digits
    (the floor any model is compared with).
    """
    import sys

    from .metrics import evaluate, real_floor
    if name_or_path.startswith("mnist:"):
        if write_card:
            raise OptionError("--write-card needs a model, not a dataset")
        result = real_floor(feature=feature, data=name_or_path, reference=data or "mnist:ref")
    else:
        from .api import load
        model = load(name_or_path, device=device, dtype=dtype)
        result = evaluate(model, n=n, data=data, feature=feature, seed=seed,
                          batch_size=batch_size, progress=sys.stderr.isatty(),
                          **_parse_options(options))
    if write_card:
        where = write_card_metrics(name_or_path, card_metrics(result))
        click.echo(f"metrics written to {where}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    width = max(len(k) for k in result)
    for key, value in result.items():
        click.echo(f"{key.ljust(width)}  {_fmt(value)}")


__all__ = ["eval_command", "card_metrics", "write_card_metrics", "write_readme_metrics"]
