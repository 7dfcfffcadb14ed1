"""LoRA adapters (genzoo.engine.lora, peft): the folder, loading with a verified base, merging, peft
reading our folders, the CLI, and the engine's resume, EMA, NaN guard and checkpoints."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import genzoo
from genzoo.cli import cli
from genzoo.errors import GenzooError, OptionError, TrainingDivergedError, WeightsError
from genzoo.engine.train import finetune

pytest.importorskip("peft")
from genzoo.engine import lora  # noqa: E402

from _tiny import TinyModel, tiny_data  # noqa: E402

TESTS = Path(__file__).parent
TEXT = "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int\n    y: int\n" * 40
TINY_GPT = {"vocab_size": 256, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


@pytest.fixture
def base(tmp_path) -> Path:
    """A tiny native GPT saved as a folder: a base genzoo.load can find again."""
    from genzoo_textlm.model import GPTModel
    torch.manual_seed(0)
    folder = tmp_path / "base"
    GPTModel(TINY_GPT).save_pretrained(folder)
    (tmp_path / "docs.txt").write_text(TEXT)
    return folder


def _train(base: Path, out: Path, steps: int = 12, **options):
    model = genzoo.load(base, device="cpu")
    result = genzoo.finetune(model, base.parent / "docs.txt", steps=steps, out=out,
                             progress=False, batch_size=4, lr=1e-2,
                             **{"lora": {"rank": 4}, **options})
    return model, result


def _logits(model, ids=torch.arange(40).reshape(2, 20)):
    with torch.no_grad():
        return model.logits(ids)


def test_the_adapter_folder_is_peft_layout_with_a_card_naming_the_verified_base(base, tmp_path):
    model, result = _train(base, tmp_path / "run")
    out = tmp_path / "run"
    assert result.folder == out
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    assert sorted(config["target_modules"]) == ["c_attn", "c_fc", "c_proj"]
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert tensors and all(k.startswith("base_model.model.") and ".lora_" in k for k in tensors)
    adapter_bytes = (out / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < 0.2 * (base / "model.safetensors").stat().st_size
    card = lora.read_adapter_card(out)
    assert card["name"] == str(base.resolve())
    assert set(card["sha256"]) >= {"model.safetensors", "config.json"}
    # only the adapter trained: the base weights under it are the saved ones
    saved = load_file(str(base / "model.safetensors"))
    live = model.state_dict()
    key = "transformer.h.0.attn.c_attn.weight"
    assert torch.equal(live[key.replace(".weight", ".base_layer.weight")], saved[key])
    loaded = genzoo.load(out, device="cpu")
    plain = genzoo.load(base, device="cpu")
    assert torch.allclose(_logits(loaded), _logits(model), atol=1e-5)
    assert not torch.allclose(_logits(loaded), _logits(plain), atol=1e-3)  # it learned
    assert loaded.sample(1, prompt="def ", max_new_tokens=8, seed=0).texts[0].startswith("def ")


def test_peft_itself_reads_our_adapter_folder(base, tmp_path):
    from peft import PeftModel
    _train(base, tmp_path / "run", steps=6)
    ours = genzoo.load(tmp_path / "run", device="cpu")
    theirs = genzoo.load(base, device="cpu")
    theirs.prepare_lora()
    peft_model = PeftModel.from_pretrained(theirs, str(tmp_path / "run"))
    ids = torch.arange(30).reshape(1, 30)
    with torch.no_grad():
        assert torch.allclose(peft_model(ids), _logits(ours, ids), atol=1e-5)


def test_a_base_whose_files_differ_is_refused_in_one_line(base, tmp_path):
    _train(base, tmp_path / "run", steps=2)
    weights = load_file(str(base / "model.safetensors"))
    weights["transformer.ln_f.weight"] = weights["transformer.ln_f.weight"] + 0.5
    save_file(weights, str(base / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightsError) as err:
        genzoo.load(tmp_path / "run", device="cpu")
    msg = str(err.value)
    assert "differs from the one it was trained on" in msg and "model.safetensors" in msg
    assert "\n" not in msg


def test_merge_bakes_the_adapter_into_a_full_folder(base, tmp_path):
    model, _ = _train(base, tmp_path / "run")
    done = CliRunner().invoke(cli, ["merge", str(tmp_path / "run"), "-o", str(tmp_path / "m")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert not (tmp_path / "m" / "adapter_config.json").exists()
    merged = genzoo.load(tmp_path / "m", device="cpu")
    assert lora.adapter_of(merged) is None
    assert torch.allclose(_logits(merged), _logits(model), atol=1e-4)
    # the merged model finetunes fully again: every parameter trains
    assert all(p.requires_grad for p in merged.parameters())


def test_cli_finetune_lora_then_sample(base, tmp_path):
    runner = CliRunner()
    done = runner.invoke(cli, ["finetune", str(base), "--data", str(tmp_path / "docs.txt"),
                               "--lora-rank", "2", "--lora-alpha", "4", "--lora-targets",
                               "c_attn", "--steps", "3", "--batch-size", "4",
                               "--out", str(tmp_path / "lora"), "--json"])
    assert done.exit_code == 0, done.output
    config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"]) == (2, 4, ["c_attn"])
    done = runner.invoke(cli, ["sample", str(tmp_path / "lora"), "--prompt", "def ",
                               "--max-new-tokens", "5"])
    assert done.exit_code == 0, done.output
    assert done.output.startswith("def ")


@pytest.mark.parametrize("args, words", [
    (["--lora-rank", "0"], "lora rank must be a whole number >= 1"),
    (["--lora-alpha", "2"], "need --lora-rank"),
    (["--lora-rank", "2", "--lora-alpha", "-1"], "lora alpha must be a number above 0"),
    (["--lora-rank", "2", "--lora-targets", "no_such_layer"], "do not fit"),
])
def test_bad_lora_flags_are_one_line_errors(base, tmp_path, args, words):
    done = CliRunner().invoke(cli, ["finetune", str(base), "--data", str(tmp_path / "docs.txt"),
                                    "--steps", "1", "--out", str(tmp_path / "x"), *args])
    assert done.exit_code == 1
    assert words in done.output and done.output.count("\n") == 1, done.output


def test_merge_and_push_refuse_what_is_not_an_adapter(base, tmp_path):
    done = CliRunner().invoke(cli, ["merge", str(base), "-o", str(tmp_path / "m")])
    assert done.exit_code == 1 and "not a LoRA adapter folder" in done.output


def test_missing_peft_is_one_line_with_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(GenzooError, match=r"pip install 'genzoo\[lora\]'"):
        lora.peft_module()


def _loaded_tiny(tmp_path, cls=TinyModel, **config):
    torch.manual_seed(0)
    cls(config).save_pretrained(tmp_path / "tiny")
    model = cls.from_pretrained(tmp_path / "tiny", device="cpu")
    model.loaded_from = tmp_path / "tiny"  # what genzoo.load records
    return model


def test_a_family_that_declares_no_targets_says_so(tmp_path):
    class NoAdapters(TinyModel):
        lora_targets = ()
    with pytest.raises(OptionError, match="cannot take a LoRA adapter"):
        lora.attach(_loaded_tiny(tmp_path, NoAdapters), 2)


def test_a_model_not_loaded_from_anywhere_cannot_name_a_base():
    with pytest.raises(OptionError, match="adapts a loaded model"):
        finetune(TinyModel(), tiny_data(), steps=1, lora=2, progress=False)


def test_ema_and_checkpoints_hold_only_the_adapter(tmp_path):
    model = _loaded_tiny(tmp_path)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune(model, tiny_data(), steps=6, out=tmp_path / "run", lora=2, save_every=3,
                      ema_decay=0.5, progress=False)
    assert result.folder is not None
    ckpt = load_file(str(tmp_path / "run" / "checkpoints" / "step-0000003" / "state.safetensors"))
    stored = {k for k in ckpt if k.startswith(("model.", "ema."))}
    assert stored and all(".lora_" in k for k in stored), sorted(stored)
    state = model.state_dict()
    for k, v in base.items():  # frozen base weights never moved (EMA copy_to included)
        assert torch.equal(state[k.replace(".weight", ".base_layer.weight")
                                  .replace(".bias", ".base_layer.bias")], v)


def test_nan_guard_stops_a_lora_run_at_its_last_good_checkpoint(tmp_path):
    model = _loaded_tiny(tmp_path, nan_at_call=6)
    with pytest.raises(TrainingDivergedError) as err:
        finetune(model, tiny_data(), steps=20, out=tmp_path / "run", lora=2, save_every=2,
                 progress=False)
    assert "at step 6" in str(err.value) and "step-0000004" in str(err.value)
    assert not (tmp_path / "run" / "adapter_model.safetensors").exists()


def _resume_script(base: Path, out: Path, stop_after: int | None, resume: bool) -> str:
    return textwrap.dedent(f"""
        import genzoo
        model = genzoo.load({str(base)!r}, device="cpu")
        genzoo.finetune(model, {str(base.parent / 'docs.txt')!r}, steps=8, out={str(out)!r},
                        save_every=2, stop_after={stop_after}, resume={resume}, progress=False,
                        batch_size=4, lr=1e-2, seed=3, lora={{"rank": 4}})
    """)


def test_resume_of_a_lora_run_in_a_new_process_equals_an_uninterrupted_one(base, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for script in (_resume_script(base, whole, None, False),
                   _resume_script(base, parts, 4, False),
                   _resume_script(base, parts, None, True)):
        subprocess.run([sys.executable, "-c", script], check=True, timeout=300, env=env)
    a = load_file(str(whole / "adapter_model.safetensors"))
    b = load_file(str(parts / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_two_process_gloo_lora_run_trains_the_adapter_and_only_rank_zero_writes(tmp_path):
    from genzoo_diffusion.model import DiffusionModel
    import numpy as np
    tiny = {"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1, "attention": []}}
    torch.manual_seed(0)
    DiffusionModel(tiny).save_pretrained(tmp_path / "base")
    np.savez(tmp_path / "data.npz", images=np.random.default_rng(0).random((32, 8, 8)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", "-m", "genzoo", "finetune", str(tmp_path / "base"),
           "--data", str(tmp_path / "data.npz"), "--steps", "4", "--batch-size", "4",
           "--out", str(tmp_path / "ddp"), "--save-every", "2", "--lora-rank", "2", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert sum('"loss"' in r for r in rows) == 1
    adapter = load_file(str(tmp_path / "ddp" / "adapter_model.safetensors"))
    assert any(".lora_B." in k and bool(v.abs().sum() > 0) for k, v in adapter.items())
    loaded = genzoo.load(tmp_path / "ddp", device="cpu")
    assert lora.adapter_of(loaded) is not None


def test_an_adapter_trains_at_the_familys_full_learning_rate(tmp_path):
    model = _loaded_tiny(tmp_path)
    assert model.pretrained
    result = finetune(model, tiny_data(), steps=3, lora=2, progress=False, log_every=1)
    peak = TinyModel.train_defaults["lr"]
    assert max(r["lr"] for r in result.history) == pytest.approx(peak)  # not 0.1x: base frozen


def test_save_pretrained_of_an_adapted_model_writes_its_adapter_folder(base, tmp_path):
    model, _ = _train(base, None, steps=3)
    model.save_pretrained(tmp_path / "saved")
    assert lora.is_adapter_folder(tmp_path / "saved")
    assert not (tmp_path / "saved" / "model.safetensors").exists()
    assert torch.allclose(_logits(genzoo.load(tmp_path / "saved", device="cpu")),
                          _logits(model), atol=1e-5)


def test_info_shows_an_adapter_folder_without_importing_torch(base, tmp_path):
    _train(base, tmp_path / "run", steps=1)
    done = CliRunner().invoke(cli, ["info", str(tmp_path / "run")])
    assert done.exit_code == 0, done.output
    assert "LoRA adapter (rank 4" in done.output and str(base.resolve()) in done.output
    code = ("import sys, genzoo.api as api; info = api.model_info(sys.argv[1]); "
            "print(info['lora']['r'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["4", "False"], out.stderr[-1500:]


def test_push_an_adapter_folder_then_load_it_from_the_hub(base, upload_hub, olah_hub, tmp_path,
                                                          monkeypatch):
    model, _ = _train(base, None, steps=3)
    folder = model.save_pretrained(tmp_path / "adapter")
    monkeypatch.setenv("HF_ENDPOINT", upload_hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", upload_hub.token)
    done = CliRunner().invoke(cli, ["push", str(folder), "pushorg/adapter"])
    assert done.exit_code == 0, done.output
    sha = done.output.strip().rsplit("/", 1)[1]
    monkeypatch.setenv("HF_ENDPOINT", olah_hub.endpoint)
    loaded = genzoo.load(f"hf://pushorg/adapter@{sha}", device="cpu")
    assert lora.adapter_of(loaded) is not None and loaded.revision == sha
    assert torch.allclose(_logits(loaded), _logits(model), atol=1e-5)
