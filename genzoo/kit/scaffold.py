"""``genzoo new-plugin NAME``: write a ready-to-install plugin package from the templates.

The templates (``genzoo/templates/plugin``) are ordinary files with ``{{placeholders}}``; the
folder ``__package__`` becomes the Python package and ``*.tmpl`` files lose that suffix. The
result is a hatchling project with the ``genzoo`` entry point, a small architecture that
learns (a tiny MLP VAE), a model card with bundled starting weights, tests using the
conformance kit, and a README. No torch is imported here; building the weights runs the new
package's ``build`` module in a subprocess.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from genzoo.errors import GenzooError, OptionError

TEMPLATES = Path(__file__).resolve().parent / "templates" / "plugin"
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_PLACEHOLDER_RE = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class PluginNames:
    """Every name the scaffold derives from NAME (``genzoo-toy`` in the examples)."""

    dist: str          # the pip distribution: genzoo-toy
    package: str       # the Python package: genzoo_toy
    entry_point: str   # the entry-point name in group "genzoo": toy
    family: str        # the family: toy
    arch: str          # the architecture: toy-mlp
    card: str          # the bundled model card: toy
    class_name: str    # the GenerativeModel subclass: ToyModel
    genzoo_version: str


def plugin_names(name: str) -> PluginNames:
    """Derive the names from NAME; a bad NAME is a one-line OptionError."""
    if not _NAME_RE.match(name or ""):
        raise OptionError(f"plugin name {name!r}: use lowercase letters, digits and single "
                          "dashes, starting with a letter (e.g. genzoo-toy)")
    short = name[len("genzoo-"):] if name.startswith("genzoo-") else name
    if name == "genzoo" or not short:
        raise OptionError("name the plugin after what it adds, e.g. genzoo-toy")
    from genzoo import __version__
    return PluginNames(dist=name, package=name.replace("-", "_"), entry_point=short,
                       family=short, arch=f"{short}-mlp", card=short,
                       class_name="".join(p.capitalize() for p in short.split("-")) + "Model",
                       genzoo_version=__version__)


def render(text: str, names: PluginNames) -> str:
    """Fill ``{{placeholders}}``; an unknown one is a bug in the template."""
    values = asdict(names)

    def fill(match: re.Match) -> str:
        if match.group(1) not in values:
            raise KeyError(f"template placeholder {{{{{match.group(1)}}}}} is unknown")
        return values[match.group(1)]
    return _PLACEHOLDER_RE.sub(fill, text)


def _target_path(relative: Path, names: PluginNames) -> Path:
    parts = [names.package if p == "__package__" else p for p in relative.parts]
    if parts[-1].endswith(".tmpl"):
        parts[-1] = parts[-1][:-len(".tmpl")]
    if parts[-1] == "gitignore":  # stored without the dot so it cannot act on genzoo's repo
        parts[-1] = ".gitignore"
    return Path(*parts)


def _check_entry_point_free(names: PluginNames) -> None:
    """Refuse an entry-point name an installed plugin of another distribution already uses."""
    for ep in importlib.metadata.entry_points(group="genzoo"):
        dist = getattr(ep, "dist", None)
        owner = dist.metadata["Name"] if dist is not None else ep.value
        if ep.name == names.entry_point and owner.replace("_", "-").lower() != names.dist:
            raise OptionError(f"the entry-point name {ep.name!r} is already used by the installed "
                              f"plugin {owner}; choose another NAME")


def create_plugin(name: str, directory: str | os.PathLike = ".", force: bool = False,
                  weights: bool = True) -> Path:
    """Write the plugin project ``DIRECTORY/NAME`` and return its folder.

    ``force`` allows writing into an existing non-empty folder (files are overwritten);
    ``weights=False`` skips building the bundled starting weights (then the card appears
    after ``python -m PACKAGE.build``)."""
    names = plugin_names(name)
    _check_entry_point_free(names)
    root = Path(directory).expanduser() / names.dist
    if root.exists() and any(root.iterdir()) and not force:
        raise OptionError(f"{root} already exists and is not empty; choose another --dir or "
                          "pass --force to overwrite the scaffold's files")
    for src in sorted(p for p in TEMPLATES.rglob("*") if p.is_file()):
        if "__pycache__" in src.parts:
            continue
        dest = root / _target_path(src.relative_to(TEMPLATES), names)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(render(src.read_text(encoding="utf-8"), names), encoding="utf-8")
    if weights:
        build_weights(root, names)
    return root


def build_weights(root: Path, names: PluginNames) -> None:
    """Run ``python -m PACKAGE.build`` in the new project (a fresh interpreter, so this
    process imports neither torch nor the new package)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}
    proc = subprocess.run([sys.executable, "-m", f"{names.package}.build"], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise GenzooError(f"building the starting weights failed ({last}); the project is in "
                          f"{root}: fix it and run python -m {names.package}.build there")
