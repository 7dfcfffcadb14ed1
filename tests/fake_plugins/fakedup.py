"""A plugin registering an architecture name another plugin already took."""
import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    return [{"name": "tiny-arch", "family": "tiny", "target": "fakedup:Nothing"},
            {"name": "dup-other", "family": "tiny", "target": "fakedup:Nothing"}]
