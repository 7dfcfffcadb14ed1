"""The kit's planted plugins (tests/kit_plugins) installed for real, for the kit's tests
(test_testing.py, test_testing_checks.py): a site folder with a ``.dist-info`` per plugin,
found through ``importlib.metadata``. Import the fixtures into a test module by name."""
from __future__ import annotations

from pathlib import Path

import pytest

from _site import forget, install_package
from genzoo.catalog import registry as registry
from genzoo.plugins import manager as plugins

KIT_SRC = Path(__file__).resolve().parent / "kit_plugins"
KIT_MODULES = ("kitgood", "kitbad", "kitmutants")


@pytest.fixture(scope="session")
def kit_site(tmp_path_factory) -> Path:
    """A site folder holding the kit plugins and their dist-info."""
    site = tmp_path_factory.mktemp("kitsite")
    for module in KIT_MODULES:
        install_package(site, KIT_SRC / module, f"genzoo-{module}", module)
    return site


@pytest.fixture
def kit(kit_site, monkeypatch):
    """The kit plugins installed (beside whatever else is installed) for this test."""
    monkeypatch.syspath_prepend(str(kit_site))
    plugins.reset()
    registry.reset()
    yield kit_site
    forget(*KIT_MODULES)


def finetuned(arch: str, tmp_path: Path, steps: int = 20, config: dict | None = None):
    """A short finetune of a fresh ``arch`` on the kit's default data, checked to lower the
    loss; the run, for more checks."""
    from genzoo.kit import conformance as c
    from genzoo.kit import train as t
    model = c.make_model(arch, config or {})
    run = t.run_finetune(model, c.default_data(model, tmp_path), tmp_path / "ft", steps=steps)
    t.check_loss_lowered(run)
    return run


def kit_plugin_args() -> list[str]:
    """pytester arguments: ``-p genzoo.testing`` unless pytest already loads it through its
    entry point."""
    import importlib.metadata
    wired = any(ep.value == "genzoo.testing"
                for ep in importlib.metadata.entry_points(group="pytest11"))
    quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]  # it is imported already
    return quiet if wired else [*quiet, "-p", "genzoo.testing"]
