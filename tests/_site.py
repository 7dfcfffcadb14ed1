"""Plugins installed for real in tests: a site folder holding the package and a
``.dist-info`` whose ``entry_points.txt`` names it in the ``genzoo`` group, as pip leaves it,
so that discovery goes through importlib.metadata exactly as for a user's install."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path


def write_dist_info(site: Path, dist: str, version: str, entry: str, module: str) -> Path:
    """``site/<dist>-<version>.dist-info`` (METADATA, and ``entry = module`` in the genzoo
    group of entry_points.txt); returns that folder."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[genzoo]\n{entry} = {module}\n")
    return info


def install_package(site: Path, src: Path, dist: str, entry: str,
                    version: str = "1.0") -> Path:
    """Copy the package folder ``src`` into ``site`` as distribution ``dist`` with the genzoo
    entry point ``entry``; returns the package's folder there. ``site`` must then be put on
    ``sys.path`` (the caller's job, so that it can be undone)."""
    shutil.copytree(src, site / src.name)
    write_dist_info(site, dist, version, entry, src.name)
    return site / src.name


def forget(*packages: str) -> None:
    """Drop the named top-level packages' modules from ``sys.modules`` and rebuild the plugin
    and catalog registries: an uninstalled plugin leaves nothing behind for the next test."""
    from genzoo.catalog import registry
    from genzoo.plugins import manager as plugins
    for name in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[name]
    plugins.reset()
    registry.reset()
