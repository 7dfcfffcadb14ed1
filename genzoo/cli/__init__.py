"""The ``genzoo`` command: click commands, thin (parse, call the API, print).

``root`` holds the group and the catalog commands (list, info, plugins, cache, download);
``model`` sampling and finetuning; ``eval``, ``chat``, ``lora``, ``serve`` and ``plugin`` one
command each; ``options`` turns a model's declared options into flags; ``complete`` shell completion.
Importing this package never imports torch.
"""
from genzoo.cli.root import cli, main

__all__ = ["cli", "main"]
