"""A plugin adding a feature network for its own data (32x32 colour images)."""
import genzoo


class MeanColour:
    """Features: the mean of each channel; no class probabilities."""

    input_shape = (3, 32, 32)

    def __init__(self, device="cpu"):
        self.name, self.key, self.device = "colour", "fakefeature:mean-colour-v1", device

    def __call__(self, images):
        return images.float().mean(dim=(2, 3)), None


@genzoo.hookimpl
def genzoo_feature_nets():
    return [{"name": "colour", "target": "fakefeature:MeanColour",
             "summary": "mean colour of 32x32 RGB images", "input_shape": [3, 32, 32]},
            {"name": "timm:bad", "target": "fakefeature:MeanColour"}]
