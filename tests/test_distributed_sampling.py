"""Sampling on many processes: ``torchrun -m genzoo sample`` writes the bytes one process
writes, and ``sample``/``iter_samples`` inside a process group shard as ``distributed`` says.

The group tests start real torchrun jobs: 2 (or 3) gloo processes on the CPU, one thread each.
The API checks run in this file's own ``__main__`` (started under torchrun by
``test_the_api_in_a_process_group``): each rank records what it saw in a JSON file.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from genzoo.samples import Samples

TESTS = Path(__file__).resolve().parent
TIMEOUT = 240  # seconds for one torchrun job: a hang fails the test instead of the suite


def torchrun(world: int, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc-per-node WORLD ARGS`` with one
    thread per rank."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", str(world), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=cwd)


def one_process(*args: str) -> str:
    """``genzoo ARGS`` in this process (click's runner); its stdout."""
    from click.testing import CliRunner
    from genzoo.cli import cli
    done = CliRunner().invoke(cli, list(args))
    assert done.exit_code == 0, done.output
    return done.output


@pytest.fixture(scope="module")
def tiny_diffusion(tmp_path_factory) -> Path:
    """A random 1x8x8 diffusion model folder (sampled with 3 steps: fast)."""
    from genzoo_diffusion.model import DiffusionModel
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("diffusion") / "tiny"
    DiffusionModel({"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1,
                                                      "attention": []}}).save_pretrained(folder)
    return folder


# ---- Samples as bytes ---------------------------------------------------------------------
@dataclass
class _AudioSamples(Samples):
    """A Samples with a field added later (what a future audio modality would add)."""

    audio: Any = None
    rate: int = 0


def test_samples_round_trip_through_bytes_without_pickle(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("pickle used")
    monkeypatch.setattr(pickle, "dumps", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Pickler", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    images = Samples(images=torch.rand(3, 1, 5, 5).expand(3, 1, 5, 5),
                     meta={"seed": 4, "steps": [1, 2], "x": None, "start": 6, "name": "é"})
    back = Samples.from_bytes(images.to_bytes())
    assert torch.equal(back.images, images.images) and back.images.dtype == torch.float32
    assert back.meta == images.meta and back.texts is None
    texts = Samples(texts=["a", "", "b\nc ü"], meta={"finish_reasons": ["stop", "length"]})
    assert Samples.from_bytes(texts.to_bytes()) == texts
    audio = _AudioSamples(audio=torch.randn(2, 100, dtype=torch.float64), rate=16000,
                          meta={"k": 1})
    back = _AudioSamples.from_bytes(audio.to_bytes())
    assert torch.equal(back.audio, audio.audio) and back.audio.dtype == torch.float64
    assert back.rate == 16000 and back.images is None and back.meta == {"k": 1}


def test_bad_bytes_and_unsendable_meta_are_one_line_errors():
    from genzoo.errors import SampleError
    with pytest.raises(SampleError, match="not readable"):
        Samples.from_bytes(b"\x00" * 20)
    with pytest.raises(SampleError, match="cannot be sent"):
        Samples(texts=["a"], meta={"f": print}).to_bytes()


def test_distributed_mode_is_checked_and_off_outside_a_group():
    from genzoo.errors import OptionError
    from _tiny import TinyModel
    model = TinyModel()
    with pytest.raises(OptionError, match="distributed must be one of all, main, local, off"):
        model.sample(2, distributed="everyone")
    for mode in ("all", "main", "local", "off"):  # outside a group: this process alone
        assert torch.equal(model.sample(5, batch_size=2, distributed=mode).images,
                           model.sample(5, batch_size=2).images)


# ---- the CLI under torchrun ---------------------------------------------------------------
@pytest.mark.slow
def test_torchrun_sample_writes_one_process_bytes_and_reports_once(tiny_diffusion, tmp_path):
    args = [str(tiny_diffusion), "-n", "10", "--batch-size", "3", "--steps", "3"]
    one_process("sample", *args, "-o", str(tmp_path / "one.npz"))
    done = torchrun(2, "-m", "genzoo", "sample", *args, "-o", str(tmp_path / "two.npz"),
                    "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "two.npz").read_bytes() == (tmp_path / "one.npz").read_bytes()
    assert done.stdout.count('"written"') == 1  # rank 0 alone prints
    assert json.loads(done.stdout)["written"] == [str(tmp_path / "two.npz")]


@pytest.mark.slow
def test_three_ranks_write_the_same_grid(tiny_diffusion, tmp_path):
    args = [str(tiny_diffusion), "-n", "10", "--batch-size", "2", "--steps", "3"]
    one_process("sample", *args, "-o", str(tmp_path / "one.png"))
    done = torchrun(3, "-m", "genzoo", "sample", *args, "-o", str(tmp_path / "three.png"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "three.png").read_bytes() == (tmp_path / "one.png").read_bytes()
    assert done.stdout.count("10 samples from") == 1
    assert not list(tmp_path.glob(".*"))  # no temp file left by any rank


@pytest.mark.slow
def test_torchrun_text_samples_equal_one_process(tmp_path):
    from genzoo_textlm.model import GPTModel
    torch.manual_seed(0)
    GPTModel.from_config(dict(vocab_size=256, n_positions=64, n_embd=32, n_layer=2,
                              n_head=2)).save_pretrained(tmp_path / "gpt")
    args = [str(tmp_path / "gpt"), "-n", "5", "--batch-size", "2", "--max-new-tokens", "12"]
    one_process("sample", *args, "-o", str(tmp_path / "one.jsonl"))
    done = torchrun(2, "-m", "genzoo", "sample", *args, "-o", str(tmp_path / "two.jsonl"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert len((tmp_path / "two.jsonl").read_text().splitlines()) == 5


@pytest.mark.slow
def test_an_output_rank_zero_cannot_open_fails_every_rank_in_one_line(tiny_diffusion,
                                                                      tmp_path):
    done = torchrun(2, "-m", "genzoo", "sample", str(tiny_diffusion), "-n", "4",
                    "-o", str(tmp_path / "x.gif"))
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 2 and lines[0] == lines[1] and "x.gif" in lines[0], done.stderr[-2000:]
    assert 'genzoo/' not in done.stderr.split("Traceback")[0]  # no genzoo traceback
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_an_interpolation_under_torchrun_is_rank_zero_s_alone(tmp_path):
    args = ["gan-mnist", "--interpolate", "3", "-n", "4"]
    one_process("sample", *args, "-o", str(tmp_path / "one.png"))
    done = torchrun(2, "-m", "genzoo", "sample", *args, "-o", str(tmp_path / "two.png"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "two.png").read_bytes() == (tmp_path / "one.png").read_bytes()
    assert done.stdout.count("4 samples from") == 1


# ---- the API in a process group -----------------------------------------------------------
EXIT_SCRIPT = """
import atexit
import torch.distributed as dist
from genzoo.devices import all_gather_bytes, init_distributed
rank, world = init_distributed()
assert all_gather_bytes(bytes([rank])) == [bytes([r]) for r in range(world)]
atexit._run_exitfuncs()  # what the interpreter runs at exit, run now to look at its effect
print("left" if not dist.is_initialized() else "still in the group", end=" ", flush=True)
"""


@pytest.mark.slow
def test_the_group_genzoo_started_is_left_at_exit(tmp_path):
    """A process group left to the interpreter's finalisation can abort a rank at exit (gloo:
    "terminate called without an active exception"); the group init_distributed starts is
    destroyed by an exit handler while Python still runs."""
    script = tmp_path / "leave.py"
    script.write_text(EXIT_SCRIPT)
    done = torchrun(2, str(script))
    assert done.returncode == 0, done.stderr[-3000:]
    # the two ranks share one stdout: their lines may interleave
    assert done.stdout.count("left") == 2 and "still" not in done.stdout
    assert "terminate" not in done.stderr


@pytest.mark.slow
def test_the_api_in_a_process_group(tmp_path):
    done = torchrun(2, str(Path(__file__)), str(tmp_path), cwd=TESTS)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, s in enumerate(seen):
        assert s["world"] == 2 and s["all_equal_one_process"] and s["first_k"], s
        assert s["main"] == (10 if rank == 0 else 0), s
        assert s["local_starts"] == ([0, 6] if rank == 0 else [3, 9]), s
        assert s["local_equal"] and s["off_alone"], s
        assert s["progress"] == ([6, 10] if rank == 0 else []), s  # per round
        assert s["bad_mode"].startswith("OptionError"), s
        # a failure in generate() on rank 1: the same one line on both ranks, quickly
        assert s["failure"] == "SampleError: sampling failed on rank 1 of 2: RuntimeError: " \
                               "rank 1 broke at sample 3", s
        assert s["failure_seconds"] < 10, s
        assert s["option_failure"].startswith("OptionError: sampling failed on rank 1 of 2: ")


def _worker(out: Path) -> None:
    """Run under torchrun (2 ranks): sample in every mode, record what this rank saw."""
    import torch.distributed as dist
    sys.path.insert(0, str(TESTS))
    from _tiny import TinyModel
    from genzoo.devices import init_distributed
    from genzoo.errors import OptionError
    rank, world = init_distributed()

    def refuse(*a, **k):
        raise AssertionError("pickle used for the exchange")
    for name in ("all_gather_object", "gather_object", "broadcast_object_list",
                 "send_object_list", "recv_object_list", "scatter_object_list"):
        setattr(dist, name, refuse)
    dist.distributed_c10d._pickler = refuse  # type: ignore[attr-defined]
    dist.distributed_c10d._unpickler = refuse  # type: ignore[attr-defined]
    pickle.dumps = pickle.loads = refuse  # type: ignore[assignment]

    class Breaks(TinyModel):
        def generate(self, generators, temperature=1.0):
            if dist.get_rank() == 1:
                raise self.error  # type: ignore[attr-defined]
            return super().generate(generators, temperature)

    torch.manual_seed(0)
    model = TinyModel()
    seen: dict[str, Any] = {"world": world}
    if rank == 1:  # "off" makes no collective: rank 1 alone may sample now
        seen["off_alone"] = torch.allclose(
            model.sample(10, batch_size=3, distributed="off").images,
            model.sample(10, batch_size=10, distributed="off").images, atol=1e-6)
    else:
        seen["off_alone"] = True
    alone = model.sample(10, batch_size=3, distributed="off")
    counts: list[int] = []
    full = model.sample(10, batch_size=3, progress=counts.append)
    seen["progress"] = counts
    seen["all_equal_one_process"] = torch.equal(full.images, alone.images) and \
        full.meta == alone.meta
    # sample i depends only on (seed, i): a shorter call's last batch is smaller, so its
    # arithmetic may differ in the last bit
    seen["first_k"] = torch.allclose(model.sample(4, batch_size=3).images, full.images[:4],
                                     atol=1e-6)
    seen["main"] = len(model.sample(10, batch_size=3, distributed="main"))
    local = list(model.iter_samples(10, batch_size=3, distributed="local"))
    seen["local_starts"] = [b.meta["start"] for b in local]
    seen["local_equal"] = all(torch.equal(b.images, full.images[b.meta["start"]:][:len(b)])
                              for b in local)
    try:
        model.sample(2, distributed="nope")
    except OptionError as e:
        seen["bad_mode"] = f"OptionError: {e}"
    broken = Breaks()
    broken.load_state_dict(model.state_dict())
    broken.error = RuntimeError(f"rank {rank} broke at sample 3")
    t0 = time.perf_counter()
    try:
        broken.sample(10, batch_size=3)
    except Exception as e:  # noqa: BLE001 - recorded for the test to check
        seen["failure"] = f"{type(e).__name__}: {e}"
    seen["failure_seconds"] = time.perf_counter() - t0
    broken.error = OptionError("a family's own refusal")
    try:
        broken.sample(10, batch_size=3, distributed="main")
    except Exception as e:  # noqa: BLE001
        seen["option_failure"] = f"{type(e).__name__}: {e}"
    (out / f"rank{rank}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
