"""``genzoo merge``: bake a LoRA adapter into its base as a full model folder.

Thin like the other commands: torch and peft are imported only when the command runs.
"""
from __future__ import annotations

from pathlib import Path

import click

from genzoo.errors import OptionError
from genzoo.names import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CARD_NAME, CONFIG_NAME, WEIGHTS_NAME


def check_adapter_folder(folder: Path) -> None:
    """One line unless ``folder`` holds a LoRA adapter's two files."""
    for needed in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / needed).is_file():
            raise OptionError(f"{folder} is not a LoRA adapter folder (no {needed}); write one "
                              "with genzoo finetune --lora-rank R")


@click.command("merge")
@click.argument("adapter", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help=f"The full model folder to write ({CONFIG_NAME}, {WEIGHTS_NAME}, {CARD_NAME}).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def merge_command(adapter: str, out: str, as_json: bool) -> None:
    """Merge a LoRA adapter folder into its base (verified by sha256) and save the result
    as a full model folder that loads without peft."""
    import json

    from genzoo.api import load
    from genzoo.engine.lora import adapter_of, merge
    folder = Path(adapter)
    check_adapter_folder(folder)
    if Path(out).resolve() == folder.resolve():
        raise OptionError("--out must differ from the adapter folder (the adapter is kept)")
    if Path(out).is_dir() and any(Path(out).iterdir()):
        raise OptionError(f"--out {out} is not empty; choose a new folder")
    model = load(folder, device="cpu", dtype="fp32")
    attached = adapter_of(model)
    if attached is None:  # genzoo.load found adapter files but attached nothing
        raise OptionError(f"{folder} did not load as a LoRA adapter; check its {ADAPTER_CONFIG}")
    base = attached.base["name"]
    merge(model)
    model.save_pretrained(out, card={"summary": f"{base} with the LoRA adapter {folder} "
                                                "merged into its weights by genzoo."})
    if as_json:
        click.echo(json.dumps({"adapter": str(folder), "base": base, "folder": out}))
    else:
        click.echo(f"merged {folder} into {base} -> {out}")
