"""The benchmark harness's own measuring tools (benchmarks/ is scripts, not a package)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_peak_rss_is_the_child_s_own_not_the_forking_parent_s(bench, tmp_path):
    from peak_rss import peak_rss_mib
    script = tmp_path / "grow.py"
    script.write_text("import sys\nblob = bytearray(int(sys.argv[1]) * 2**20)\n")
    ballast = bytearray(600 * 2**20)  # this process: far bigger than the child will be
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched, so it is resident
    small, big = peak_rss_mib([str(script), "10"]), peak_rss_mib([str(script), "200"])
    assert small < 100, small  # not the parent's 600+ MiB, which wait4 would report
    assert 150 < big - small < 260, (small, big)
    del ballast


def test_peak_rss_reports_a_failing_command(bench, tmp_path):
    from peak_rss import peak_rss_mib
    script = tmp_path / "fail.py"
    script.write_text("raise SystemExit('no weights here')\n")
    with pytest.raises(SystemExit, match="no weights here"):
        peak_rss_mib([str(script)])


def test_results_table_shows_every_row_with_its_ratio_and_verdict(bench):
    from run import markdown
    rows = [{"benchmark": "load", "genzoo": 0.0158, "peer": 0.161, "peer_name": "torch.load",
             "unit": "s", "ratio": 10.2, "goal": ">= 2.0", "ok": True},
            {"benchmark": "rss", "genzoo": 24.9, "peer": None, "peer_name": "", "unit": "MiB",
             "ratio": None, "goal": "report", "ok": True},
            {"benchmark": "sample", "genzoo": 14.6, "peer": 13.7, "peer_name": "diffusers",
             "unit": "samples/s", "ratio": 0.9, "goal": ">= 1.0", "ok": False}]
    lines = markdown(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert "| load | 16 ms | 161 ms (torch.load) | 10.20x | >= 2.0 | yes |" in lines
    assert "| rss | 24.9 MiB | - | - | report | yes |" in lines
    assert lines[-1].endswith("| 0.90x | >= 1.0 | NO |")


def test_pipeline_sides_alternate_and_report_medians_per_network(bench):
    """bench_text2image's and bench_audioldm's shared harness: warm-up at a capped step count,
    rounds in alternating order, each call split by network, medians and the ratio."""
    import torch
    from _pipeline_bench import Split, side_by_side, speed_row
    calls: list[tuple[str, int]] = []
    nets = {side: torch.nn.Identity() for side in ("genzoo", "diffusers")}

    def run(side: str):
        def draw(n: int, steps: int) -> torch.Tensor:
            calls.append((side, steps))
            return nets[side](torch.full((n, 3), 1.0 if side == "genzoo" else 1.25))
        return draw
    runs = {side: run(side) for side in nets}
    splits = {side: Split(unet=nets[side], vae_decoder=None) for side in nets}
    secs, parts, made, diff = side_by_side(runs, splits, 2, rounds=3, steps=5)
    assert calls == [("genzoo", 2), ("diffusers", 2), ("genzoo", 5), ("diffusers", 5),
                     ("diffusers", 5), ("genzoo", 5), ("genzoo", 5), ("diffusers", 5)]
    assert diff == 0.25 and made["genzoo"].shape == (2, 3)
    assert all(set(p) == {"unet", "rest"} for side in parts for p in parts[side])
    row = speed_row(2, secs, parts, diff, "image", {"extra": 1})
    med = sorted(secs["genzoo"])[1]
    assert row["genzoo"]["images_per_s"] == 2 / med and row["genzoo"]["s_per_image"] == med / 2
    assert row["ratio"] == row["genzoo"]["images_per_s"] / row["diffusers"]["images_per_s"]
    assert row["extra"] == 1 and row["max_abs_diff"] == 0.25
