"""A plugin whose architecture targets are broken."""
import genzoo


class NotAModel:
    pass


@genzoo.hookimpl
def genzoo_architectures():
    return [{"name": "missing-target", "family": "tiny",
             "target": "genzoo_no_such_module_xyz:Model"},
            {"name": "not-a-model", "family": "tiny", "target": "fakebadtarget:NotAModel"},
            {"name": "bad entry without family", "target": "x:y"}]


@genzoo.hookimpl
def genzoo_detect_arch(config, filenames):
    return "no-such-arch" if config.get("model_type") == "weird" else None
