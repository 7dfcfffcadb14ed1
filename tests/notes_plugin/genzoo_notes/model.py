"""Notes: a pitch-conditional harmonic synthesiser, written from genzoo's public contract only.

A tiny MLP maps (the pitch's embedding, per-sample noise z) to the amplitudes of the pitch's
first harmonics, an overall gain and a decay rate; the waveform is the exponentially decaying
sum of those harmonics of the pitch's fundamental. The twelve pitches are the semitones of
one octave above ``base_hz``. Samples are the ``audio`` modality: (n, 1, T) in [-1, 1] with
the config's ``sample_rate``, which ``sample_metadata`` hands on by default.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from genzoo.errors import DataError, OptionError
from genzoo.model import GenerativeModel
from genzoo.options import Option

#: Semitones in the octave the model plays.
PITCHES = 12
#: How many notes ``prepare_data("synthetic")`` makes, and from which seed (fixed: the same
#: notes on every machine, so a finetune on them is reproducible).
SYNTHETIC_N = 48
SYNTHETIC_SEED = 1234
#: Added to magnitudes before the log of the spectral loss: silence should not dominate it.
SPECTRUM_FLOOR = 1e-2


class NoteWaves:
    """Training waveforms (N, 1, T) in [-1, 1]: ``len()`` and ``dataset[index] -> batch``."""

    def __init__(self, waves: torch.Tensor, source: str):
        self.waves, self.source = waves, source

    def __len__(self) -> int:
        return int(self.waves.shape[0])

    def __getitem__(self, idx: Any) -> torch.Tensor:
        return self.waves[idx]


class NotesModel(GenerativeModel):
    """Harmonic notes of a chosen (or drawn) pitch; sample i depends only on (seed, i)."""

    arch = "notes-harmonic"
    family = "notes"
    modality = "audio"
    sample_defaults: dict[str, Any] = {"batch_size": 32}
    sample_options = (
        Option("pitch", "int", None, "semitone above the base note (0-11); default: drawn",
               min=0, max=PITCHES - 1, condition=True, per_sample=True),)
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 16, "lr": 3e-3, "warmup": 0}
    #: What ``genzoo finetune --data`` and evaluation's reference accept (read by core and
    #: the CLI through ``getattr(cls, "data_help", None)``).
    data_help: ClassVar[str] = ("'synthetic' (harmonic notes made in code), a folder of "
                                "16-bit mono WAV files at the model's sample rate, or an .npz "
                                "holding 'audios' (N, 1, T) in [-1, 1]")
    eval_defaults: ClassVar[dict[str, Any]] = {"n": 32, "reference": "synthetic",
                                               "feature": "logmel"}
    #: The family's own card fields: its tags join genzoo's. No pipeline_tag: the Hub has no
    #: task for pitch-conditioned (not text-conditioned) audio, so the modality's
    #: "audio-generation" tag stands in for it.
    card_fields: ClassVar[dict[str, Any]] = {"tags": ["music", "synthesizer"]}

    def __init__(self, config: dict[str, Any] | None = None):
        config = {"sample_rate": 8000, "seconds": 0.5, "base_hz": 220.0, "harmonics": 6,
                  "hidden": 32, "z_dim": 4, "embed": 8, **(config or {})}
        super().__init__(config)
        if int(config["sample_rate"]) < 2 * self.top_hz(config):
            raise OptionError(f"sample_rate {config['sample_rate']} cannot hold harmonic "
                              f"{config['harmonics']} of the top pitch; raise it")
        self.embed = nn.Embedding(PITCHES, int(config["embed"]))
        self.net = nn.Sequential(
            nn.Linear(int(config["embed"]) + int(config["z_dim"]), int(config["hidden"])),
            nn.SiLU(), nn.Linear(int(config["hidden"]), int(config["harmonics"]) + 2))

    @staticmethod
    def top_hz(config: dict[str, Any]) -> float:
        """The highest frequency the model plays: the top pitch's last harmonic."""
        return float(config["base_hz"]) * 2 ** ((PITCHES - 1) / PITCHES) * int(config["harmonics"])

    @property
    def length(self) -> int:
        """Samples per waveform."""
        return int(round(float(self.config["seconds"]) * int(self.config["sample_rate"])))

    def f0(self, pitch: torch.Tensor) -> torch.Tensor:
        """Fundamental frequency in Hz of each pitch index."""
        return float(self.config["base_hz"]) * 2 ** (pitch.float() / PITCHES)

    # ---- the synthesiser -----------------------------------------------------------------
    def synth(self, pitch: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Waveforms (n, 1, T) for pitches (n,) and noise (n, z_dim): differentiable in the
        MLP's weights. Amplitudes are a softmax times a sigmoid gain, so |wave| <= 1."""
        dev = self.embed.weight.device
        pitch, z = pitch.to(dev), z.to(dev, self.embed.weight.dtype)
        out = self.net(torch.cat([self.embed(pitch), z], 1)).float()
        k = int(self.config["harmonics"])
        amps = torch.softmax(out[:, :k], 1) * torch.sigmoid(out[:, k:k + 1])
        decay = nn.functional.softplus(out[:, k + 1:k + 2]) + 0.5  # per second, never 0
        t = torch.arange(self.length, device=dev) / float(self.config["sample_rate"])
        h = torch.arange(1, k + 1, device=dev, dtype=torch.float32)
        phase = 2 * math.pi * self.f0(pitch)[:, None, None] * h[None, :, None] * t
        wave = (amps[:, :, None] * torch.sin(phase)).sum(1) * torch.exp(-decay * t)
        return wave[:, None, :]

    def draw(self, generators: list[torch.Generator], pitch: Any = None):
        """Each sample's pitch and noise from its own generator. The pitch is drawn even
        when given, so asking for sample i's own pitch gives sample i."""
        drawn, zs = [], []
        for g in generators:
            drawn.append(int(torch.randint(PITCHES, (), generator=g)))
            zs.append(torch.randn(int(self.config["z_dim"]), generator=g))
        if pitch is not None:
            given = list(pitch) if isinstance(pitch, (list, tuple)) else [pitch] * len(drawn)
            if len(given) != len(drawn):
                raise OptionError(f"pitch has {len(given)} values for {len(drawn)} samples")
            for p in given:
                if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < PITCHES:
                    raise OptionError(f"pitch must be an integer 0-{PITCHES - 1}, got {p!r}")
            drawn = given
        return torch.tensor(drawn, dtype=torch.long), torch.stack(zs)

    def generate(self, generators: list[torch.Generator], pitch: Any = None) -> torch.Tensor:
        """Waveforms (n, 1, T) in [-1, 1]; sample i from ``generators[i]`` (and its pitch)."""
        return self.synth(*self.draw(generators, pitch))

    # ---- training ------------------------------------------------------------------------
    def estimate_pitch(self, waves: torch.Tensor) -> torch.Tensor:
        """Each waveform's most likely pitch: the one whose harmonics hold the most of its
        spectrum's magnitude (data carries no pitch labels; a WAV file is just sound)."""
        spec = torch.fft.rfft(waves.float().flatten(1), dim=1).abs()
        bins = torch.arange(PITCHES, device=waves.device)
        h = torch.arange(1, int(self.config["harmonics"]) + 1, device=waves.device)
        hz = self.f0(bins)[:, None] * h[None, :]  # (pitches, harmonics)
        idx = (hz * waves.shape[-1] / float(self.config["sample_rate"])).round().long()
        idx = idx.clamp(max=spec.shape[1] - 1)
        return spec[:, idx].sum(2).argmax(1)

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Log-magnitude spectral distance between the batch and notes synthesised at each
        waveform's estimated pitch (noise from torch's global generator, which the engine
        seeds)."""
        waves = batch.float()
        with torch.no_grad():
            pitch = self.estimate_pitch(waves)
        z = torch.randn(len(waves), int(self.config["z_dim"])).to(waves.device)
        fake = self.synth(pitch, z)

        def logmag(x: torch.Tensor) -> torch.Tensor:
            return torch.log(torch.fft.rfft(x.flatten(1), dim=1).abs() + SPECTRUM_FLOOR)
        return (logmag(fake) - logmag(waves)).abs().mean()

    def prepare_data(self, data: Any) -> NoteWaves:
        """``data_help``'s three kinds (or a tensor (N, 1, T)) as training waveforms, cut or
        padded with silence to the model's length; anything else is a one-line DataError."""
        if isinstance(data, torch.Tensor):
            return NoteWaves(self._fit(data, "the given tensor"), "tensor")
        if isinstance(data, str) and data == "synthetic":
            return NoteWaves(synthetic_notes(self.config), "synthetic")
        if not isinstance(data, (str, Path)):
            raise DataError(f"notes data must be {self.data_help}; got {type(data).__name__}")
        path = Path(data)
        if path.is_dir():
            return NoteWaves(self._fit(self._read_folder(path), str(path)), str(path))
        if path.suffix == ".npz" and path.is_file():
            return NoteWaves(self._fit(self._read_npz(path), str(path)), str(path))
        what = "no such file or folder" if not path.exists() else "not a folder or an .npz"
        raise DataError(f"{path}: {what}; notes data is {self.data_help}")

    def _read_folder(self, path: Path) -> torch.Tensor:
        """Every ``*.wav`` in ``path`` (sorted), checked for rate and channels."""
        from genzoo.modalities.audio import read_wav
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav")
        if not files:
            raise DataError(f"{path}: no .wav files; notes data is {self.data_help}")
        waves = []
        for f in files:
            wave, rate = read_wav(f)
            if rate != int(self.config["sample_rate"]) or wave.shape[0] != 1:
                raise DataError(f"{f}: {wave.shape[0]} channel(s) at {rate} Hz; this model "
                                f"takes mono at {self.config['sample_rate']} Hz (resample it, "
                                f"e.g. `sox {f.name} -r {self.config['sample_rate']} -c 1 "
                                "out.wav`)")
            waves.append(self._pad(wave))
        return torch.stack(waves)

    def _read_npz(self, path: Path) -> torch.Tensor:
        """The ``audios`` array of an .npz (never unpickled), its rate checked if given."""
        import numpy as np
        try:
            with np.load(path, allow_pickle=False) as z:
                if "audios" not in z.files:
                    raise DataError(f"{path}: no 'audios' array (it holds "
                                    f"{', '.join(z.files) or 'nothing'}); notes data is "
                                    f"{self.data_help}")
                audios = np.asarray(z["audios"], dtype=np.float32)
                rate = int(z["sample_rate"]) if "sample_rate" in z.files else None
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: not a readable .npz ({str(e).splitlines()[0]})") from None
        if rate is not None and rate != int(self.config["sample_rate"]):
            raise DataError(f"{path}: sample_rate {rate}; this model takes "
                            f"{self.config['sample_rate']} Hz")
        return torch.from_numpy(audios)

    def _pad(self, wave: torch.Tensor) -> torch.Tensor:
        """One (1, T') waveform cut or padded with silence to (1, T)."""
        wave = wave[:, :self.length]
        return nn.functional.pad(wave, (0, self.length - wave.shape[1]))

    def _fit(self, waves: torch.Tensor, where: str) -> torch.Tensor:
        """Waveforms checked as (N, 1, T') finite, in [-1, 1], and brought to length T."""
        if waves.dim() != 3 or waves.shape[1] != 1 or waves.shape[0] == 0:
            raise DataError(f"{where}: audios shaped {tuple(waves.shape)}; notes data is "
                            "(N, 1, T) mono waveforms")
        waves = waves.float()
        if not torch.isfinite(waves).all() or waves.abs().max() > 1:
            raise DataError(f"{where}: audio values must be finite and in [-1, 1]")
        return torch.stack([self._pad(w) for w in waves])


def synthetic_notes(config: dict[str, Any], n: int = SYNTHETIC_N) -> torch.Tensor:
    """``n`` plucked-string-like notes (N, 1, T) made in code with a fixed seed: pitch
    ``i % 12``, harmonic amplitudes falling as 1/h with some jitter, a random decay."""
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    rate, k = int(config["sample_rate"]), int(config["harmonics"])
    t = torch.arange(int(round(float(config["seconds"]) * rate))) / rate
    h = torch.arange(1, k + 1, dtype=torch.float32)
    notes = []
    for i in range(n):
        f0 = float(config["base_hz"]) * 2 ** ((i % PITCHES) / PITCHES)
        amps = (1 / h) * (0.75 + 0.5 * torch.rand(k, generator=g))
        amps = 0.8 * amps / amps.sum()
        decay = 2 + 4 * float(torch.rand((), generator=g))
        wave = (amps[:, None] * torch.sin(2 * math.pi * f0 * h[:, None] * t)).sum(0)
        notes.append(wave * torch.exp(-decay * t))
    return torch.stack(notes)[:, None, :]
