"""The core's own plugin: the evaluator's MNIST feature network, registered through the
``genzoo_feature_nets`` hook like a third party's would be (it is not a generative
architecture, so ``genzoo list`` does not show it)."""
from __future__ import annotations

from genzoo import hookimpl


@hookimpl
def genzoo_feature_nets():
    """The zoo's MNIST classifier, whose features score every 28x28 digit model."""
    return [{"name": "mnist", "target": "genzoo.eval.features:MnistFeatureNet",
             "summary": "small MNIST classifier (genzoo/eval/weights/mnist-features): 128-d "
                        "penultimate features and digit classes",
             "input_shape": [1, 28, 28]}]
