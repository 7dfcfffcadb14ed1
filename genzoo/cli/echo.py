"""What every command prints the same way: a JSON summary (``--json``)."""
from __future__ import annotations

import json
from typing import Any

import click


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout; values JSON lacks (paths) as their text."""
    click.echo(json.dumps(data, indent=2, default=str))
