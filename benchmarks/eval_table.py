"""Sample quality of the first-party image models, side by side with the real-data floor.

Each row draws 1,000 samples (DDPM-1000 only --ddpm-n, default 300: it is slow on a CPU),
measures them in the MNIST classifier's feature space against ``mnist:ref`` (500 held-out
digits) and prints a markdown table: FD, KID, precision, recall, class entropy, max class
share and seconds per 1,000 samples on this machine. The "real data" row measures the 500
``mnist:floor`` digits the same way: the best any model can score at this sample size.

    python benchmarks/eval_table.py                     # every row (about 40 CPU minutes)
    python benchmarks/eval_table.py --rows floor,vae-mnist --n 500   # rows by model name
    python benchmarks/eval_table.py --resume            # skip rows already in the JSON
    python benchmarks/eval_table.py --path vae-mnist=runs/vae-mnist   # an unbundled run

Results (all numbers, every row) go to benchmarks/eval_results.json after each row, so an
interrupted run loses at most one row. Models whose weights are not built yet are skipped.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

HERE = Path(__file__).resolve().parent
#: (row id, model, sampling options); "floor" is the real-data row.
ROWS = [
    ("real data (floor)", None, {}),
    ("diffusion-mnist/ddpm-1000", "diffusion-mnist", {"sampler": "ddpm", "steps": 1000}),
    ("diffusion-mnist/ddim-50", "diffusion-mnist", {"sampler": "ddim", "steps": 50}),
    ("diffusion-mnist/dpm++-10", "diffusion-mnist", {"sampler": "dpmsolver++", "steps": 10}),
    ("diffusion-mnist/dpm++-20 (default)", "diffusion-mnist", {}),
    # the default again on DDPM-1000's sample count and seeds: the like-for-like comparison
    ("diffusion-mnist/dpm++-20 default (ddpm-n)", "diffusion-mnist", {"_n": "ddpm"}),
    ("diffusion-mnist/ddim-50 (ddpm-n)", "diffusion-mnist", {"sampler": "ddim", "steps": 50, "_n": "ddpm"}),
    # the default in bf16 autocast: the CPU lever (native on AVX512-BF16 / AMX CPUs)
    ("diffusion-mnist/dpm++-20 bf16", "diffusion-mnist", {"_dtype": "bf16"}),
    ("vae-mnist", "vae-mnist", {}),
    ("gan-mnist", "gan-mnist", {}),
]
COLUMNS = ["model / sampler", "n", "FD", "KID", "precision", "recall", "class entropy",
           "max class share", "s / 1k samples"]


def _row_cells(row_id: str, r: dict) -> list[str]:
    def num(key, fmt, scale=1.0):
        v = r.get(key)
        return format(v * scale, fmt) if isinstance(v, (int, float)) else "-"
    spk = f"{1000 / r['samples_per_s']:.1f}" if r.get("samples_per_s") else "-"
    return [row_id, str(r["n"]), num("fd", ".2f"), num("kid", ".3f"), num("precision", ".3f"),
            num("recall", ".3f"), num("class_entropy", ".3f"), num("class_max_share", ".3f"), spk]


def markdown(results: dict[str, dict]) -> str:
    """The results as a markdown table, rows in ROWS order."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    order = [r[0] for r in ROWS] + [k for k in results if k not in {r[0] for r in ROWS}]
    for row_id in order:
        if row_id in results:
            lines.append("| " + " | ".join(_row_cells(row_id, results[row_id])) + " |")
    return "\n".join(lines)


def _save(path: Path, results: dict, meta: dict) -> None:
    from genzoo.fsutil import atomic_write_text
    atomic_write_text(path, json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


@click.command()
@click.option("--rows", help="Comma-separated row ids or model names (default: all).")
@click.option("--n", default=1000, show_default=True, help="Samples per row.")
@click.option("--ddpm-n", default=300, show_default=True, help="Samples for DDPM-1000.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default=str(HERE / "eval_results.json"), show_default=True)
@click.option("--resume", is_flag=True, help="Keep rows already in --out; run the others (and those named in --rows again).")
@click.option("--path", "paths", multiple=True, metavar="NAME=FOLDER",
              help="Load model NAME from a folder (e.g. a training run not yet bundled).")
def main(rows, n, ddpm_n, seed, out, resume, paths):
    """Evaluate the first-party image models and print a markdown table."""
    import torch
    torch.set_num_threads(int(os.environ.get("GENZOO_THREADS", torch.get_num_threads())))
    import genzoo
    from genzoo.errors import GenzooError
    from genzoo.eval.metrics import evaluate, real_floor
    wanted = {w.strip() for w in rows.split(",")} if rows else None
    folders = dict(p.split("=", 1) for p in paths if "=" in p)
    out = Path(out)
    results = {}
    if resume and out.is_file():
        results = json.loads(out.read_text()).get("results", {})
    from genzoo.devices import describe_machine
    meta = {"cpu": describe_machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "genzoo": genzoo.__version__, "seed": seed,
            "reference": "mnist:ref", "feature": "mnist",
            "date": time.strftime("%Y-%m-%d")}
    loaded: dict[tuple[str, str], object] = {}  # (model, dtype)
    failed: dict[str, str] = {}
    for row_id, name, options in ROWS:
        if wanted and row_id not in wanted and (name or "floor") not in wanted:
            continue
        if row_id in results and not wanted:  # rows named in --rows are measured again
            click.echo(f"{row_id}: kept from {out}", err=True)
            continue
        if name in failed:
            click.echo(f"{row_id}: skipped ({name}: {failed[name]})", err=True)
            continue
        t0 = time.perf_counter()
        try:
            if name is None:
                result = real_floor()
            else:
                options = dict(options)
                dtype = options.pop("_dtype", "fp32")
                if (name, dtype) not in loaded:
                    loaded[name, dtype] = genzoo.load(folders.get(name, name), device="cpu",
                                                      dtype=dtype)
                small = options.pop("_n", None) == "ddpm" or options.get("sampler") == "ddpm"
                result = evaluate(loaded[name, dtype], n=ddpm_n if small else n, seed=seed,
                                  labels=False,  # label accuracy: eval_labels.py
                                  progress=sys.stderr.isatty(), **options)
        except GenzooError as e:
            if name is not None and not any(k[0] == name for k in loaded):
                failed[name] = "cannot load" if len(str(e)) > 120 else str(e)
            click.echo(f"{row_id}: skipped ({e})", err=True)
            continue
        result["loaded_from"] = folders.get(name, name) if name else "mnist:floor"
        results[row_id] = result
        _save(out, results, meta)
        click.echo(f"{row_id}: done in {time.perf_counter() - t0:.0f} s "
                   f"(FD {result['fd']:.2f})", err=True)
    click.echo(markdown(results))
    click.echo(f"\nJSON: {out}", err=True)


if __name__ == "__main__":
    main()
