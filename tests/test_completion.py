"""Shell completion: the NAME arguments complete catalog names (README, "Shell completion")."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from conftest import write_catalog
from genzoo.catalog import registry as registry
from genzoo.cli import cli

COMMANDS = ["sample", "eval", "info", "download", "finetune"]


@pytest.fixture
def user_catalog(tmp_path, monkeypatch):
    """Two user cards beside the shipped ones, so the test knows names it did not ship."""
    path = write_catalog(tmp_path / "mine.yaml", [
        {"name": "zz-complete-one", "family": "tiny", "arch": "tiny-arch",
         "summary": "the first", "source": "pkg://nowhere/one"},
        {"name": "zz-complete-two", "family": "tiny", "arch": "tiny-arch",
         "source": "pkg://nowhere/two"}])
    monkeypatch.setenv("GENZOO_REGISTRY", str(path))
    registry.reset()
    yield path
    registry.reset()


def completions(args: list[str], incomplete: str) -> list[tuple[str, str]]:
    """(value, type) pairs click offers for ``genzoo ARGS INCOMPLETE<TAB>``."""
    items = ShellComplete(cli, {}, "genzoo", "_GENZOO_COMPLETE").get_completions(args, incomplete)
    return [(i.value, i.type) for i in items]


@pytest.mark.parametrize("command", COMMANDS)
def test_name_arguments_complete_catalog_names(user_catalog, command):
    assert completions([command], "zz-comp") == [("zz-complete-one", "plain"),
                                                  ("zz-complete-two", "plain")]
    every = [v for v, _ in completions([command], "")]
    assert every == registry.get_registry().names() and "zz-complete-one" in every


def test_paths_and_unknown_prefixes_fall_back_to_folders(user_catalog):
    assert completions(["sample"], "./runs/") == [("./runs/", "dir")]
    assert completions(["info"], "no-such-prefix") == [("no-such-prefix", "dir")]


def test_the_shell_protocol_answers_through_the_completion_variable(user_catalog):
    env = {"_GENZOO_COMPLETE": "bash_complete", "COMP_WORDS": "genzoo eval zz-complete-t",
           "COMP_CWORD": "2"}
    out = CliRunner().invoke(cli, [], env=env, prog_name="genzoo")
    assert out.exit_code == 0 and out.output.split() == ["plain,zz-complete-two"], out.output
    script = CliRunner().invoke(cli, [], env={"_GENZOO_COMPLETE": "zsh_source"},
                                prog_name="genzoo")
    assert "_GENZOO_COMPLETE=zsh_complete" in script.output


def test_completion_imports_no_torch(user_catalog):
    code = textwrap.dedent("""
        import sys
        from genzoo.cli import cli
        try:
            cli.main(prog_name="genzoo")
        except SystemExit:
            pass
        print("TORCH", "torch" in sys.modules)
    """)
    env = {**os.environ, "_GENZOO_COMPLETE": "bash_complete",
           "COMP_WORDS": "genzoo sample zz-complete-o", "COMP_CWORD": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["plain,zz-complete-one", "TORCH", "False"], out.stdout + out.stderr
