"""Audio: (n, channels, T) float32 waveforms in [-1, 1] with a ``sample_rate``; one WAV of
every sample, an ``.npz`` (``audios`` and ``sample_rate``) or one WAV per sample.

WAV files are 16-bit PCM written by the standard library's ``wave`` module (every player
reads them; no extra dependency)."""
from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import Any, Callable

from genzoo.errors import OutputError, SampleError
from genzoo.samples import Modality, Samples
from genzoo.writers import NpzWriter, Writer, _TempFileWriter

#: Silence between two samples in one WAV file, in seconds (so they can be told apart).
GAP_SECONDS = 0.5


def pcm16(wave_ct) -> bytes:
    """A (channels, T) float waveform in [-1, 1] as interleaved little-endian 16-bit PCM."""
    import numpy as np
    frames = wave_ct.detach().float().clamp(-1, 1).cpu().numpy().T  # (T, channels)
    return np.round(frames * 32767).astype("<i2").tobytes()


def wav_bytes(wave_ct, sample_rate: int) -> bytes:
    """One (channels, T) waveform as a complete WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(int(wave_ct.shape[0]))
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm16(wave_ct))
    return buf.getvalue()


def read_wav(path: str | Path):
    """A 16-bit PCM WAV file as ``((channels, T) float32 tensor in [-1, 1], sample_rate)``;
    another sample width is a one-line ``SampleError``."""
    import numpy as np
    import torch
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise SampleError(f"{path}: not a readable WAV file ({e})") from None
    if width != 2:
        raise SampleError(f"{path}: {8 * width}-bit WAV; genzoo reads 16-bit PCM (convert it, "
                          "e.g. `sox in.wav -b 16 out.wav`)")
    data = np.frombuffer(raw, "<i2").reshape(-1, channels).T.astype(np.float32) / 32767
    return torch.from_numpy(np.ascontiguousarray(data)), rate


class WavWriter(_TempFileWriter):
    """Every sample in one WAV file, one after another with ``GAP_SECONDS`` of silence
    between them, streamed batch by batch (the header's length is set on close)."""

    what = "every sample in one file"

    def __init__(self, path: Path, n: int, nrow: int | None = None):
        super().__init__(path, n)
        self.wav: wave.Wave_write | None = None
        self.rate = self.channels = 0

    def write(self, samples: Samples) -> None:
        rate, data = int(samples.meta["sample_rate"]), samples.data
        if self.wav is None:
            self.rate, self.channels = rate, int(data.shape[1])
            self.wav = self._io(wave.open, self.file, "wb")
            self.wav.setnchannels(self.channels)
            self.wav.setsampwidth(2)
            self.wav.setframerate(rate)
        elif (rate, int(data.shape[1])) != (self.rate, self.channels):
            raise SampleError(f"{self.path}: samples changed sample rate or channels midway")
        gap = b"\0" * (2 * self.channels * int(GAP_SECONDS * rate))
        for wave_ct in data:
            self._io(self.wav.writeframes, (gap if self.count else b"") + pcm16(wave_ct))
            self.count += 1

    def close(self) -> list[Path]:
        if self.count != self.n or not self.count:
            self.abort()
            raise OutputError(f"{self.path}: {self.count} of {self.n} samples were made; "
                              "nothing was written")
        self._io(self.wav.close)  # patches the header's lengths; leaves the file open
        return super().close()

    def abort(self) -> None:
        if self.wav is not None:  # nothing left for Wave_write.__del__ to flush on exit
            self.wav._file = None  # type: ignore[attr-defined]
            self.wav = None
        super().abort()


class AudioModality(Modality):
    """Sound: waveforms, as text-to-audio pipelines (AudioLDM) and audio families make."""

    name = "audio"
    summary = ("audio (n, channels, T) float32 in [-1, 1] + sample_rate: .wav, .npz, one WAV "
               "per sample")
    layout = ("n", "channels", "T")
    value_range = (-1.0, 1.0)
    metadata = ("sample_rate",)
    plural = "audios"
    default_n = 4
    default_output = "samples.wav"
    sample_suffix = ".wav"
    content_type = "audio/wav"
    serve_single = True  # over HTTP a WAV is one clip; several go as json or npz
    pipeline_tags = {"prompt": "text-to-audio", "": None}
    generation_tag = "audio-generation"
    default_feature = "logmel"  # log-mel statistics (genzoo/eval/logmel.py): not FAD
    usage = 'samples = model.sample(4, seed=0)\nsamples.save("samples.wav")'
    gallery_html = ('<audio controls preload="metadata" src="{src}"></audio>'
                    '<a href="{src}" download="{name}">download</a>')

    def writers(self) -> dict[str, Callable[..., Writer]]:
        """``.wav``: every sample in one file; ``.npz``: ``audios``, ``sample_rate``, ``meta``."""
        return {".wav": WavWriter, ".npz": NpzWriter}

    def empty(self, config: dict[str, Any]) -> Any:
        """No waveforms."""
        import torch
        return torch.zeros((0, 1, 0))

    def encode(self, samples: Samples, i: int) -> bytes:
        """Waveform ``i`` as a 16-bit PCM WAV file."""
        return wav_bytes(samples.data[i], int(samples.meta["sample_rate"]))
