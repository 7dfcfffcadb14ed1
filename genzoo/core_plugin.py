"""The core's own plugin: the evaluator's MNIST feature network, registered like any other
architecture (through the ``genzoo`` entry point), so that its card loads with ``genzoo.load``."""
from __future__ import annotations

from . import hookimpl


@hookimpl
def genzoo_architectures():
    """The zoo's MNIST classifier, whose features score every 28x28 model."""
    return [{"name": "mnist-convnet", "family": "features",
             "target": "genzoo.features:MnistClassifier",
             "summary": "small MNIST classifier; its penultimate features score digit models"}]
