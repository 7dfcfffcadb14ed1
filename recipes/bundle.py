"""Shared by the recipes: put a trained model into its plugin package and update its card.

``bundle_model`` saves the weights (fp16 by default: these small models lose nothing we can
measure), then writes the sha256 of every file, the parameter count, the size and any measured
metrics into the model's card in the catalog file it came from — the plugin's own
``weights/cards.yaml``, as a third party's release script would. ``mnist_recipe`` is the whole
command line of
a recipe that trains on ``mnist:train`` with the engine and bundles without further checks.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

ROOT = Path(__file__).resolve().parents[1]


def bundle_model(model, name: str, weights_dir: Path, metrics: dict | None = None,
                 fp16: bool = True, card: dict | None = None,
                 catalog: Path | None = None) -> dict:
    """Save ``model`` into ``weights_dir`` and record its files in the ``name`` card of
    ``catalog`` (default: the catalog file the registry read that card from)."""
    import torch
    from genzoo.errors import RegistryError
    from genzoo.catalog.integrity import sha256_file
    from genzoo.catalog.registry import get_registry, load_catalog, update_card
    if catalog is None:
        entry = get_registry().get(name)
        if entry.catalog is None:
            raise RegistryError(f"{name}: its card was not read from a catalog file")
        catalog = Path(entry.catalog)
    else:
        [entry] = [c for c in load_catalog(catalog) if c.name == name]
    # base_model None: a bundled model is its own origin, not a finetune of the card it re-saves
    info = {"name": name, "summary": entry.summary, "license": entry.license,
            # a new network's card starts without the old one's figures (card_metrics.py
            # measures it again)
            "tags": list(entry.tags), "metrics": dict(metrics or {}),
            "base_model": None, **(card or {})}
    # capabilities and the conditioning tag follow the network bundled (labels or not)
    info["tags"] = [t for t in info["tags"] if t not in ("unconditional", "class-conditional")] \
        + ["class-conditional" if "label" in model.capabilities else "unconditional"]
    weights_dir = Path(weights_dir)
    for old in weights_dir.glob("*"):  # a re-bundle replaces the previous files
        if old.is_file():
            old.unlink()
    model.save_pretrained(weights_dir, card=info, dtype=torch.float16 if fp16 else None)
    files = {p.name: sha256_file(p) for p in sorted(weights_dir.iterdir()) if p.is_file()}
    size = sum((weights_dir / f).stat().st_size for f in files)
    update_card(catalog, name, files=files, params=model.num_parameters(), size=size,
                metrics=info["metrics"], capabilities=sorted(model.capabilities),
                tags=info["tags"])
    print(f"bundled {name}: {len(files)} files, {size / 1e6:.2f} MB, "
          f"{model.num_parameters():,} parameters -> {weights_dir}")
    return files


def mnist_recipe(name: str, weights_dir: Path, steps: int, make_model: Callable[[], Any],
                 **finetune_options) -> click.Group:
    """The ``train`` / ``bundle`` CLI of model ``name``: ``train`` runs ``make_model()``'s
    finetune on ``mnist:train`` for ``steps`` with ``finetune_options`` (resumable with
    ``--resume``, time-sliced with ``--stop-after``; GENZOO_THREADS sets the threads) into
    runs/NAME; ``bundle`` puts the trained folder into ``weights_dir`` in fp16."""
    run_dir = str(ROOT / "runs" / name)

    @click.group(help=f"Train and bundle {name}.")
    def main():
        pass

    @main.command()
    @click.option("--out", default=run_dir, show_default=True)
    @click.option("--steps", default=steps, show_default=True)
    @click.option("--resume", is_flag=True)
    @click.option("--stop-after", type=int, default=None)
    def train(out, steps, resume, stop_after):
        """Train (or resume) the model into OUT."""
        import torch

        import genzoo
        torch.set_num_threads(int(os.environ.get("GENZOO_THREADS", torch.get_num_threads())))
        result = genzoo.finetune(make_model(), "mnist:train", steps=steps, out=out, resume=resume,
                                 stop_after=stop_after, progress=sys.stderr.isatty(),
                                 **finetune_options)
        click.echo(f"done: {result.steps} steps in {result.seconds:.0f} s, "
                   f"metrics {result.metrics}")

    @main.command()
    @click.option("--out", default=run_dir, show_default=True)
    def bundle(out):
        """Copy the trained model into the plugin package (fp16) and update its card."""
        import genzoo
        bundle_model(genzoo.load(out, device="cpu"), name, weights_dir)

    return main
