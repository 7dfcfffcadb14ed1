"""Shared by the recipes: put a trained model into its plugin package and update its card.

``bundle_model`` saves the weights (fp16 by default: these small models lose nothing we can
measure), then writes the sha256 of every file, the parameter count, the size and any measured
metrics into the model's card in registry.yaml.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "registry.yaml"


def bundle_model(model, name: str, weights_dir: Path, metrics: dict | None = None,
                 fp16: bool = True, card: dict | None = None) -> dict:
    """Save ``model`` into ``weights_dir`` and record its files in the ``name`` card."""
    import torch
    from genzoo.integrity import sha256_file
    from genzoo.registry import get_registry, update_card
    entry = get_registry().get(name)
    info = {"name": name, "summary": entry.summary, "license": entry.license,
            "tags": list(entry.tags), "metrics": {**entry.metrics, **(metrics or {})}, **(card or {})}
    weights_dir = Path(weights_dir)
    for old in weights_dir.glob("*"):  # a re-bundle replaces the previous files
        if old.is_file():
            old.unlink()
    model.save_pretrained(weights_dir, card=info, dtype=torch.float16 if fp16 else None)
    files = {p.name: sha256_file(p) for p in sorted(weights_dir.iterdir()) if p.is_file()}
    size = sum((weights_dir / f).stat().st_size for f in files)
    update_card(REGISTRY, name, files=files, params=model.num_parameters(), size=size,
                metrics=info["metrics"])
    print(f"bundled {name}: {len(files)} files, {size / 1e6:.2f} MB, "
          f"{model.num_parameters():,} parameters -> {weights_dir}")
    return files
