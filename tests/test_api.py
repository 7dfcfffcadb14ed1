"""genzoo.load / list_models / model_info through a fake plugin's tiny torch architecture."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import sha256, write_catalog, write_tiny_model
from genzoo import api
from genzoo.errors import PluginMissingError, UnknownModelError, WeightsError


@pytest.fixture
def catalog(tmp_path, monkeypatch, fake_plugins):
    """The fakegood plugin plus a user catalog; ``add(**card)`` appends a card."""
    fake_plugins("fakegood")
    path = tmp_path / "cards.yaml"
    cards = []

    def add(**card):
        cards.append({"family": "tiny", "arch": "tiny-arch", **card})
        write_catalog(path, cards)
        monkeypatch.setenv("GENZOO_REGISTRY", str(path))
    return add


def _weight(model) -> float:
    return float(model.lin.weight.detach()[0, 0])


def test_load_card_with_local_folder(catalog, tmp_path):
    digests = write_tiny_model(tmp_path / "w", value=0.5)
    catalog(name="tiny-local", source=str(tmp_path / "w"), files=digests)
    model = api.load("tiny-local", device="cpu")
    assert type(model).__name__ == "Tiny" and _weight(model) == 0.5
    assert model.name_or_path == "tiny-local" and model.revision is None
    assert str(model.device) == "cpu"


def test_load_bundled_plugin_card(catalog):
    model = api.load("tiny-bundled", device="cpu")
    assert _weight(model) == 0.125 and model.name_or_path == "tiny-bundled"


def test_load_hub_card_and_hub_id(catalog, local_hub):
    catalog(name="tiny-hub", source=f"hf://{local_hub.repo_id}@{local_hub.v1}",
            files=local_hub.digests[local_hub.v1])
    model = api.load("tiny-hub", device="cpu")
    assert _weight(model) == 0.5 and model.revision == local_hub.v1
    latest = api.load(f"hf://{local_hub.repo_id}", device="cpu")  # no card: main
    assert _weight(latest) == 0.25 and latest.revision == local_hub.v2
    assert latest.name_or_path == f"hf://{local_hub.repo_id}"
    pinned = api.load(f"hf://{local_hub.repo_id}", device="cpu", revision="v1")
    assert _weight(pinned) == 0.5 and pinned.revision == local_hub.v1


def test_load_folders(catalog, tmp_path):
    write_tiny_model(tmp_path / "native", value=0.5)
    assert _weight(api.load(tmp_path / "native", device="cpu")) == 0.5
    write_tiny_model(tmp_path / "foreign", value=0.25, genzoo_section=False,
                     extra_config={"model_type": "tiny"})  # recognised by the plugin's hook
    assert _weight(api.load(str(tmp_path / "foreign"), device="cpu")) == 0.25
    write_tiny_model(tmp_path / "unknown", genzoo_section=False)
    with pytest.raises(WeightsError) as e:
        api.load(str(tmp_path / "unknown"))
    assert "expected config.json with a 'genzoo' section and model.safetensors" in str(e.value)
    assert "config.json, model.safetensors" in str(e.value)  # what was found


def test_weights_not_built_yet(catalog):
    catalog(name="tiny-future", source="pkg://fakegood/weights/not-yet", files={})
    with pytest.raises(WeightsError, match="tiny-future: weights not built yet"):
        api.load("tiny-future")
    assert api.model_info("tiny-future")["status"] == "weights not built yet"


def test_missing_plugin_fails_before_download(catalog, monkeypatch):
    import genzoo.catalog.hub
    monkeypatch.setattr(genzoo.catalog.hub, "fetch", lambda *a, **k: pytest.fail("fetched"))
    with pytest.raises(PluginMissingError, match="pip install genzoo-textlm"):
        api.load("gpt2")


def test_arch_mismatch_is_refused(catalog, tmp_path):
    digests = write_tiny_model(tmp_path / "w")
    config = json.loads((tmp_path / "w" / "config.json").read_text())
    config["genzoo"]["arch"] = "other-arch"
    (tmp_path / "w" / "config.json").write_text(json.dumps(config))
    digests["config.json"] = sha256(tmp_path / "w" / "config.json")
    catalog(name="tiny-swapped", source=str(tmp_path / "w"), files=digests)
    with pytest.raises(WeightsError, match="arch 'other-arch', the card expects 'tiny-arch'"):
        api.load("tiny-swapped")


def test_unknown_names(catalog):
    with pytest.raises(UnknownModelError, match="did you mean: tiny-bundled"):
        api.load("tiny-bundle")
    with pytest.raises(UnknownModelError) as e:
        api.load("./no/such/folder")
    assert "not a model name, a folder or an hf://org/repo id" in str(e.value)
    assert "did you mean" not in str(e.value)


def test_model_info_and_list(catalog, local_hub):
    catalog(name="tiny-hub", source=f"hf://{local_hub.repo_id}@{local_hub.v1}",
            files=local_hub.digests[local_hub.v1])
    catalog(name="tiny-unbuilt", family="vae", arch="vae-conv", source="pkg://genzoo_vae/nowhere",
            files={})
    info = api.model_info("tiny-unbuilt")
    assert info["status"] == "plugin missing: pip install genzoo-vae; weights not built yet"
    assert info["plugin_installed"] is False and info["install"] == "pip install genzoo-vae"
    bundled = api.model_info("tiny-bundled")
    assert (bundled["status"], bundled["downloaded"], bundled["bundled"]) == ("ready", True, True)
    assert bundled["plugin"] == "fakegood"
    assert api.model_info("tiny-hub")["status"] == "not downloaded"
    folder = api.download("tiny-hub")
    after = api.model_info("tiny-hub")
    assert after["status"] == "ready" and after["path"] == str(folder)
    assert [c.name for c in api.list_models("tiny-*")] == ["tiny-bundled", "tiny-hub", "tiny-unbuilt"]
    assert [c.name for c in api.list_models(family="tiny")] == ["tiny-bundled", "tiny-hub"]


def test_public_face_is_lazy():
    # In a fresh interpreter: `import genzoo`, listing the catalog and taking genzoo.load
    # import no torch; the first use of a heavy attribute (the model class) does, and each
    # lazy attribute is the real object.
    code = textwrap.dedent("""
        import sys
        import genzoo
        genzoo.list_models()
        before = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "numpy"})
        load = genzoo.load
        import genzoo.api
        before.append("torch" in sys.modules)
        model_class = genzoo.GenerativeModel
        import genzoo.model
        print(before, load is genzoo.api.load, model_class is genzoo.model.GenerativeModel,
              "torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[False]", "True", "True", "True"], out.stdout
    import genzoo
    assert genzoo.load is api.load and genzoo.list_models is api.list_models
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        genzoo.no_such_name


def test_evaluate_resolves_names_in_the_api(catalog, tmp_path, monkeypatch):
    """genzoo.evaluate is the API's: it loads a name, then hands the model to the evaluator,
    which takes models only (names are resolved above it, never by eval reaching up)."""
    import genzoo
    from genzoo.errors import OptionError
    from genzoo.eval import metrics
    assert genzoo.evaluate is api.evaluate
    digests = write_tiny_model(tmp_path / "w")
    catalog(name="mine", source=str(tmp_path / "w"), files=digests)
    seen = {}
    monkeypatch.setattr(metrics, "evaluate", lambda model, **kw: seen.update(model=model, **kw))
    genzoo.evaluate("mine", n=4, seed=3)
    assert seen["model"].name_or_path == "mine" and (seen["n"], seen["seed"]) == (4, 3)
    monkeypatch.undo()
    with pytest.raises(OptionError, match="genzoo.evaluate loads names"):
        metrics.evaluate("mine", n=4)


def test_detect_arch_stops_at_the_first_answer(fake_plugins, monkeypatch):
    """The manager calls each plugin's genzoo_detect_arch on its own in precedence order and
    stops at the first architecture named, as the hook's spec says."""
    from genzoo.plugins import manager as plugins
    manager = fake_plugins("fakegood", "fakebadtarget")
    asked = []
    for impl in manager.pm.hook.genzoo_detect_arch.get_hookimpls():
        original = impl.function
        impl.function = (lambda f, name: lambda **kw: asked.append(name) or f(**kw))(
            original, impl.plugin_name)
    assert plugins.detect_arch({"model_type": "tiny"}, ["config.json"]) == "tiny-arch"
    assert asked == ["fakegood"]  # fakebadtarget, later in precedence, never asked
