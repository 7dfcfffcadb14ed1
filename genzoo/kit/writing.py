"""The kit's writer round trip: every writer a model's modality declares writes its samples.

Imported only when a conformance test runs."""
from __future__ import annotations

from pathlib import Path

from genzoo.kit.learning import required_values
from genzoo.model import GenerativeModel


def check_writers(model: GenerativeModel, tmp: Path) -> None:
    """Every writer the model's modality declares (``Modality.writers``: a PNG grid, a WAV,
    an .npz ...) and a folder (one ``encode``-d file per sample) write the model's samples:
    each file exists and is not empty, the folder holds one ``sample_suffix`` file per
    sample, and an ``.npz`` reads back (no pickle) as the samples' array and metadata."""
    spec = model.sample_modality()
    samples = model.sample(3, seed=0, **required_values(model, 3))
    for suffix in spec.writers():
        target = Path(tmp) / f"kit-samples{suffix}"
        written = samples.save(target)
        assert written and all(Path(f).is_file() and Path(f).stat().st_size > 0
                               for f in written), f"writing {suffix} left {written}"
        if suffix == ".npz" and spec.holds != "list":  # the one container core reads back
            _check_npz(target, samples, spec)
    folder = Path(tmp) / "kit-samples"
    written = samples.save(f"{folder}/")
    names = sorted(Path(f).name for f in written)
    assert names == [f"{i:05d}{spec.sample_suffix}" for i in range(3)], \
        f"a folder of 3 {spec.plural} holds {names}"
    assert all(Path(f).stat().st_size > 0 for f in written), f"empty files in {folder}"


def _check_npz(path: Path, samples, spec) -> None:
    """An .npz of ``samples``: the array under the modality's plural, equal to the data,
    and each metadata value the modality names."""
    import numpy as np
    with np.load(path, allow_pickle=False) as z:
        assert spec.plural in z.files, f"{path.name} holds {z.files}, not {spec.plural!r}"
        assert np.array_equal(z[spec.plural], samples.data.numpy()), \
            f"{path.name}'s {spec.plural} differ from the samples written"
        for key in spec.metadata:
            assert key in z.files and z[key].item() == samples.meta[key], \
                f"{path.name} lacks {key} = {samples.meta[key]!r}"
