"""The finetune engine: schedule, accumulation, resume equivalence, kills, NaN, DDP on gloo."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                   register_optimizer_step_pre_hook)

from genzoo.engine.checkpoint import latest_checkpoint
from genzoo.errors import OptionError, TrainingDivergedError
from genzoo.engine.train import finetune, lr_at

from _tiny import TinyModel, tiny_data

TESTS = Path(__file__).parent


def _weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def _fresh(seed=0, **config):
    torch.manual_seed(seed)
    return TinyModel(config)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    lrs = [lr_at(s, 100, 1.0, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_training_lowers_the_loss_and_saves_a_loadable_folder(tmp_path):
    model = _fresh()
    data = tiny_data()
    with torch.no_grad():
        before = float(model.training_loss(data.images))
    result = finetune(model, data, steps=60, out=tmp_path / "run", progress=False, log_every=10)
    with torch.no_grad():
        after = float(model.training_loss(data.images))
    assert after < 0.7 * before
    assert result.folder == tmp_path / "run" and result.steps == 60
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [10, 20, 30, 40, 50, 60]
    loaded = TinyModel.from_pretrained(tmp_path / "run", device="cpu")
    for k, v in _weights(tmp_path / "run").items():
        assert torch.equal(loaded.state_dict()[k], v)


@contextlib.contextmanager
def _optimizer_steps(pre=None, post=None):
    """Call ``pre(optimizer)`` before and ``post(optimizer)`` after every optimizer step
    (torch's global step hooks): a window on the engine without changing it."""
    handles = []
    if pre is not None:
        handles.append(register_optimizer_step_pre_hook(lambda opt, args, kwargs: pre(opt)))
    if post is not None:
        handles.append(register_optimizer_step_post_hook(lambda opt, args, kwargs: post(opt)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def test_ema_weights_are_what_gets_saved(tmp_path):
    # The average is recomputed here from the live weights after every step (with the
    # engine's warm-up: decay min(ema_decay, (1+s)/(10+s))); the saved file must be that,
    # not the live weights (which it would be if the EMA copy were skipped).
    model, decay = _fresh(), 0.5
    average = {k: v.detach().clone() for k, v in model.state_dict().items()}
    live: dict[str, torch.Tensor] = {}

    def after_step(opt):
        step = len(steps_seen)
        steps_seen.append(step)
        d = min(decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            live[k] = v.detach().clone()
            average[k] += (1 - d) * (live[k] - average[k])
    steps_seen: list[int] = []
    with _optimizer_steps(post=after_step):
        finetune(model, tiny_data(), steps=20, out=tmp_path / "run", progress=False,
                 ema_decay=decay)
    assert len(steps_seen) == 20
    saved = _weights(tmp_path / "run")
    for k, v in saved.items():
        assert torch.allclose(v, average[k], atol=1e-6), k
        assert (v - live[k]).abs().max() > 1e-4, f"{k}: the live weights were saved"
        assert torch.equal(v, model.state_dict()[k]), f"{k}: the model keeps the live weights"


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    # Two micro-batches of 4 must give the gradient of one batch of 8: the same samples in
    # the same order, each micro-batch's loss divided by grad_accum. Gradients are compared
    # at every optimizer step (Adam's update barely changes when a gradient is scaled, so
    # comparing weights alone would not see an undivided loss); clipping is off so the
    # gradient is the raw one.
    runs: dict[str, list[list[torch.Tensor]]] = {"big": [], "accumulated": []}
    for name, batch_size, accum in (("big", 8, 1), ("accumulated", 4, 2)):
        model = _fresh()
        grads = runs[name]
        torch.manual_seed(1)  # the training noise: 8 samples' draws either way
        with _optimizer_steps(pre=lambda opt: grads.append(
                [p.grad.detach().clone() for g in opt.param_groups for p in g["params"]])):
            finetune(model, tiny_data(), steps=5, batch_size=batch_size, grad_accum=accum,
                     grad_clip=0, progress=False)
        runs[name + "_weights"] = [list(model.state_dict().values())]
    assert len(runs["big"]) == len(runs["accumulated"]) == 5
    for step, (big, acc) in enumerate(zip(runs["big"], runs["accumulated"])):
        for gb, ga in zip(big, acc):
            assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-7), \
                f"step {step}: accumulated gradient differs by {(ga - gb).abs().max():.3g}"
    for wb, wa in zip(runs["big_weights"][0], runs["accumulated_weights"][0]):
        assert torch.allclose(wa, wb, atol=1e-5)


def _resume_script(out: Path, steps: int, stop_after: int | None, resume: bool) -> str:
    return textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(TESTS)!r})
        from _tiny import TinyModel, tiny_data
        from genzoo.engine.train import finetune
        torch.manual_seed(0)
        model = TinyModel()
        finetune(model, tiny_data(), steps={steps}, out={str(out)!r}, save_every=3,
                 stop_after={stop_after}, resume={resume}, progress=False, seed=7)
    """)


def test_resume_in_a_new_process_equals_an_uninterrupted_run(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    for script in (_resume_script(whole, 16, None, False), _resume_script(parts, 16, 8, False),
                   _resume_script(parts, 16, None, True)):
        subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert latest_checkpoint(parts / "checkpoints").name == "step-0000015"
    a, b = _weights(whole), _weights(parts)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_sigkill_during_a_checkpoint_write_keeps_the_last_complete_one(tmp_path):
    out = tmp_path / "run"
    marker = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import sys, time, pathlib, torch, safetensors.torch as st
        sys.path.insert(0, {str(TESTS)!r})
        import genzoo.engine.checkpoint as ck
        real, calls = st.save_file, [0]
        def slow_save(tensors, path, metadata=None):
            calls[0] += 1
            if calls[0] == 3:   # the third checkpoint: write half a file, then hang
                pathlib.Path(path).write_bytes(b"partial")
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(60)
            return real(tensors, path, metadata=metadata)
        st.save_file = slow_save
        from _tiny import TinyModel, tiny_data
        from genzoo.engine.train import finetune
        finetune(TinyModel(), tiny_data(), steps=20, out={str(out)!r}, save_every=2, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the child never reached its third checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    ckpt = latest_checkpoint(out / "checkpoints")
    assert ckpt is not None and ckpt.name == "step-0000004"
    load_file(str(ckpt / "state.safetensors"))  # complete and readable
    result = finetune(TinyModel(), tiny_data(), steps=8, out=out, save_every=2, resume=True,
                      progress=False)
    assert result.folder == out and (out / "model.safetensors").is_file()


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    model = _fresh(nan_at_call=6)
    with pytest.raises(TrainingDivergedError) as err:
        finetune(model, tiny_data(), steps=20, out=tmp_path / "run", save_every=2, progress=False)
    msg = str(err.value)
    assert "at step 6" in msg and "step-0000004" in msg and "\n" not in msg
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-0000004"
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(OptionError, match="steps must be at least 1"):
        finetune(_fresh(), tiny_data(), steps=0, progress=False)
    with pytest.raises(OptionError, match="--resume needs --out"):
        finetune(_fresh(), tiny_data(), steps=2, resume=True, progress=False)
    with pytest.raises(OptionError, match="grad_accum must be at least 1"):
        finetune(_fresh(), tiny_data(), steps=2, grad_accum=0, progress=False)
    with pytest.raises(OptionError, match=r"unknown finetune option\(s\) learning_rate: use "):
        finetune(_fresh(), tiny_data(), steps=2, learning_rate=0.1, progress=False)
    for bad in ("fp8", "half", 16):
        with pytest.raises(OptionError, match=f"unknown dtype {bad!r}: use auto, fp32, bf16 or "
                                              "fp16$"):
            finetune(_fresh(), tiny_data(), steps=2, dtype=bad, progress=False)
    with pytest.warns(DeprecationWarning, match="use dtype="), \
            pytest.raises(OptionError, match="unknown dtype 'fp8'"):
        finetune(_fresh(), tiny_data(), steps=2, precision="fp8", progress=False)
    with pytest.warns(DeprecationWarning), pytest.raises(OptionError, match="disagree"):
        finetune(_fresh(), tiny_data(), steps=2, precision="bf16", dtype="fp32", progress=False)


def test_the_dtype_vocabulary():
    from genzoo.devices import DTYPES, check_dtype, resolve_dtype
    assert DTYPES == ("auto", "fp32", "bf16", "fp16")
    aliases = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "BF16": "bf16",
               None: "auto", **{d: d for d in DTYPES}}
    assert {k: check_dtype(k) for k in aliases} == aliases
    for bad in ("fp8", "", "32", "int8"):
        with pytest.raises(OptionError) as err:
            check_dtype(bad)
        assert str(err.value) == f"unknown dtype {bad!r}: use auto, fp32, bf16 or fp16"
    cpu = torch.device("cpu")
    assert [resolve_dtype(d, cpu) for d in ("auto", "fp32", "bf16", "fp16", "float16")] == \
        [None, None, torch.bfloat16, torch.float16, torch.float16]
    assert resolve_dtype(torch.float32, cpu) is None and resolve_dtype(torch.bfloat16, cpu) == \
        torch.bfloat16
    # the CLI validates --dtype before the heavy imports: genzoo.devices is torch-free
    code = "import sys, genzoo.devices; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _trained(steps=4, **options):
    model = _fresh()
    torch.manual_seed(0)
    finetune(model, tiny_data(), steps=steps, progress=False, **options)
    return model.state_dict()


def test_dtype_drives_autocast_and_precision_is_its_deprecated_alias():
    fp32, bf16 = _trained(dtype="fp32"), _trained(dtype="bfloat16")
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)  # bf16 matmuls round
    assert all(torch.equal(a, b) for a, b in zip(fp32.values(), _trained(dtype="auto").values()))
    with pytest.warns(DeprecationWarning, match=r"precision=\.\.\.\) is deprecated"):
        old = _trained(precision="bf16")
    assert all(torch.equal(old[k], bf16[k]) for k in bf16)


def test_fp16_scales_the_loss_and_resumes_exactly(tmp_path):
    whole = _trained(steps=6, dtype="fp16")
    assert all(torch.isfinite(v).all() for v in whole.values())
    model = _fresh()
    result = finetune(model, tiny_data(), steps=6, out=tmp_path, dtype="fp16", stop_after=3,
                      progress=False)
    assert result.stopped_early and result.steps == 3
    meta = json.loads((latest_checkpoint(tmp_path / "checkpoints") / "state.json").read_text())
    assert meta["scalers"]["model"]["scale"] == 2.0 ** 16  # the GradScaler's state is kept
    torch.manual_seed(123)  # resume restores the RNG: this draw must not matter
    finetune(model, tiny_data(), steps=6, out=tmp_path, dtype="fp16", resume=True,
             progress=False)
    for k, v in _weights(tmp_path).items():
        assert torch.allclose(v, whole[k], atol=1e-6), k


def test_resume_without_a_checkpoint_starts_like_a_fresh_run(tmp_path):
    fresh = _trained(steps=3, seed=5)
    torch.manual_seed(99)  # an unseeded start would differ
    model = _fresh()
    finetune(model, tiny_data(), steps=3, out=tmp_path, resume=True, seed=5, progress=False)
    assert all(torch.equal(v, fresh[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_two_process_gloo_run_trains_and_only_rank_zero_writes(tmp_path):
    from genzoo_diffusion.model import DiffusionModel
    import numpy as np
    tiny = {"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1, "attention": []}}
    DiffusionModel(tiny).save_pretrained(tmp_path / "base")
    np.savez(tmp_path / "data.npz", images=np.random.default_rng(0).random((32, 8, 8)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", "-m", "genzoo", "finetune", str(tmp_path / "base"),
           "--data", str(tmp_path / "data.npz"), "--steps", "6", "--batch-size", "4",
           "--out", str(tmp_path / "ddp"), "--save-every", "3", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert sum('"loss"' in r for r in rows) == 1  # log_every=50 > steps: one final row, rank 0 only
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["steps"] == 6
    before, after = _weights(tmp_path / "base"), _weights(tmp_path / "ddp")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_loaded_model_finetunes_gently_from_its_weights(tmp_path):
    fresh = _fresh()
    finetune(fresh, tiny_data(), steps=30, out=tmp_path / "base", progress=False)
    loaded = TinyModel.from_pretrained(tmp_path / "base", device="cpu")
    assert loaded.pretrained and not _fresh().pretrained
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    a = finetune(_fresh(), tiny_data(), steps=3, progress=False, log_every=1)
    b = finetune(loaded, tiny_data(), steps=3, progress=False, log_every=1)
    assert [r["lr"] for r in b.history] == pytest.approx([0.1 * r["lr"] for r in a.history])
    # no EMA warm-up from pretrained weights: 3 steps at decay 0.9 keep most of the start
    moved = max(float((loaded.state_dict()[k] - before[k]).abs().max()) for k in before)
    assert 0 < moved < 0.05


def test_every_finetune_keyword_is_documented_as_declared():
    import inspect
    from genzoo.engine.options import FINETUNE_OPTIONS, STEPS, OUT, options_table
    guide = (TESTS.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = guide.split("## Training: the one engine", 1)[1].split("\n## ", 1)[0]
    assert options_table() in section, ("docs/plugins.md's finetune table differs from "
                                        "genzoo.engine.options: paste python -m "
                                        "genzoo.engine.options")
    keywords = [p for p in inspect.signature(finetune).parameters if p not in ("model", "data",
                                                                              "options")]
    assert keywords == [STEPS.name, OUT.name]
    rows = [line.split("|")[1].strip().strip("`") for line in options_table().splitlines()[2:]]
    assert rows == [*keywords, *FINETUNE_OPTIONS]


def test_the_declaration_drives_the_keywords_the_flags_and_the_checks():
    import dataclasses
    from click.testing import CliRunner
    from genzoo.cli import cli
    from genzoo.engine.options import FINETUNE_OPTIONS, check_keywords
    from genzoo.engine.train import FinetuneOptions
    opts = FinetuneOptions()
    assert opts.as_dict() == {n: o.default for n, o in FINETUNE_OPTIONS.items()
                              if o.alias_of is None}
    import re
    from genzoo.engine.options import LORA_OPTIONS
    shown = CliRunner().invoke(cli, ["finetune", "--help"]).output
    flags = set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", shown, flags=re.M))
    offered = {o.flag for o in FINETUNE_OPTIONS.values() if o.cli and o.alias_of is None}
    lora_flags = {f"--lora-{name}" for name in LORA_OPTIONS}
    assert flags - {"--data", "--steps", "--out", "--json", "--help"} == offered | lora_flags
    # a declared range is the check, for the API and the flag alike
    narrowed = dataclasses.replace(FINETUNE_OPTIONS["grad_accum"], max=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(FINETUNE_OPTIONS, "grad_accum", narrowed)
        with pytest.raises(OptionError, match=r"grad_accum must be between 1 and 4, got 5 "
                                              r"\(--grad-accum\)"):
            check_keywords({"grad_accum": 5})
        result = CliRunner().invoke(cli, ["finetune", "x", "--data", "mnist", "-o", "o",
                                          "--grad-accum", "5"])
        assert "grad_accum must be between 1 and 4" in result.output
    assert check_keywords({"lr": 1, "seed": 3})["lr"] == 1
    for bad in (dict(resume="yes"), dict(seed=-1), dict(log_every=0), dict(device_id=1)):
        with pytest.raises(OptionError):
            check_keywords(bad)


def test_model_finetune_is_a_deprecated_alias_of_genzoo_finetune():
    import genzoo
    direct, alias = _fresh(), _fresh()
    torch.manual_seed(0)
    genzoo.finetune(direct, tiny_data(), steps=3, progress=False)
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match=r"use genzoo\.finetune\(model, data"):
        result = alias.finetune(tiny_data(), steps=3, progress=False)
    assert result.steps == 3
    assert all(torch.equal(v, direct.state_dict()[k]) for k, v in alias.state_dict().items())