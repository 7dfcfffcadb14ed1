"""The ``genzoo`` command line: thin click commands that parse, call the API and print.

Errors a user can act on (``GenzooError``) are printed as one line, ``Error: ...``, with exit
status 1; ``--debug`` shows the traceback too. Usage errors exit 2 (click's convention).
Importing this module (and running ``genzoo list``) does not import torch.
"""
from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, TextIO

import click

from genzoo import __version__
from genzoo.cli.complete import complete_model_name
from genzoo.cli.echo import echo_json
from genzoo.errors import GenzooError


class _OneLineError(click.ClickException):
    """A GenzooError as click shows it: ``Error: message`` on stderr, exit 1."""

    exit_code = 1


class GenzooGroup(click.Group):
    """A click group that turns GenzooError into a one-line message (traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GenzooError as e:
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()
            raise _OneLineError(str(e)) from e


def _human_size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "-"


def _human_count(n: int | None) -> str:
    if n is None:
        return "-"
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


def _table(rows: list[list[str]], header: list[str]) -> None:
    """Print left-aligned columns sized to their widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


@click.group(cls=GenzooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More notes on stderr (-vv: debug detail).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.version_option(__version__, "--version", prog_name="genzoo")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int, quiet: bool) -> None:
    """genzoo: a zoo of generative models (diffusion, VAE, GAN, text LMs) behind one API.

    Models are listed by `genzoo list`; families come from plugins (`genzoo plugins`).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    show_logs(logging.WARNING if quiet else logging.DEBUG if verbose > 1 or debug
              else logging.INFO)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (click's test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def show_logs(level: int) -> None:
    """Send the ``genzoo`` logger's records at ``level`` and above to stderr as plain lines
    (library notes such as "converted 3-channel images to grey", plugin warnings)."""
    logger = logging.getLogger("genzoo")
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    handler.setLevel(level)
    logger.setLevel(level)


@cli.command("list")
@click.argument("pattern", required=False)
@click.option("--family", "-f", help="Only models of this family (diffusion, vae, gan, textlm...).")
@click.option("--can", metavar="CAPABILITY",
              help="Only models that can do this: label, init (image-to-image), mask "
                   "(inpainting), interpolate ...")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_cmd(pattern: str | None, family: str | None, can: str | None, as_json: bool) -> None:
    """List the models in the catalog.

    PATTERN filters names with shell wildcards (`*mnist*`); a plain word matches names that
    contain it. Models whose plugin is not installed are listed with the pip line to install it.
    """
    from genzoo.api import list_models, model_status
    cards = list_models(pattern, family, can)
    infos = [{**c.to_dict(), **model_status(c)} for c in cards]
    if as_json:
        echo_json(infos)
        return
    if not infos:
        click.echo("no models match" + (f" {pattern!r}" if pattern else ""), err=True)
        return
    rows = [[i["name"], i["family"], _human_count(i["params"]), _human_size(i["size"]),
             i["source"], i["status"]] for i in infos]
    _table(rows, ["NAME", "FAMILY", "PARAMS", "SIZE", "SOURCE", "STATUS"])


@cli.command()
@click.argument("name", metavar="NAME_OR_PATH", shell_complete=complete_model_name)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(name: str, as_json: bool) -> None:
    """Show a model's catalog card and its sampling options: source, files and digests,
    metrics, plugin and download status, and each option's type, range and default (a
    folder too)."""
    from genzoo.api import model_info
    data = model_info(name)  # the info dict: card fields + status + options
    if as_json:
        echo_json(data)
        return
    for key in ("name", "family", "arch", "modality", "summary", "source", "license", "package",
                "plugin", "origin", "status", "path"):
        if data.get(key):
            click.echo(f"{key + ':':10} {data[key]}")
    if "params" in data:
        click.echo(f"{'params:':10} {_human_count(data['params'])}")
        click.echo(f"{'size:':10} {_human_size(data['size'])}")
    for key in ("tags", "capabilities"):
        if data.get(key):
            click.echo(f"{key + ':':10} {', '.join(data[key])}")
    for section in ("files", "sampling", "metrics"):
        if isinstance(data.get(section), dict) and data[section]:
            click.echo(f"{section}:")
            for k, v in data[section].items():
                click.echo(f"  {k}: {'(no digest)' if v is None else v}")
    if data.get("options"):
        click.echo("options (genzoo sample NAME --FLAG VALUE, or -O KEY=VALUE):")
        for o in data["options"]:
            click.echo(f"  {o['flag']} {_option_kind(o)}  {o['help']}".rstrip()
                       + f" [default: {o['default']}]")


def _option_kind(option: dict[str, Any]) -> str:
    """``INT >= 1``, ``[ddpm|ddim]``, ``FLOAT between 0 and 1`` for ``genzoo info``."""
    if option["choices"]:
        return "[" + "|".join(map(str, option["choices"])) + "]"
    kind = option["type"].upper()
    lo, hi = option["min"], option["max"]
    if lo is not None and hi is not None:
        return f"{kind} in [{lo}, {hi}]"
    if lo is not None:
        return f"{kind} >= {lo}"
    return f"{kind} <= {hi}" if hi is not None else kind


@cli.command()
@click.argument("names", nargs=-1, required=True, shell_complete=complete_model_name)
@click.option("--revision", help="A branch, tag or commit instead of the card's pinned one.")
def download(names: tuple[str, ...], revision: str | None) -> None:
    """Download models into the Hugging Face cache (bundled ones are verified).

    Every file with a sha256 in the card is checked; run this while online so that
    `genzoo sample NAME` later works offline.
    """
    from genzoo.api import download as fetch
    failed = 0
    for name in names:
        try:
            folder = fetch(name, revision=revision)
        except GenzooError as e:
            if len(names) == 1:
                raise
            click.echo(f"Error: {e}", err=True)
            failed += 1
            continue
        click.echo(f"{name}: {folder}")
    if failed:
        raise _OneLineError(f"{failed} of {len(names)} downloads failed")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def plugins_cmd(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins (entry points of group "genzoo"): status, architectures, model
    cards, feature networks and modalities (kinds of sample: image, text, audio ...) each
    provides.

    A plugin that fails (at import, in a hook, or with a result of the wrong type) is shown
    with its error, one that lost a name to a plugin of higher precedence as "conflict"; neither
    stops other commands (GENZOO_STRICT_PLUGINS=1 makes them fatal). `genzoo --debug plugins`
    also prints the tracebacks of the failures.
    """
    from genzoo.api import plugin_infos
    found = plugin_infos()  # the catalog is built first: each plugin's cards and card errors
    infos = [p.to_dict() for p in found]
    if as_json:
        echo_json(infos)
    elif not infos:
        click.echo("no plugins installed; try: pip install genzoo-diffusion", err=True)
    else:
        rows = [[i["name"], i["distribution"] or "-", i["version"] or "-", i["status"],
                 ", ".join(i["architectures"]) or "-", ", ".join(i["cards"]) or "-",
                 ", ".join(i["feature_nets"]) or "-", ", ".join(i["modalities"]) or "-",
                 i["error"] or ""] for i in infos]
        _table(rows, ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "ARCHITECTURES", "CARDS",
                      "FEATURES", "MODALITIES", "ERROR"])
    if (ctx.obj or {}).get("debug"):
        for p in found:
            if p.traceback:
                click.echo(f"--- plugin {p.name!r} ({p.status}) ---\n{p.traceback.rstrip()}",
                           err=True)


@cli.group()
def cache() -> None:
    """Inspect and clean downloaded weights (the Hugging Face cache)."""


@cache.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def cache_ls(as_json: bool) -> None:
    """List the model repositories in the Hugging Face cache and the genzoo models using them."""
    from genzoo.catalog.cache import cache_entries
    from genzoo.catalog.hub import hub_cache_dir
    entries = cache_entries()
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo(f"the cache is empty ({hub_cache_dir()})", err=True)
        return
    rows = [[e["repo_id"], ", ".join(e["models"]) or "-", _human_size(e["size"]),
             ", ".join(r["commit"][:10] + (f" ({', '.join(r['refs'])})" if r["refs"] else "")
                       for r in e["revisions"])] for e in entries]
    _table(rows, ["REPO", "MODELS", "SIZE", "REVISIONS"])


@cache.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def cache_rm(names: tuple[str, ...], yes: bool) -> None:
    """Delete cached weights of models (card names or org/repo ids)."""
    from genzoo.catalog.cache import remove_from_cache
    if not yes:
        click.confirm(f"Delete the cached weights of {', '.join(names)}?", abort=True)
    for name in names:
        freed = remove_from_cache(name)
        click.echo(f"{name}: removed ({_human_size(freed)} freed)")


@cache.command("verify")
@click.argument("names", nargs=-1)
def cache_verify(names: tuple[str, ...]) -> None:
    """Re-hash downloaded models' files against their cards (all downloaded models by default)."""
    from genzoo.api import list_models
    from genzoo.catalog.cache import verify_cached
    from genzoo.catalog.hub import is_available
    if not names:
        names = tuple(c.name for c in list_models() if c.files and is_available(c.source, c.files))
        if not names:
            click.echo("nothing downloaded to verify", err=True)
            return
    failed = 0
    for name in names:
        try:
            result = verify_cached(name)
        except GenzooError as e:
            click.echo(f"{name}: FAILED: {e}", err=True)
            failed += 1
            continue
        click.echo(f"{name}: ok ({len(result)} files)")
    if failed:
        raise _OneLineError(f"{failed} of {len(names)} models failed verification")


def main() -> None:
    """Console entry point (``genzoo`` and ``python -m genzoo``)."""
    try:
        cli.main(prog_name="genzoo")
    except GenzooError as e:  # raised outside a command (e.g. while parsing); still one line
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)


# The model commands (sample, finetune, eval, push) live beside this file; they import torch
# only inside their bodies.
from genzoo.cli.model import register_model_commands  # noqa: E402
from genzoo.cli.plugin import new_plugin_command  # noqa: E402
from genzoo.cli.serve import serve_command  # noqa: E402
from genzoo.cli.lora import merge_command  # noqa: E402

register_model_commands(cli)
cli.add_command(new_plugin_command)
cli.add_command(serve_command)
cli.add_command(merge_command)

if __name__ == "__main__":  # pragma: no cover
    main()
