"""genzoo's conformance kit (genzoo.testing) on tiny diffusion-unet and diffusers-unet models."""
import importlib.util

import pytest

from genzoo.testing import Conformance


class TestDiffusionUNetConformance(Conformance):
    arch = "diffusion-unet"
    config = {"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1, "attention": [1]}}


@pytest.mark.slow  # imports diffusers (several seconds)
@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None,
                    reason="needs genzoo-diffusion[diffusers]")
class TestDiffusersUNetConformance(Conformance):
    arch = "diffusers-unet"
    config = {"image_shape": [1, 8, 8],
              "diffusers_unet": {"sample_size": 8, "in_channels": 1, "out_channels": 1,
                                 "block_out_channels": [8, 16], "layers_per_block": 1,
                                 "down_block_types": ["DownBlock2D", "DownBlock2D"],
                                 "up_block_types": ["UpBlock2D", "UpBlock2D"],
                                 "norm_num_groups": 4}}
    # sample_size is diffusers' own metadata (its UNet takes any size); "unet" holds the house
    # UNet's settings, merged in from the family's defaults, which a diffusers UNet ignores
    config_inert = ("diffusers_unet.sample_size", "unet")
