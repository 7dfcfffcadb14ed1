"""A plugin whose every hook returns the wrong kind of value."""
import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    return 42


@genzoo.hookimpl
def genzoo_model_cards():
    return {"name": "garbage-card"}  # a dict where a list is due


@genzoo.hookimpl
def genzoo_feature_nets():
    yield {"name": "garbage-net", "target": "fakegarbage:nothing"}
    raise RuntimeError("generator broke midway")


@genzoo.hookimpl
def genzoo_detect_arch(config, filenames):
    return ["gan-dcgan"]  # a list: unhashable, not an architecture name
