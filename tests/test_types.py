"""mypy runs in the tests: strict on the public API and the CLI (the modules listed in
pyproject.toml's [tool.mypy] overrides), and a user's snippet sees ``genzoo.load`` returning
``GenerativeModel``, not ``Any`` (genzoo ships py.typed)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy comes with the test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parent.parent
#: The modules mypy checks strictly (pyproject.toml names the same ones in its override).
STRICT = ["genzoo/__init__.py", "genzoo/api.py", "genzoo/model.py", "genzoo/catalog/registry.py",
          "genzoo/catalog/cards.py", "genzoo/options.py", "genzoo/cli/__init__.py",
          "genzoo/cli/root.py", "genzoo/cli/eval.py", "genzoo/cli/model.py",
          "genzoo/cli/options.py", "genzoo/cli/plugin.py", "genzoo/cli/complete.py"]
#: torch and the other heavy libraries are not followed (pyproject.toml), so a cold run is
#: about ten seconds on a 2-core machine; this bound only stops a hung run.
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for this module's runs, in a temporary folder (never the repo)."""
    return tmp_path_factory.mktemp("mypy-cache")


def run_mypy(args: list[str], cache_dir: Path) -> subprocess.CompletedProcess[str]:
    """``mypy`` with the project's configuration, run from the repository root."""
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                           str(ROOT / "pyproject.toml"), "--cache-dir", str(cache_dir),
                           "--no-color-output", "--no-error-summary", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_py_typed_marker_ships_with_the_package():
    assert (ROOT / "genzoo" / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    for module in STRICT:
        name = module.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        assert f'"{name}"' in pyproject, f"{name} is not in pyproject.toml's strict mypy list"


def test_public_api_and_cli_pass_mypy_strict(cache_dir):
    result = run_mypy(STRICT, cache_dir)
    assert result.returncode == 0, result.stdout + result.stderr


SNIPPET = '''\
import genzoo
from genzoo import GenerativeModel

model = genzoo.load("vae-mnist")
reveal_type(model)
reveal_type(genzoo.evaluate(model, n=8))
reveal_type(model.sample(4))
reveal_type(genzoo.list_models())
typed: GenerativeModel = model
genzoo.load("vae-mnist").sample("four")
'''


def test_a_users_code_sees_real_types(cache_dir, tmp_path):
    """genzoo.load(...) is GenerativeModel to mypy (not Any): reveal_type names the real
    classes, and a wrong argument to a method of what it returns is an error mypy reports
    (on Any it would pass unseen)."""
    snippet = tmp_path / "user_code.py"
    snippet.write_text(SNIPPET)
    result = run_mypy([str(snippet)], cache_dir)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    revealed = [line.split("Revealed type is ", 1)[1].replace("builtins.", "")
                for line in out.splitlines() if "Revealed type is" in line]
    assert revealed == ['"genzoo.model.GenerativeModel"', '"dict[str, Any]"',
                        '"genzoo.samples.Samples"', '"list[genzoo.catalog.cards.ModelCard]"'], out
    errors = [line for line in out.splitlines() if ": error:" in line]
    # the one deliberate mistake, and nothing else
    assert len(errors) == 1 and "user_code.py:10:" in errors[0], out
    assert 'Argument 1 to "sample" of "GenerativeModel" has incompatible type "str"' \
        in errors[0], out
