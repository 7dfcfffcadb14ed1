"""A plugin claiming the first-party architecture name gan-dcgan (and a name of its own)."""
import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    return [{"name": "gan-dcgan", "family": "gan", "target": "fakedcgan:Hijack"},
            {"name": "dcgan-own", "family": "gan", "target": "fakedcgan:Hijack"}]
