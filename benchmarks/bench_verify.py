"""What verifying a model's files costs on every load: the cached check (one stat per file,
keyed on size, mtime, ctime, inode and device) against hashing every byte again.

    python benchmarks/bench_verify.py            # the bundled models and a 378 MB weights file

Prints one line per folder: files, MB, the cached check and the full re-hash in ms (medians).
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def measure(folder: Path, files: dict) -> tuple[float, float]:
    """(cached check, full re-hash) in ms for ``folder``'s ``files`` (name -> sha256)."""
    from genzoo.catalog.integrity import verify_folder
    verify_folder(folder, files)  # warm the cache
    cached = _median_ms(lambda: verify_folder(folder, files), 21)
    full = _median_ms(lambda: verify_folder(folder, files, force=True), 5)
    return cached, full


def big_folder(root: Path) -> tuple[Path, dict]:
    """A GPT-sized weights file (95M fp32 parameters, 378 MB) with its digest."""
    import torch
    from safetensors.torch import save_file

    from genzoo.catalog.integrity import sha256_file
    g = torch.Generator().manual_seed(0)
    state = {f"h.{i}.w": torch.randn(768, 9216, generator=g) for i in range(12)}
    state["wte"] = torch.randn(50257 // 4, 768, generator=g)
    folder = root / "gpt86m"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    return folder, {"model.safetensors": sha256_file(folder / "model.safetensors")}


def main() -> int:
    import genzoo
    from genzoo.devices import describe_machine
    rows = []
    for name in ("diffusion-mnist", "vae-mnist", "gan-mnist", "textlm-shakespeare"):
        info = genzoo.model_info(name, options=False)
        rows.append((name, Path(info["path"]), info["files"]))
    with tempfile.TemporaryDirectory() as tmp:
        folder, files = big_folder(Path(tmp))
        rows.append(("95M-parameter weights", folder, files))
        print(f"verifying model files on {describe_machine()}")
        for label, path, digests in rows:
            size = sum((path / f).stat().st_size for f in digests) / 1e6
            cached, full = measure(path, digests)
            print(f"  {label:28s} {len(digests)} files {size:7.1f} MB   cached check "
                  f"{cached:6.2f} ms   full re-hash {full:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
