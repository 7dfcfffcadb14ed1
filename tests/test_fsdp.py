"""finetune --strategy fsdp: FSDP2 on 2 gloo processes matches DDP, sharded checkpoints resume
(same and another world size), the folder is the ordinary one, refusals are one line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genzoo.engine.train import finetune
from genzoo.errors import OptionError

TINY_GPT = {"vocab_size": 256, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
TINY_UNET = {"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1,
                                                "attention": []}}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(nproc: int, base: Path, data: Path, out: Path, *flags: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           str(nproc), "-m", "genzoo", "finetune", str(base), "--data", str(data),
           "--batch-size", "4", "--out", str(out), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]


def _max_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert sorted(wa) == sorted(wb)  # the same names: a tied weight is stored once, as DDP's
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.fixture(scope="module")
def gpt(tmp_path_factory) -> tuple[Path, Path]:
    from genzoo_textlm.model import GPTModel
    root = tmp_path_factory.mktemp("gpt")
    torch.manual_seed(0)
    GPTModel(TINY_GPT).save_pretrained(root / "base")
    (root / "text.txt").write_text("the quick brown fox jumps over the lazy dog. " * 100)
    return root / "base", root / "text.txt"


@pytest.mark.slow
def test_gpt_fsdp_resumed_on_two_ranks_equals_ddp_and_resumes_on_one(gpt, tmp_path):
    base, text = gpt
    steps = ["--steps", "6", "--lr", "1e-2"]
    _torchrun(2, base, text, tmp_path / "ddp", *steps)
    fsdp = tmp_path / "fsdp"
    _torchrun(2, base, text, fsdp, *steps, "--strategy", "fsdp", "--stop-after", "3")
    ckpt = fsdp / "checkpoints" / "step-0000003"
    assert sorted(p.name for p in ckpt.iterdir()) == ["rng-00000.safetensors",
                                                      "rng-00001.safetensors", "shards",
                                                      "state.json"]
    # each rank wrote its own shard; nothing that could hold a pickle
    assert len(list((ckpt / "shards").glob("*.safetensors"))) == 2
    assert not [p for p in ckpt.rglob("*") if p.is_file() and p.suffix not in (".json",
                                                                               ".safetensors")]
    shutil.copytree(fsdp, tmp_path / "one")
    _torchrun(2, base, text, fsdp, *steps, "--strategy", "fsdp", "--resume")
    assert _max_diff(base, fsdp) > 1e-3  # it trained
    assert _max_diff(tmp_path / "ddp", fsdp) < 1e-4  # stopped, resumed, and equal to DDP

    # the 2-process checkpoint resumes in this one process (DCP reshards)
    import genzoo
    model = genzoo.load(str(base), device="cpu")
    result = finetune(model, str(text), steps=6, out=tmp_path / "one", resume=True, lr=1e-2,
                      batch_size=4, strategy="fsdp", progress=False)
    assert result.steps == 6 and not result.stopped_early
    assert 0 < _max_diff(tmp_path / "ddp", tmp_path / "one") < 0.1  # another global batch
    loaded = genzoo.load(str(tmp_path / "one"), device="cpu")
    assert len(loaded.sample(2, seed=0, max_new_tokens=4).texts) == 2

    # and a 1-process checkpoint resumes on 2 ranks
    finetune(genzoo.load(str(base), device="cpu"), str(text), steps=6, out=tmp_path / "grow",
             stop_after=3, lr=1e-2, batch_size=4, strategy="fsdp", progress=False)
    _torchrun(2, base, text, tmp_path / "grow", *steps, "--strategy", "fsdp", "--resume")
    assert 0 < _max_diff(tmp_path / "ddp", tmp_path / "grow") < 0.1


@pytest.mark.slow
def test_diffusion_fsdp_with_ema_and_accumulation_equals_ddp(tmp_path):
    from genzoo_diffusion.model import DiffusionModel
    torch.manual_seed(0)
    model = DiffusionModel(TINY_UNET)
    model.save_pretrained(tmp_path / "base")
    np.savez(tmp_path / "data.npz", images=np.random.default_rng(0).random((32, 8, 8)))
    flags = ["--steps", "4", "--grad-accum", "2", "--lr", "1e-2", "--ema-decay", "0.5"]
    # both draw a grid with rank 0 alone (sample's own rank-sharding turned off)
    _torchrun(2, tmp_path / "base", tmp_path / "data.npz", tmp_path / "ddp", *flags,
              "--sample-every", "4")
    _torchrun(2, tmp_path / "base", tmp_path / "data.npz", tmp_path / "fsdp", *flags,
              "--strategy", "fsdp", "--sample-every", "4")
    from PIL import Image
    grids = [np.asarray(Image.open(tmp_path / s / "samples" / "step-0000004.png"), np.float32)
             for s in ("ddp", "fsdp")]
    # the same EMA weights draw the same grid (up to the sampler's own rounding)
    assert grids[0].shape == grids[1].shape and np.abs(grids[0] - grids[1]).mean() < 1.0
    assert _max_diff(tmp_path / "base", tmp_path / "fsdp") > 1e-3
    assert _max_diff(tmp_path / "ddp", tmp_path / "fsdp") < 1e-4  # the EMA weights, saved
    assert not list((tmp_path / "fsdp").glob(".grid-*"))  # the grid's temp folder is gone


def test_one_process_fsdp_equals_plain_training_and_checkpoints_resume(gpt, tmp_path):
    import genzoo
    base, text = gpt
    kw = dict(steps=4, lr=1e-2, batch_size=4, progress=False)
    plain = finetune(genzoo.load(str(base), device="cpu"), str(text), out=tmp_path / "plain",
                     **kw)
    finetune(genzoo.load(str(base), device="cpu"), str(text), out=tmp_path / "f",
             strategy="fsdp", stop_after=2, **kw)
    assert not torch.distributed.is_initialized()  # the 1-process group it started is gone
    finetune(genzoo.load(str(base), device="cpu"), str(text), out=tmp_path / "f",
             strategy="fsdp", resume=True, **kw)
    assert plain.steps == 4 and _max_diff(tmp_path / "plain", tmp_path / "f") < 1e-5
    with pytest.raises(OptionError, match="resume it with --strategy fsdp"):
        finetune(genzoo.load(str(base), device="cpu"), str(text), out=tmp_path / "f",
                 resume=True, **kw)


def test_fsdp_refusals_are_one_line(gpt, tmp_path):
    import genzoo
    base, text = gpt
    with pytest.raises(OptionError, match="strategy must be ddp or fsdp"):
        finetune(genzoo.load(str(base), device="cpu"), str(text), steps=1, strategy="zero3")
    # a DDP checkpoint is not a sharded one
    finetune(genzoo.load(str(base), device="cpu"), str(text), steps=2, stop_after=1,
             out=tmp_path / "d", batch_size=4, progress=False)
    with pytest.raises(OptionError, match="written with --strategy ddp"):
        finetune(genzoo.load(str(base), device="cpu"), str(text), steps=2, resume=True,
                 out=tmp_path / "d", batch_size=4, strategy="fsdp", progress=False)
    assert not torch.distributed.is_initialized()
    done = subprocess.run([sys.executable, "-m", "genzoo", "finetune", str(base), "--data",
                           str(text), "--steps", "1", "--out", str(tmp_path / "x"),
                           "--strategy", "fsdp", "--dtype", "fp16"],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--dtype fp16 with --strategy fsdp is not supported" in done.stderr


def test_bf16_is_refused_for_reparametrised_weights(tmp_path):
    import genzoo
    gan = genzoo.load("gan-mnist", device="cpu")  # spectral norm in its discriminator
    np.savez(tmp_path / "data.npz", images=np.random.default_rng(0).random((8, 28, 28)))
    with pytest.raises(OptionError, match="re-parametrised"):
        finetune(gan, str(tmp_path / "data.npz"), steps=1, strategy="fsdp", dtype="bf16",
                 progress=False)
    assert not torch.distributed.is_initialized()


def test_a_damaged_or_foreign_sharded_checkpoint_is_one_weights_error(gpt, tmp_path):
    import genzoo
    from genzoo.errors import WeightsError
    from genzoo_textlm.model import GPTModel
    base, text = gpt
    kw = dict(steps=4, batch_size=4, progress=False, strategy="fsdp")
    finetune(genzoo.load(str(base), device="cpu"), str(text), out=tmp_path / "f", stop_after=2,
             **kw)
    other = GPTModel({**TINY_GPT, "n_embd": 16})  # another shape: nothing restored
    other.tokenizer = genzoo.load(str(base), device="cpu").tokenizer
    with pytest.raises(WeightsError, match="written by another model or run"):
        finetune(other, str(text), out=tmp_path / "f", resume=True, **kw)
    state = tmp_path / "f" / "checkpoints" / "step-0000002" / "state.json"
    state.write_text("{not json")
    with pytest.raises(WeightsError, match="unreadable checkpoint"):
        finetune(genzoo.load(str(base), device="cpu"), str(text), out=tmp_path / "f",
                 resume=True, **kw)
    assert not torch.distributed.is_initialized()


def test_a_failed_sharded_write_is_one_output_error(gpt, tmp_path):
    import genzoo
    from genzoo.errors import OutputError
    base, text = gpt
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "checkpoints").write_text("a file where the folder goes")  # as root too
    with pytest.raises(OutputError, match="cannot write to --out"):
        finetune(genzoo.load(str(base), device="cpu"), str(text), out=tmp_path / "f", steps=2,
                 save_every=1, batch_size=4, progress=False, strategy="fsdp", overwrite=True)
    assert not torch.distributed.is_initialized()


@pytest.mark.slow
def test_lora_with_fsdp_equals_ddp_resumes_and_draws_its_grid(gpt, tmp_path):
    import genzoo
    base, text = gpt
    flags = ["--steps", "4", "--lr", "1e-2", "--lora-rank", "4"]
    _torchrun(2, base, text, tmp_path / "ddp", *flags)
    _torchrun(2, base, text, tmp_path / "fsdp", *flags, "--strategy", "fsdp",
              "--sample-every", "4")
    a, b = (load_file(str(tmp_path / s / "adapter_model.safetensors")) for s in ("ddp", "fsdp"))
    assert sorted(a) == sorted(b) and max(float(a[k].abs().max()) for k in a) > 1e-3
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    assert (tmp_path / "fsdp" / "samples" / "step-0000004.txt").read_text()
    # in one process: stopped and resumed equals uninterrupted; the checkpoint holds the
    # adapter's tensors only (the base is reloaded with the run)
    kw = dict(steps=4, lr=1e-2, batch_size=4, lora=4, strategy="fsdp", progress=False)
    finetune(genzoo.load(str(base), device="cpu"), str(text), out=tmp_path / "one", **kw)
    finetune(genzoo.load(str(base), device="cpu"), str(text), out=tmp_path / "two",
             stop_after=2, **kw)
    from safetensors import safe_open
    shards = list((tmp_path / "two" / "checkpoints").glob("step-*/shards/*.safetensors"))
    with safe_open(str(shards[0]), "pt") as f:
        assert all("lora_" in k for k in f.keys() if k.startswith("model."))
    finetune(genzoo.load(str(base), device="cpu"), str(text), out=tmp_path / "two",
             resume=True, **kw)
    a, b = (load_file(str(tmp_path / s / "adapter_model.safetensors")) for s in ("one", "two"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    assert genzoo.load(str(tmp_path / "two"), device="cpu").sample(1, seed=0,
                                                                  max_new_tokens=3).texts
