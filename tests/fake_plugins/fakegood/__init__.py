"""A working test plugin: no torch at import, the model class named by import string."""
import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    return [{"name": "tiny-arch", "family": "tiny", "target": "fakegood.model:Tiny",
             "summary": "a linear layer, for tests"}]


@genzoo.hookimpl
def genzoo_model_cards():
    # tests/conftest.py builds the weights and writes their digests beside them.
    import json
    from pathlib import Path
    digests = json.loads((Path(__file__).parent / "weights" / "digests.json").read_text())
    return [{"name": "tiny-bundled", "family": "tiny", "arch": "tiny-arch",
             "summary": "tiny weights bundled in the fakegood package",
             "source": "pkg://fakegood/weights/tiny", "files": digests}]


@genzoo.hookimpl
def genzoo_detect_arch(config, filenames):
    return "tiny-arch" if config.get("model_type") == "tiny" else None
