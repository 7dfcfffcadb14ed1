"""The core's own plugin: the modalities image, text and audio (``genzoo_modalities``) and the
evaluator's MNIST feature network (``genzoo_feature_nets``: not a generative architecture, so
``genzoo list`` does not show it), registered through hooks like a third party's would be."""
from __future__ import annotations

from genzoo import hookimpl


@hookimpl
def genzoo_feature_nets():
    """The zoo's MNIST classifier, whose features score every 28x28 digit model, and
    ``logmel``, the spectral statistics that score audio."""
    return [{"name": "mnist", "target": "genzoo.eval.features:MnistFeatureNet",
             "summary": "small MNIST classifier (genzoo/eval/weights/mnist-features): 128-d "
                        "penultimate features and digit classes",
             "input_shape": [1, 28, 28]},
            {"name": "logmel", "target": "genzoo.eval.logmel:LogMelFeatureNet",
             "summary": "log-mel spectrogram statistics of audio (no weights; NOT FAD, whose "
                        "VGGish weights are not available offline)", "input_shape": None}]


@hookimpl
def genzoo_modalities():
    """genzoo's own modalities (always present, even when ``GENZOO_PLUGINS`` filters)."""
    return [{"name": "image", "target": "genzoo.modalities.image:ImageModality",
             "summary": "images (n, C, H, W) in [0, 1]: .png grid, .npz, one PNG per sample"},
            {"name": "text", "target": "genzoo.modalities.text:TextModality",
             "summary": "texts: .txt, .jsonl, one .txt per sample"},
            {"name": "audio", "target": "genzoo.modalities.audio:AudioModality",
             "summary": "waveforms (n, channels, T) in [-1, 1] + sample_rate: .wav, .npz, "
                        "one WAV per sample"}]
