"""``logmel``: a spectral feature network for audio — log-mel spectrogram statistics.

It is **not** FAD. The Fréchet Audio Distance measures in the embedding space of VGGish (a
network trained on AudioSet), whose weights cannot be had offline; figures from ``logmel``
are Fréchet distances (and KID, precision/recall) between Gaussian fits of hand-made
spectral statistics, comparable only with other ``logmel`` figures at the same sample rate.

What it computes for each waveform (channels averaged to mono):

1. a power spectrogram by ``torch.stft``: a periodic Hann window of 25 ms, a hop of 10 ms,
   ``n_fft`` the next power of two, frames centred with reflect padding;
2. ``N_MELS`` triangular mel filters (HTK mel scale, no area normalisation: torchaudio's
   ``melscale_fbanks`` with ``mel_scale="htk", norm=None``) from 0 Hz to half the rate;
3. ``log(mel + 1e-5)`` (the floor keeps silence finite: it lands far from any real sound);
4. the features: per-band mean and standard deviation over time, and the standard deviation
   of the first difference in time (how fast each band changes) — ``3 * N_MELS`` numbers.

No weights, so nothing to download or verify: ``key`` names the version and parameters.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from genzoo.errors import DataError
from genzoo.eval.features import FeatureNet

#: The mel bands of the filterbank.
N_MELS = 40
#: STFT window and hop, in seconds (the usual speech/audio front end's 25 ms / 10 ms).
WINDOW_SECONDS, HOP_SECONDS = 0.025, 0.010
#: Added to the mel energies before the log.
LOG_FLOOR = 1e-5
#: Bump when the features change, so cached reference statistics are not reused.
VERSION = 1


def hz_to_mel(freq: torch.Tensor | float) -> torch.Tensor:
    """Hertz to HTK mels: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(freq, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """HTK mels to Hertz (the inverse of ``hz_to_mel``)."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, sample_rate: int, n_mels: int = N_MELS, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """(n_freqs, n_mels) triangular filters over the ``n_freqs`` bins of a one-sided
    spectrum (0 .. sample_rate // 2 Hz), their centres evenly spaced in HTK mels between
    ``f_min`` and ``f_max`` (default: half the rate). Each filter peaks at 1 on its centre
    and reaches 0 at its neighbours' centres, so between the first and the last centre the
    filters sum to 1. The same numbers as torchaudio's ``melscale_fbanks`` (htk, no norm)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    m_pts = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2,
                           dtype=torch.float64)
    f_pts = mel_to_hz(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


def stft_sizes(sample_rate: int) -> tuple[int, int, int]:
    """``(n_fft, win_length, hop_length)`` in samples for ``sample_rate``."""
    win = max(2, round(WINDOW_SECONDS * sample_rate))
    return 1 << (win - 1).bit_length(), win, max(1, round(HOP_SECONDS * sample_rate))


def log_mel(waves: torch.Tensor, sample_rate: int, n_mels: int = N_MELS) -> torch.Tensor:
    """(N, n_mels, frames) log-mel spectrograms of (N, T) mono waveforms."""
    n_fft, win, hop = stft_sizes(sample_rate)
    x = waves.float()
    if x.shape[-1] <= n_fft // 2:  # reflect padding needs more samples than half a frame
        x = torch.nn.functional.pad(x, (0, n_fft // 2 + 1 - x.shape[-1]))
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=win,
                      window=torch.hann_window(win, dtype=x.dtype, device=x.device),
                      center=True, pad_mode="reflect", return_complex=True)
    power = spec.abs().pow(2)  # (N, n_fft // 2 + 1, frames)
    fb = mel_filterbank(power.shape[1], sample_rate, n_mels).to(power.device)
    return torch.log10(torch.einsum("nft,fm->nmt", power, fb) + LOG_FLOOR)


def logmel_stats(waves: torch.Tensor, sample_rate: int, n_mels: int = N_MELS) -> torch.Tensor:
    """(N, 3 * n_mels) features of (N, channels, T) waveforms: per-band mean and std of the
    log-mel spectrogram over time, then the std of its first difference in time."""
    spec = log_mel(waves.float().mean(dim=1), sample_rate, n_mels)
    mean, std = spec.mean(-1), spec.std(-1, unbiased=False)
    delta = spec[..., 1:] - spec[..., :-1]
    dstd = delta.std(-1, unbiased=False) if delta.shape[-1] else torch.zeros_like(mean)
    return torch.cat([mean, std, dstd], dim=1)


class LogMelFeatureNet(FeatureNet):
    """The ``logmel`` feature network (see the module docstring; it is not FAD).

    ``net(waves, meta={"sample_rate": R})`` -> ``(features (N, 3 * N_MELS), None)`` for
    (N, channels, T) waveforms in [-1, 1]; the sample rate comes from the samples' metadata,
    which the evaluator passes because ``__call__`` takes ``meta``."""

    input_shape = None  # any number of channels and any length

    def __init__(self, device: Any = "cpu", n_mels: int = N_MELS):
        self.device, self.n_mels = torch.device(device), n_mels
        self.name = "logmel"
        self.key = (f"logmel:v{VERSION}:mels={n_mels}:win={WINDOW_SECONDS}:hop={HOP_SECONDS}"
                    f":floor={LOG_FLOOR}")

    def __call__(self, waves: torch.Tensor, meta: dict[str, Any] | None = None,
                 batch_size: int = 256) -> tuple[torch.Tensor, None]:
        """Features of ``waves`` at ``meta["sample_rate"]``; a batch that is not
        (N, channels, T) or has no sample rate is a one-line DataError."""
        rate = (meta or {}).get("sample_rate")
        if not isinstance(waves, torch.Tensor) or waves.dim() != 3:
            got = tuple(waves.shape) if isinstance(waves, torch.Tensor) else type(waves).__name__
            raise DataError(f"the logmel feature network measures audio shaped (N, channels, T), "
                            f"got {got}; use an image feature network (mnist, timm:NAME) for "
                            "images")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or \
                not math.isfinite(rate) or rate < 1000:
            raise DataError(f"the logmel feature network needs the audio's sample_rate (at least "
                            f"1000 Hz) in the samples' metadata, got {rate!r}")
        parts = [logmel_stats(waves[i:i + batch_size].to(self.device), int(rate), self.n_mels)
                 .float().cpu() for i in range(0, len(waves), batch_size)]
        return (torch.cat(parts) if parts else torch.zeros(0, 3 * self.n_mels)), None


__all__ = ["LogMelFeatureNet", "mel_filterbank", "log_mel", "logmel_stats", "hz_to_mel",
           "mel_to_hz", "stft_sizes", "N_MELS"]
