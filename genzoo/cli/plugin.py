"""``genzoo new-plugin``: scaffold a plugin package (thin: parse, call ``genzoo.kit.scaffold``, print)."""
from __future__ import annotations

import click

from genzoo.errors import GenzooError


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Folder in which to create NAME/.")
@click.option("--force", is_flag=True, help="Write into an existing, non-empty NAME/ folder.")
@click.option("--no-weights", is_flag=True,
              help="Do not build the bundled starting weights (faster; the model card appears "
                   "once you run `python -m PACKAGE.build`).")
def new_plugin_command(name: str, directory: str, force: bool, no_weights: bool) -> None:
    """Create a ready-to-install genzoo plugin called NAME (e.g. genzoo-toy).

    It holds a pyproject with the `genzoo` entry point, a small image architecture that learns
    (a tiny MLP VAE), a model card with bundled weights, tests using genzoo's conformance kit
    and a README. Then: pip install -e "NAME[test]" && pytest NAME (the [test] extra brings
    pytest).
    """
    from genzoo.kit.scaffold import create_plugin, plugin_names
    try:
        names = plugin_names(name)
        root = create_plugin(name, directory, force=force, weights=not no_weights)
    except GenzooError as e:  # one line, also when this command runs outside the genzoo group
        raise click.ClickException(str(e)) from e
    click.echo(f"created {root}: distribution {names.dist}, package {names.package}, "
               f"architecture {names.arch}, model {names.card}")
    click.echo("next:")
    click.echo(f'  pip install -e "{root}[test]"   # [test] brings pytest')
    click.echo(f"  pytest {root}")
    click.echo(f"  genzoo list {names.card}")
