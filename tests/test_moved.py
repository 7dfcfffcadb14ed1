"""genzoo 0.1's flat module names still import: a plugin written against them keeps working."""
from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from genzoo._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_name_is_the_new_module_with_a_warning(old):
    sys.modules.pop(f"genzoo.{old}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(f"genzoo.{old}")
    assert module is importlib.import_module(f"genzoo.{MOVED[old]}")
    assert any(issubclass(w.category, DeprecationWarning) and f"genzoo.{MOVED[old]}" in
               str(w.message) for w in caught), [str(w.message) for w in caught]


def test_every_old_home_is_gone_and_every_new_one_exists():
    from pathlib import Path
    pkg = Path(importlib.import_module("genzoo").__file__).parent
    for old, new in MOVED.items():
        assert not (pkg / f"{old}.py").exists(), f"genzoo/{old}.py is back: drop it from MOVED"
        assert (pkg / (new.replace(".", "/") + ".py")).is_file(), new


def test_a_plugin_of_0_1_runs_against_the_old_names(tmp_path):
    # the calls a 0.1 plugin's release script and tests made, in a fresh interpreter
    code = ("import warnings; warnings.simplefilter('ignore')\n"
            "from genzoo.registry import update_card\n"
            "from genzoo.train import finetune\n"
            "from genzoo.features import load_mnist_features\n"
            "import genzoo.levers, genzoo.train, genzoo.engine.train\n"
            "assert genzoo.train is genzoo.engine.train\n"
            "from genzoo import _conformance\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_an_unknown_name_is_still_unknown():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("genzoo.no_such_module")
