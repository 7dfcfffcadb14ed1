"""Fault injection, outputs and sampling: every unwritable output, huge n, bad seeds and NaN
weights end in one line and exit 1, nothing the user owns is overwritten or half-written,
and memory stays bounded whatever n is."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genzoo
from genzoo.cli import cli
from genzoo.errors import OutputError, SampleError, WeightsError
from genzoo.writers import GRID_MAX


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_line_error(result, needle: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], lines


@pytest.fixture(scope="module")
def gan():
    return genzoo.load("gan-mnist", device="cpu")


def test_png_path_that_is_a_folder(tmp_path):
    (tmp_path / "x.png").mkdir()
    one_line_error(run("sample", "gan-mnist", "-n", "2", "-o", str(tmp_path / "x.png")),
                   "it is a folder")


def test_output_under_a_file(tmp_path):
    (tmp_path / "f").write_text("mine")
    one_line_error(run("sample", "gan-mnist", "-n", "2", "-o", str(tmp_path / "f" / "x.png")),
                   "a part of the path is a file")
    one_line_error(run("sample", "gan-mnist", "-n", "2", "-o", str(tmp_path / "f")),
                   "it is a file")
    assert (tmp_path / "f").read_text() == "mine"


def test_full_disk_keeps_the_users_file(tmp_path, monkeypatch):
    target = tmp_path / "digits.npz"
    target.write_bytes(b"the user's own file")
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    one_line_error(run("sample", "gan-mnist", "-n", "2", "-o", str(target)), "the disk is full")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_bytes() == b"the user's own file"
    assert not [p for p in tmp_path.iterdir() if "digits" in p.name and p != target]  # no temp


def test_dev_full_is_refused_in_one_line():
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    one_line_error(run("sample", "gan-mnist", "-n", "2", "-o", "/dev/full"), "it is a file")


def test_a_grid_too_large_is_refused_before_sampling(tmp_path, monkeypatch):
    from genzoo.model import GenerativeModel

    def no_sampling(*a, **k):
        raise AssertionError("sampled although the output was refused")
    monkeypatch.setattr(GenerativeModel, "iter_samples", no_sampling)
    one_line_error(run("sample", "gan-mnist", "-n", str(GRID_MAX + 1), "-o",
                       str(tmp_path / "g.png")), f"at most {GRID_MAX} images")


def test_huge_n_streams_with_generators_per_batch(gan, monkeypatch):
    import genzoo.model as model_module
    sizes = []
    real = model_module.sample_generators

    def counting(seed, n, start=0):
        sizes.append(n)
        return real(seed, n, start)
    monkeypatch.setattr(model_module, "sample_generators", counting)
    batches = gan.iter_samples(10 ** 9, seed=0, batch_size=4)
    first = next(batches)
    batches.close()
    assert len(first) == 4 and sizes == [4]
    whole = gan.sample(6, seed=0, batch_size=4).images
    assert torch.allclose(whole[:4], first.images, atol=1e-5)


def test_npz_streamed_equals_one_batch(gan, tmp_path):
    path = tmp_path / "s.npz"
    result = run("sample", "gan-mnist", "-n", "5", "--batch-size", "2", "-o", str(path))
    assert result.exit_code == 0, result.output
    streamed = np.load(path)["images"]
    assert streamed.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(streamed, gan.sample(5, seed=0).images.numpy(), atol=1e-5)


@pytest.mark.parametrize("seed", ["-1", str(2 ** 63)])
def test_seeds_outside_the_range_are_refused(seed, tmp_path):
    one_line_error(run("sample", "gan-mnist", "-n", "1", "--seed", seed, "-o",
                       str(tmp_path / "x.png")), "seed must be a whole number")


def test_large_seeds_do_not_wrap(gan):
    assert not torch.allclose(gan.sample(2, seed=0).images, gan.sample(2, seed=2 ** 32).images)


def test_nan_weights_are_refused_at_load(gan, tmp_path):
    folder = tmp_path / "nan-gan"
    gan.save_pretrained(folder)
    from safetensors.torch import load_file, save_file
    state = load_file(str(folder / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name][0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match="NaN or Inf"):
        genzoo.load(str(folder))
    one_line_error(run("sample", str(folder), "-o", str(tmp_path / "x.png")), "NaN or Inf")
    assert not (tmp_path / "x.png").exists()


def test_nan_samples_are_refused_before_writing(gan, tmp_path, monkeypatch):
    real = type(gan).generate

    def poisoned(self, generators, **options):
        out = real(self, generators, **options)
        out[-1] = float("nan")
        return out
    monkeypatch.setattr(type(gan), "generate", poisoned)
    with pytest.raises(SampleError, match="sample 2 holds NaN"):
        gan.sample(3, seed=0)
    target = tmp_path / "keep.npz"
    target.write_bytes(b"old")
    with pytest.raises(SampleError):
        gan.sample(3, seed=0).save(target)
    assert target.read_bytes() == b"old"


def test_writer_errors_are_output_errors(tmp_path):
    from genzoo.writers import open_writer
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        open_writer(tmp_path / "d.npz", 3, "image")
