"""Shell completion of model names for the CLI's NAME arguments (click's ``shell_complete``).

Enabled per shell by click's ``_GENZOO_COMPLETE`` variable (README, "Shell completion").
Reads only the catalog, so it is torch-free and as fast as ``genzoo list``.
"""
from __future__ import annotations

import logging

import click
from click.shell_completion import CompletionItem

from genzoo.errors import GenzooError

#: Characters that make an argument look like a path rather than a catalog name.
_PATH_START = ("/", ".", "~")


def complete_model_name(ctx: click.Context, param: click.Parameter,
                        incomplete: str) -> list[CompletionItem]:
    """Catalog names starting with ``incomplete`` (each with its summary as help), and
    folders when ``incomplete`` looks like a path or no name fits (NAME_OR_PATH arguments
    take a model folder too). A broken catalog completes nothing rather than failing."""
    if incomplete.startswith(_PATH_START) or "/" in incomplete:
        return [CompletionItem(incomplete, type="dir")]
    try:
        from genzoo.catalog.registry import get_registry
        cards = [c for c in get_registry().list() if c.name.startswith(incomplete)]
    except GenzooError as e:  # a bad user catalog: completion is no place for the error
        logging.getLogger(__name__).debug("no completion: %s", e)
        cards = []
    if not cards:
        return [CompletionItem(incomplete, type="dir")]
    return [CompletionItem(c.name, help=c.summary or None) for c in cards]
