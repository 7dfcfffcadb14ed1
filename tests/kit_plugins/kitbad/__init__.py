"""A test plugin that breaks the contract: it imports torch when its entry point loads."""
import torch  # noqa: F401 - the violation under test

import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    return [{"name": "kit-bad", "family": "kitbad", "target": "kitbad:KitBad"}]


def _model():
    from torch import nn

    from genzoo.model import GenerativeModel

    class KitBad(GenerativeModel):
        arch = "kit-bad"
        family = "kitbad"
        sample_defaults = {"temperature": 1.0}
        train_defaults = {"batch_size": 8, "lr": 1e-2, "learning_rate": 1.0}  # unknown key

        def __init__(self, config=None):
            super().__init__({"image_shape": [1, 4, 4], **(config or {})})
            self.w = nn.Parameter(torch.ones(16))

        def generate(self, generators, temperature=1.0):
            # the global RNG (batch-dependent) and values outside [0, 1]
            return (torch.randn(len(generators), 16) * 3 * self.w).reshape(-1, 1, 4, 4)

        def check_options(self, options):
            if set(options) - {"temperature"}:
                raise ValueError("bad option\nsee the docs")
            return {**self.sample_defaults, **options}

        def training_loss(self, images):
            return (self.w * 0).sum() + images.mean() * 0 + 1.0  # nothing to learn

        def save_extra_files(self, folder):
            (folder / "model.pt").write_bytes(b"a pickle file")

    return KitBad


KitBad = _model()
