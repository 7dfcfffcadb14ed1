"""Fault injection, finetune: the user's files in ``--out`` are never replaced silently, one run
holds a folder at a time, metrics.jsonl is only appended to, and bad flags, foreign or damaged
checkpoints and failing disks are one line each (no traceback, no library warning first)."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from genzoo.engine.checkpoint import latest_checkpoint
from genzoo.cli import cli
from genzoo.errors import OptionError, OutputError, TrainingDivergedError, WeightsError
from genzoo.fsutil import exclusive_lock
from genzoo.engine.train import finetune
from genzoo.engine.parts import RUN_LOCK, RUN_MARKER

from _tiny import TinyModel, tiny_data

USER_FILES = {"README.md": "my notes\n", "config.json": '{"mine": true}\n',
              "metrics.jsonl": '{"my": "row"}\n'}


def _model(seed: int = 0, **config) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel(config)


def _run(out: Path, steps: int = 4, model: TinyModel | None = None, **options):
    return finetune(model or _model(), tiny_data(), steps=steps, out=out, progress=False,
                    log_every=2, **options)


def _user_folder(path: Path) -> Path:
    path.mkdir()
    for name, text in USER_FILES.items():
        (path / name).write_text(text)
    return path


def _one_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# ---- output safety --------------------------------------------------------------------------
def test_a_folder_genzoo_did_not_make_is_refused_and_left_alone(tmp_path):
    out = _user_folder(tmp_path / "mine")
    with pytest.raises(OutputError, match="genzoo did not write .*pass --overwrite"):
        _run(out)
    assert {p.name: p.read_text() for p in out.iterdir()} == USER_FILES


def test_overwrite_replaces_them_and_the_folder_becomes_genzoos(tmp_path):
    out = _user_folder(tmp_path / "mine")
    result = _run(out, overwrite=True)
    assert result.folder == out and (out / RUN_MARKER).is_file()
    assert "genzoo" in json.loads((out / "config.json").read_text())
    _run(out)  # genzoo's own folder now: a second run needs no --overwrite


def test_resume_into_a_genzoo_folder_keeps_working(tmp_path):
    out = tmp_path / "run"
    assert _run(out, steps=6, save_every=2, stop_after=2).stopped_early
    (out / RUN_MARKER).unlink()  # a folder from before the marker: its checkpoints vouch for it
    result = _run(out, steps=6, resume=True)
    assert result.folder == out and result.steps == 6


def test_a_fresh_run_does_not_mix_with_an_earlier_runs_checkpoints(tmp_path):
    out = tmp_path / "run"
    _run(out, steps=6, stop_after=2)
    with pytest.raises(OutputError, match="checkpoints of an earlier run: pass --resume"):
        _run(out, steps=6)
    _run(out, steps=6, overwrite=True)
    assert latest_checkpoint(out / "checkpoints") is None  # the stale ones went


def test_cli_refuses_a_users_folder_in_one_line(tmp_path):
    out = _user_folder(tmp_path / "mine")
    np.save(tmp_path / "x.npy", np.random.rand(8, 1, 28, 28).astype(np.float32))
    line = _one_line(CliRunner().invoke(cli, ["finetune", "vae-mnist", "--data",
                                              str(tmp_path / "x.npy"), "--steps", "2",
                                              "--out", str(out)]))
    assert "--overwrite" in line and "README.md" in line
    assert {p.name: p.read_text() for p in out.iterdir()} == USER_FILES


# ---- one run per folder ---------------------------------------------------------------------
def test_a_second_run_is_refused_naming_the_holders_pid(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / RUN_MARKER).write_text("")
    with exclusive_lock(out / RUN_LOCK):  # a second open file description: a second holder
        with pytest.raises(OutputError, match=f"in use by another finetune \\(pid {os.getpid()}\\)"):
            _run(out)
    _run(out)  # released: the folder is usable again


def test_a_killed_holder_releases_the_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / RUN_MARKER).write_text("")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from genzoo.fsutil import exclusive_lock\n"
         f"with exclusive_lock({str(out / RUN_LOCK)!r}):\n print('held', flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=f"pid {holder.pid}"):
            _run(out)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _run(out).folder == out


def test_metrics_are_appended_never_truncated(tmp_path):
    out = tmp_path / "run"
    _run(out)
    first = (out / "metrics.jsonl").read_text().splitlines()
    _run(out)
    both = (out / "metrics.jsonl").read_text().splitlines()
    assert both[:len(first)] == first and len(both) == 2 * len(first)
    assert all(json.loads(line) for line in both)


# ---- bad flags ------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, says", [
    (["--lr", "-1"], "lr must be above 0"), (["--lr", "nan"], "lr must be a number, got nan"),
    (["--lr", "0"], "lr must be above 0"), (["--batch-size", "0"], "batch_size must be at least 1"),
    (["--batch-size", "-1"], "batch_size must be at least 1"),
    (["--stop-after", "-1"], "stop_after must be at least 1"),
    (["--steps", "0"], "steps must be at least 1"), (["--save-every", "0"], "save_every must")])
def test_bad_finetune_flags_are_one_line(tmp_path, flags, says):
    line = _one_line(CliRunner().invoke(cli, ["finetune", "vae-mnist", "--data", "mnist",
                                              "--out", str(tmp_path / "o"), *flags]))
    assert says in line
    assert not (tmp_path / "o").exists()


def test_bad_values_through_the_api(tmp_path):
    for bad in (dict(lr=float("inf")), dict(batch_size=2.5), dict(ema_decay=1.5),
                dict(stop_after=0), dict(warmup=-1)):
        with pytest.raises(OptionError):
            _run(tmp_path / "o", **bad)


# ---- checkpoints that do not fit ------------------------------------------------------------
def _stopped(out: Path) -> Path:
    _run(out, steps=6, stop_after=2)
    return latest_checkpoint(out / "checkpoints")


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    _stopped(tmp_path / "run")
    other = _model(latent=5)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(WeightsError, match=r"written by another model \(tensor '(enc|dec)\.weight'"):
        _run(tmp_path / "run", steps=6, resume=True, model=other)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


@pytest.mark.parametrize("damage, says", [
    (lambda c: (c / "state.safetensors").write_bytes((c / "state.safetensors").read_bytes()[:200]),
     "unreadable checkpoint"),
    (lambda c: (c / "state.json").write_text("{not json"), "unreadable checkpoint"),
    (lambda c: (c / "state.json").write_text("[1, 2]"), "malformed state.json"),
    (lambda c: (c / "state.json").write_text('{"step": 2, "optimizers": {}}'), "checkpoint lacks"),
])
def test_a_damaged_checkpoint_is_one_line(tmp_path, damage, says):
    damage(_stopped(tmp_path / "run"))
    with pytest.raises(WeightsError, match=says) as err:
        _run(tmp_path / "run", steps=6, resume=True)
    msg = str(err.value)
    assert "\n" not in msg and ("delete it" in msg or "afresh" in msg)


# ---- disks that fail ------------------------------------------------------------------------
def test_a_full_disk_during_a_checkpoint_is_one_line(tmp_path, monkeypatch):
    import safetensors.torch
    real = safetensors.torch.save_file
    calls = []

    def fills_up(tensors, path, *a, **k):
        calls.append(path)
        if len(calls) > 1:  # the first checkpoint fits, the second does not
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *a, **k)
    monkeypatch.setattr(safetensors.torch, "save_file", fills_up)
    with pytest.raises(OutputError) as err:
        _run(tmp_path / "run", steps=8, save_every=2)
    msg = str(err.value)
    assert "No space left on device" in msg and "step-0000002" in msg and "\n" not in msg
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-0000002"


def test_a_read_only_folder_is_one_line(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *a, **k):
        if str(path).endswith("metrics.jsonl") and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a, **k)
    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OutputError, match=r"cannot write to --out .*\(Read-only file system\)"):
        _run(tmp_path / "run")


# ---- no library warning ahead of the error --------------------------------------------------
class _WarnsThenDiverges(TinyModel):
    def training_loss(self, images):
        loss = super().training_loss(images)
        if self.calls >= 3:  # as PyTorch does when a run goes bad
            warnings.warn("a library's three-line warning", UserWarning)
        return loss


def test_the_nan_loss_error_comes_alone(tmp_path):
    torch.manual_seed(0)
    model = _WarnsThenDiverges({"nan_at_call": 3})
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(TrainingDivergedError, match="at step 3"):
            _run(tmp_path / "run", steps=6, model=model)
    assert [str(w.message) for w in shown] == []


def _safetensors_full_disk(*_a, **_k):
    """What safetensors raises when the disk fills: its own error, the OS error inside it."""
    from safetensors import SafetensorError
    raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                          'message: "No space left on device" })')


def _os_full_disk(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("fill", [_os_full_disk, _safetensors_full_disk])
def test_a_full_disk_during_a_cli_checkpoint_is_one_line_and_resumable(tmp_path, monkeypatch,
                                                                       fill):
    import safetensors.torch
    real = safetensors.torch.save_file
    calls = []

    def fills_up(tensors, path, *a, **k):
        calls.append(path)
        if len(calls) > 1:  # the first checkpoint fits, the second does not
            return fill()
        return real(tensors, path, *a, **k)
    monkeypatch.setattr(safetensors.torch, "save_file", fills_up)
    np.save(tmp_path / "x.npy", np.random.rand(8, 1, 28, 28).astype(np.float32))
    out = tmp_path / "run"
    args = ["finetune", "vae-mnist", "--data", str(tmp_path / "x.npy"), "--steps", "6",
            "--batch-size", "4", "--save-every", "2", "--out", str(out)]
    line = _one_line(CliRunner().invoke(cli, args))
    assert "the disk is full" in line and str(out) in line and "step-0000002" in line
    checkpoints = out / "checkpoints"
    assert latest_checkpoint(checkpoints).name == "step-0000002"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step-0000002"]
    monkeypatch.setattr(safetensors.torch, "save_file", real)  # space freed: resume finishes
    done = CliRunner().invoke(cli, [*args, "--resume"])
    assert done.exit_code == 0, done.output
    assert (out / "model.safetensors").is_file()
