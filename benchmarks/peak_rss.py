"""Peak resident memory of a fresh Python process, measured by the process itself.

``wait4``'s ``ru_maxrss`` is wrong for this: Linux carries the high-water mark of the forked
copy of the *parent* across ``execve``, so a child started from a benchmark process that has
torch and a few models loaded reports the parent's size, whatever it did itself (two different
commands then read the same figure). ``VmHWM`` in ``/proc/self/status`` belongs to the address
space that ``execve`` created, so it is the child's own.

    python benchmarks/peak_rss.py -m genzoo sample diffusion-mnist -n 1000   # prints MiB
    python benchmarks/peak_rss.py script.py ARGS...

``peak_rss_mib(args)`` runs such a command and returns the figure.
"""
from __future__ import annotations

import os
import runpy
import subprocess
import sys
import tempfile


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def peak_rss_mib(args: list[str]) -> float:
    """Run ``python peak_rss.py ARGS`` (``-m module ...`` or ``script.py ...``) in a fresh
    process and return its own peak RSS in MiB; a failing command raises SystemExit."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env={**os.environ, "PEAK_RSS_OUT": out.name})
        if proc.returncode != 0:
            raise SystemExit(f"{args} failed: {proc.stderr.decode()[-2000:]}")
        return int(out.read()) / 1024


def _main() -> None:
    args = sys.argv[1:]
    try:
        if args[:1] == ["-m"]:
            sys.argv = [args[1], *args[2:]]
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = args
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        kib = _vm_hwm_kib()
        if os.environ.get("PEAK_RSS_OUT"):
            with open(os.environ["PEAK_RSS_OUT"], "w") as f:
                f.write(str(kib))
        else:
            print(f"peak RSS {kib / 1024:.1f} MiB", file=sys.stderr)


if __name__ == "__main__":
    _main()
