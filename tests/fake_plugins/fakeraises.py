"""A plugin whose architectures hook raises."""
import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    raise RuntimeError("boom in architectures")
