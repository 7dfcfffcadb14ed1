"""genzoo's conformance kit (genzoo.testing) on tiny diffusion-unet and diffusers-unet models."""
import importlib.util

import pytest

from genzoo.testing import Conformance


class TestDiffusionUNetConformance(Conformance):
    arch = "diffusion-unet"
    config = {"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1, "attention": [1]}}
    # label dropout acts only in a class-conditional network (the next class checks it)
    config_inert = ("label_dropout",)


def _labelled_blobs():
    """16 small images with class labels 0-2 (the conditional model trains on labels)."""
    import torch
    from genzoo.data import TensorImages
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(16) % 3
    images = torch.rand(16, 1, 8, 8, generator=g) * 0.3 + labels.view(-1, 1, 1, 1) * 0.3
    return TensorImages(images, labels)


class TestDiffusionUNetLabelsConformance(Conformance):
    arch = "diffusion-unet"
    config = {"image_shape": [1, 8, 8], "num_classes": 3,
              "unet": {"channels": [8, 16], "blocks": 1, "attention": [1]}}
    data = staticmethod(_labelled_blobs)
    # the label embedding starts at zero (the network begins as the unconditional one), so
    # until it trains, dropping a label changes nothing: test_label_dropout_drops checks it
    config_inert = ("label_dropout",)


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
    # num_classes/label_dropout: the house UNet's class labels, which diffusers' UNet2DModel
    # declares its own way (num_class_embeds) and the diffusers format does not read
    config_inert = ("diffusers_unet.sample_size", "unet", "num_classes", "label_dropout")
