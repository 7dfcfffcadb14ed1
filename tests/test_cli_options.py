"""The CLI builds each model's flags from its declared options: no family flag in core, the
model's options in `--help`, flags and -O KEY=VALUE typed and checked by the schema."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from genzoo.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_core_commands_have_no_family_flags():
    for command in ("sample", "eval"):
        flags = {o for p in cli.commands[command].params for o in getattr(p, "opts", [])}
        assert not flags & {"--steps", "--sampler", "--temperature", "--truncation", "--prompt",
                            "--max-new-tokens", "--top-k", "--top-p"}, command
        assert {"-n", "-o", "-O", "--dtype"} <= flags, command


def test_help_lists_the_named_models_options():
    text = run("sample", "diffusion-mnist", "--help").output
    assert "Options of diffusion-mnist" in text and "--steps INT" in text
    assert "--truncation" not in text
    assert "--truncation FLOAT" in run("eval", "gan-mnist", "--help").output
    plain = run("sample", "--help")
    assert plain.exit_code == 0 and "Options of" not in plain.output


@pytest.mark.parametrize("args,message", [
    (["--steps", "0"], "Error: option 'steps' must be between 1 and 10000; got '0'"),
    (["-O", "sampler=heun"], "Error: option 'sampler' must be one of ddpm, ddim, dpmsolver++, "
                             "euler, euler-a; got 'heun'"),
    (["--temperature", "0.5"], "Error: no such option '--temperature' for diffusion-mnist; its "
                               "options: --batch-size, --eta, --guidance, --init, --label, "
                               "--mask, --sampler, --steps, --strength (`genzoo info NAME` "
                               "describes them)"),
    (["-O", "eta"], "Error: bad option 'eta': write it as -O KEY=VALUE (e.g. -O steps=50)"),
])
def test_bad_model_options_are_one_line(args, message, tmp_path):
    result = run("sample", "diffusion-mnist", "-n", "1", "-o", str(tmp_path / "x.png"), *args)
    assert result.exit_code == 1
    assert result.output.strip() == message
    assert not (tmp_path / "x.png").exists()


def test_flags_and_key_values_reach_the_model(tmp_path):
    a = run("sample", "gan-mnist", "-n", "2", "--truncation", "0.5", "--json", "-o",
            str(tmp_path / "a.npz"))
    b = run("sample", "gan-mnist", "-n", "2", "-O", "truncation=0.5", "--json", "-o",
            str(tmp_path / "b.npz"))
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert '"truncation": 0.5' in a.stdout and '"truncation": 0.5' in b.stdout
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
