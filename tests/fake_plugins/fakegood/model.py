"""The tiny architecture: y = w.x + b with n inputs (config {"n": 4})."""
from torch import nn

from genzoo.model import GenerativeModel


class Tiny(GenerativeModel):
    arch = "tiny-arch"
    family = "tiny"

    def __init__(self, config):
        super().__init__(config)
        self.lin = nn.Linear(int(config.get("n", 4)), 1)
