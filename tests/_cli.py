"""The CLI as the modality tests drive it: ``genzoo ARGS`` in-process, and its one-line
errors checked the same way everywhere."""
from __future__ import annotations

from click.testing import CliRunner, Result

from genzoo.cli import cli


def run(*args: str) -> Result:
    """``genzoo ARGS`` in-process; the result (exit code, output)."""
    return CliRunner().invoke(cli, list(args))


def one_line_error(result: Result) -> str:
    """The CLI's error, checked to be one line starting ``Error: ``, exit status 1 and no
    traceback; the line."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]
