"""Conditions from the command line: capabilities in cards and `genzoo list --can`,
interpolation between seeds, init pictures (a folder of N gives N outputs), provenance."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import genzoo
from genzoo.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_list_can_filters_on_card_capabilities():
    result = run("list", "--can", "interpolate", "--json")
    assert result.exit_code == 0, result.output
    assert {c["name"] for c in json.loads(result.stdout)} == {"gan-mnist", "vae-mnist"}
    masks = {c["name"] for c in json.loads(run("list", "--can", "mask", "--json").stdout)}
    assert masks == {"diffusion-mnist"}


def test_interpolation_runs_from_seed_to_seed(tmp_path):
    out = tmp_path / "frames.npz"
    result = run("sample", "gan-mnist", "--seed", "1", "--interpolate", "2", "-n", "5", "-o",
                 str(out), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["meta"]["interpolate_to"] == 2
    frames = torch.from_numpy(np.load(out)["images"])
    gan = genzoo.load("gan-mnist", device="cpu")
    assert torch.allclose(frames[0], gan.sample(1, seed=1).images[0], atol=1e-5)
    assert torch.allclose(frames[-1], gan.sample(1, seed=2).images[0], atol=1e-5)
    assert (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3)).max() < \
        (frames[-1] - frames[0]).abs().mean()  # small steps on the way


def test_a_model_without_latents_says_what_it_supports():
    result = run("sample", "diffusion-mnist", "--interpolate", "3")
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: diffusion-mnist (diffusion) has no latents to "
                                     "interpolate; it supports: label, init, mask")


def test_a_folder_of_init_pictures_gives_one_output_each(tmp_path):
    folder = tmp_path / "inits"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 40 * (i + 1), np.uint8)).save(folder / f"{i}.png")
    result = run("sample", "vae-mnist", "--init", str(folder), "--temperature", "0", "-o",
                 str(tmp_path / "recon.npz"), "--json")
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)["meta"]
    assert json.loads(result.stdout)["n"] == 3 and len(meta["init_sha256"]) == 64
    recon = torch.from_numpy(np.load(tmp_path / "recon.npz")["images"])
    vae = genzoo.load("vae-mnist", device="cpu")
    images = torch.stack([torch.full((1, 28, 28), 40 * (i + 1) / 255) for i in range(3)])
    assert torch.allclose(recon, vae.reconstruct(images), atol=1e-5)


def test_mismatched_per_sample_counts_are_one_line(tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / f"{i}.png")
    result = run("sample", "vae-mnist", "--init", str(folder), "-n", "3", "-o",
                 str(tmp_path / "x.png"))
    assert result.exit_code == 1
    assert "option 'init' has 2 values for 3 samples" in result.output


@pytest.mark.parametrize("name", ["gan-mnist", "vae-mnist"])
def test_capabilities_match_the_card(name):
    model = genzoo.load(name, device="cpu")
    assert sorted(model.capabilities) == sorted(genzoo.model_info(name, options=False)
                                                ["capabilities"])


def test_info_lists_the_options_of_the_folder_not_only_its_class(tmp_path):
    from genzoo_diffusion.model import DiffusionModel
    tiny = {"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1, "attention": [1]}}
    DiffusionModel(tiny).save_pretrained(tmp_path / "plain")
    DiffusionModel({**tiny, "num_classes": 4}).save_pretrained(tmp_path / "labels")
    names = {}
    for folder in ("plain", "labels"):
        result = run("info", str(tmp_path / folder), "--json")
        assert result.exit_code == 0, result.output
        names[folder] = {o["name"]: o for o in json.loads(result.stdout)["options"]}
    assert "label" not in names["plain"] and "guidance" not in names["plain"]
    assert names["labels"]["label"]["max"] == 3 and "guidance" in names["labels"]


@pytest.mark.parametrize("name,extra", [("diffusion-mnist", ["--steps", "10"]),
                                        ("gan-mnist", []), ("vae-mnist", [])])
def test_label_7_gives_sevens(name, extra, tmp_path):
    """`genzoo sample NAME --label 7` shows sevens: the zoo's classifier reads them as 7."""
    from genzoo.eval.features import feature_net
    out = tmp_path / "sevens.npz"
    result = run("sample", name, "--label", "7", "-n", "8", *extra, "-o", str(out))
    assert result.exit_code == 0, result.output
    images = torch.from_numpy(np.load(out)["images"])
    _, probs = feature_net("mnist")(images)
    assert (probs.argmax(1) == 7).sum() >= 7, probs.argmax(1).tolist()
