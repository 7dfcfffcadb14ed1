"""Images: (n, C, H, W) float32 in [0, 1]; a PNG grid, an ``.npz`` or one PNG per sample."""
from __future__ import annotations

from typing import Any, Callable

from genzoo.samples import Modality, Samples
from genzoo.writers import GridWriter, NpzWriter, grid_array, png_bytes


class ImageModality(Modality):
    """Pictures: what the diffusion, VAE and GAN families make."""

    name = "image"
    summary = "images (n, C, H, W) float32 in [0, 1]: PNG grid, .npz, one PNG per sample"
    layout = ("n", "C", "H", "W")
    value_range = (0.0, 1.0)
    plural = "images"
    default_n = 16
    default_output = "samples.png"
    sample_suffix = ".png"
    content_type = "image/png"
    pipeline_tags = {"prompt": "text-to-image", "label": None,
                     "": "unconditional-image-generation"}
    generation_tag = "image-generation"
    default_feature = "mnist"  # the zoo's MNIST classifier: what scores its digit models
    usage = 'samples = model.sample(16, seed=0)\nsamples.save("samples.png")'
    gallery_html = '<img src="{src}" alt="{name}">'

    def writers(self) -> dict[str, Callable[..., Any]]:
        """``.png``: one grid of every image; ``.npz``: ``images`` and ``meta``."""
        return {".png": GridWriter, ".npz": NpzWriter}

    def empty(self, config: dict[str, Any]) -> Any:
        """No images, shaped like the model's (``image_shape`` in its config)."""
        import torch
        return torch.zeros((0, *tuple(config.get("image_shape") or (0, 0, 0))))

    def encode(self, samples: Samples, i: int) -> bytes:
        """Image ``i`` as a PNG, provenance (and its index) in the text chunks."""
        index = int(samples.meta.get("start", 0)) + i
        return png_bytes(grid_array(samples.data[i:i + 1], 1, 0),
                         {**samples.provenance(), "index": str(index)})
