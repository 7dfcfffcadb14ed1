"""Performance levers chosen by measurement on the CPU at hand, not by its name.

A lever (channels-last, bf16 autocast, ...) that pays on one CPU can cost on another: on an AMD
EPYC with AVX512-BF16 bf16 autocast sampled 1.36x faster than fp32, on an Intel Xeon with
AMX-BF16 the same benchmark ran four times slower. So a family times a couple of warm runs of
each alternative at its real shape and uses the lever only where it measured faster. The
decision is cached per (CPU model, torch version, thread count, key) in
``$GENZOO_HOME/levers.json``, so a CPU pays for the measurement once; a damaged or unwritable
file only costs a re-measurement.

``GENZOO_LEVERS`` overrides: ``measure`` (the default), ``on`` (always pull the lever, no
timing) or ``off`` (never). Tests set it to stay deterministic.

This module imports neither torch nor numpy: the callables it times do the work.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from genzoo.errors import OptionError
from genzoo.fsutil import genzoo_home

log = logging.getLogger("genzoo")

#: The values ``GENZOO_LEVERS`` accepts.
MODES: tuple[str, ...] = ("measure", "on", "off")
#: Timed runs of each alternative after one warm-up run (the fastest counts: noise only slows).
REPEATS = 2
#: A measurement whose warm-up runs took longer than this (seconds) times one run each, not
#: ``REPEATS``: the bound on what a decision costs.
BUDGET_S = 0.5
CACHE_VERSION = 1

_memo: dict[tuple[str, str], dict[str, Any]] = {}  # (cache file, entry key) -> entry
_warned: set[str] = set()  # dtype warnings already logged by this process


def mode() -> str:
    """``GENZOO_LEVERS`` as one of ``MODES`` (unset: ``measure``); a one-line OptionError
    naming the accepted values otherwise."""
    value = os.environ.get("GENZOO_LEVERS", "").strip().lower() or "measure"
    if value not in MODES:
        raise OptionError(f"GENZOO_LEVERS={value!r} is not one of {', '.join(MODES)}: "
                          "unset it to measure each lever on this CPU")
    return value


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (the platform's processor elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cache_path() -> Path:
    """Where measured decisions are kept: ``$GENZOO_HOME/levers.json``."""
    return genzoo_home() / "levers.json"


def _entry_key(key: str) -> str:
    import torch  # the caller is timing torch code: importing it here costs nothing extra
    return json.dumps([cpu_model(), torch.__version__, torch.get_num_threads(), key])


def _read(path: Path) -> dict[str, Any]:
    """The cache's entries; {} for a missing, damaged or foreign file (re-measured)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION \
            or not isinstance(data.get("entries"), dict):
        return {}
    entries: dict[str, Any] = data["entries"]
    return entries


def _write(path: Path, entry_key: str, entry: dict[str, Any]) -> None:
    """Add one entry, atomically (a temporary file renamed over the old one), so a reader
    never sees half a file; an unwritable home only loses the cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = {**_read(path), entry_key: entry}
        fd, tmp = tempfile.mkstemp(prefix=".levers-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": CACHE_VERSION, "entries": entries}, f, indent=1)
        os.replace(tmp, path)
    except OSError as e:
        log.debug("lever cache %s not written: %s", path, e)


def _time(runs: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Seconds of the fastest timed run of each callable: one warm-up run each, then
    ``REPEATS`` rounds that alternate between them, so machine noise hits all alike."""
    t0 = time.perf_counter()
    for run in runs.values():
        run()
    rounds = REPEATS if time.perf_counter() - t0 <= BUDGET_S else 1
    best = {name: float("inf") for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def measured(key: str, runs: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Seconds per run of each of ``runs`` for ``key`` on this CPU: from the cache, or timed
    now and cached. ``key`` names what is timed (network, shape, precision) so that a different
    model or batch is measured on its own."""
    path, entry_key = cache_path(), _entry_key(key)
    entry = _memo.get((str(path), entry_key)) or _read(path).get(entry_key)
    if not isinstance(entry, dict) or set(entry.get("seconds", {})) != set(runs):
        seconds = _time(runs)
        entry = {"cpu": cpu_model(), "key": key, "seconds": seconds,
                 "measured": time.strftime("%Y-%m-%d %H:%M")}
        _write(path, entry_key, entry)
        log.debug("lever %s measured on %s: %s", key, entry["cpu"], seconds)
    _memo[(str(path), entry_key)] = entry
    return {name: float(s) for name, s in entry["seconds"].items()}


def use_lever(key: str, run_default: Callable[[], Any], run_lever: Callable[[], Any]) -> bool:
    """Whether to pull the lever named by ``key``: ``GENZOO_LEVERS=on``/``off`` decide without
    timing; ``measure`` pulls it only where ``run_lever`` measured faster than ``run_default``
    on this CPU (a tie keeps the default)."""
    chosen = mode()
    if chosen != "measure":
        return chosen == "on"
    seconds = measured(key, {"default": run_default, "lever": run_lever})
    return seconds["lever"] < seconds["default"]


def warn_if_slower(key: str, dtype: str, run_fp32: Callable[[], Any],
                   run_dtype: Callable[[], Any]) -> float | None:
    """Compare a precision the user asked for with fp32 on this CPU; where it measured slower,
    log one warning (once per process and key) through the ``genzoo`` logger and return how
    many times slower it is. The user's choice stands: it is what they asked for. Nothing is
    timed unless ``GENZOO_LEVERS`` is ``measure``."""
    if mode() != "measure":
        return None
    seconds = measured(key, {"fp32": run_fp32, dtype: run_dtype})
    ratio = seconds[dtype] / seconds["fp32"] if seconds["fp32"] > 0 else 1.0
    if ratio <= 1.0:
        return None
    if key not in _warned:
        _warned.add(key)
        log.warning("%s measured %.1fx slower than fp32 on this CPU (%s): --dtype fp32 is "
                    "faster here", dtype, ratio, cpu_model())
    return ratio


__all__ = ["MODES", "cache_path", "cpu_model", "measured", "mode", "use_lever",
           "warn_if_slower"]
