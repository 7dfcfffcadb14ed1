"""Evaluation on many processes: ``torchrun -m genzoo eval`` reports the figures one process
reports (each rank measures the batches it samples; the features are gathered in sample
order), once, and two ranks filling an empty reference-statistics cache leave one good entry.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

#: Figures that are timings: the only ones allowed to differ between world sizes.
TIMINGS = {"samples_per_s", "sample_seconds"}


def _figures(report: dict) -> dict:
    """The report less its timings, floats compared to 1e-5: the samples are bitwise equal, but
    a BLAS sums a feature net's products in an order that depends on its thread count and batch
    shape (in CI: FD 23.0732636 from two ranks against 23.0732620 from one process)."""
    return {k: pytest.approx(v, rel=1e-5) if isinstance(v, float) else v
            for k, v in report.items() if k not in TIMINGS}
ARGS = ["diffusion-mnist", "-n", "40", "--batch-size", "6", "--steps", "2", "--json"]


def _one_process() -> dict:
    """``genzoo eval ARGS`` in this process (the reference figures)."""
    from click.testing import CliRunner
    from genzoo.cli import cli
    done = CliRunner().invoke(cli, ["eval", *ARGS])
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


@pytest.mark.slow
def test_torchrun_eval_equals_one_process_and_prints_once(tmp_path):
    home = tmp_path / "home"  # an empty cache: both ranks need the reference statistics
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENZOO_HOME": str(home)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "genzoo", "eval", *ARGS, "-o", str(tmp_path / "eval.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads(done.stdout)  # exactly one JSON document: rank 0 alone printed
    assert json.loads((tmp_path / "eval.json").read_text()) == two
    one = _one_process()
    assert {k: v for k, v in two.items() if k not in TIMINGS} == _figures(one)
    # the figures are real ones, and the labelled second draw was sharded too
    assert 0 < two["precision"] <= 1 and two["fd"] > 0 and "label_accuracy" in two
    assert sum(two["class_histogram"]) == 40
    cache = sorted(p.suffix for p in (home / "refstats").iterdir())
    assert cache == [".json", ".safetensors"]  # one entry, no temp file left beside it


@pytest.mark.slow
def test_torchrun_eval_of_a_text_model_equals_one_process(tmp_path):
    import torch
    from click.testing import CliRunner
    from genzoo.cli import cli
    from genzoo_textlm.model import GPTModel
    torch.manual_seed(0)
    GPTModel.from_config(dict(vocab_size=256, n_positions=64, n_embd=32, n_layer=2,
                              n_head=2)).save_pretrained(tmp_path / "gpt")
    (tmp_path / "held_out.txt").write_text("the quick brown fox jumps over the lazy dog.\n" * 8)
    args = ["eval", str(tmp_path / "gpt"), "--data", str(tmp_path / "held_out.txt"), "-n", "5",
            "--batch-size", "2", "--max-new-tokens", "16", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "genzoo", *args],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads(done.stdout)
    one = CliRunner().invoke(cli, args)
    assert one.exit_code == 0, one.output
    one = json.loads(one.output)
    assert {k: v for k, v in two.items() if k not in TIMINGS} == _figures(one)
    assert two["distinct_1"] > 0 and two["n"] == 5
