"""``genzoo chat NAME``: talk to a chat model in the terminal.

The session keeps the conversation: each reply is exactly
``model.sample(1, seed=SEED, messages=history)`` (so it can be reproduced through the API),
streamed piece by piece as the model writes it. ``/reset`` clears the history, ``/exit`` or
Ctrl-D ends the session (exit 0), Ctrl-C stops the reply being written. The model must take
a ``messages`` option (its family declares it) and have a chat template; anything else is a
one-line error. Thin and torch-free at import, like the other commands.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable

import click

from genzoo.cli.complete import complete_model_name
from genzoo.cli.options import ModelCommand, model_options
from genzoo.devices import DTYPE_HELP
from genzoo.errors import OptionError

if TYPE_CHECKING:  # torch-free at import: the name is for annotations only
    from genzoo.model import GenerativeModel

PROMPT = "you> "
#: Options the session sets itself, so not taken as flags.
OWN = ("messages", "prompt", "stream")
HELP_LINE = "/reset clears the conversation, /exit or Ctrl-D ends it"


@click.command("chat", cls=ModelCommand,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("model_name", metavar="NAME_OR_PATH", shell_complete=complete_model_name)
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of every reply (a reply is sample 0 of this seed).")
@click.option("-O", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A model option as KEY=VALUE (repeatable); the same as its --KEY flag.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--dtype", default="auto", show_default=True, help=DTYPE_HELP)
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit).")
@click.pass_context
def chat_command(ctx: click.Context, model_name: str, seed: int, options: tuple[str, ...],
                 device: str, dtype: str, revision: str | None) -> None:
    """Talk to a chat model: type a message, read the reply as it is written.

    The model's own options are flags after NAME_OR_PATH (`--system "Be brief."`,
    `--max-new-tokens 200`, `--temperature 0.7`, `--stop "###"`); `genzoo info NAME` lists
    them. /reset clears the conversation; /exit or Ctrl-D ends the session.
    """
    from genzoo.api import load
    model = load(model_name, device=device, dtype=dtype, revision=revision)
    opts = session_options(model, model_name, ctx.args, options)
    click.echo(f"chatting with {model_name}; {HELP_LINE}", err=True)
    run_session(model, opts, seed, sys.stdin)


def session_options(model: GenerativeModel, model_name: str, flags: list[str],
                    pairs: tuple[str, ...]) -> dict[str, Any]:
    """The model's options from the command line, after checking that it can hold a
    conversation at all (it declares ``messages`` and accepts one, template included)."""
    if "messages" not in model.options():
        raise OptionError(f"{model_name} takes no conversation (it has no 'messages' option); "
                          f"use `genzoo sample {model_name}`")
    opts = model_options(model, flags, pairs)
    given = sorted(set(opts) & set(OWN))
    if given:
        raise OptionError(f"genzoo chat sets {', '.join(given)} itself; type your messages "
                          "instead")
    # a trial conversation: a model without a chat template says so now, not after typing
    model.check_options({**opts, "messages": [{"role": "user", "content": "hi"}]})
    return opts


def run_session(model: GenerativeModel, opts: dict[str, Any], seed: int, stdin: Any) -> None:
    """Read messages from ``stdin`` until ``/exit`` or end of input, answering each with the
    whole conversation so far; ``/reset`` empties it."""
    history: list[dict[str, str]] = []
    while True:
        click.echo(PROMPT, nl=False)
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            line = ""
        if not line:  # Ctrl-D: the end of the session
            click.echo()
            return
        text = line.rstrip("\n")
        command = text.strip()
        if command == "/exit":
            return
        if command == "/reset":
            history.clear()
            click.echo("(conversation cleared)", err=True)
            continue
        if not command:
            continue
        if command.startswith("/") and " " not in command:
            click.echo(f"unknown command {command}; {HELP_LINE}", err=True)
            continue
        reply = _answer(model, opts, seed, history + [{"role": "user", "content": text}])
        if reply is not None:
            history += [{"role": "user", "content": text},
                        {"role": "assistant", "content": reply}]


def _answer(model: GenerativeModel, opts: dict[str, Any], seed: int,
            messages: list[dict[str, str]]) -> str | None:
    """The reply to ``messages``, streamed to stdout as it is written when the model takes
    a ``stream`` callback; None when Ctrl-C stopped it (the turn is then forgotten)."""
    stream: Callable[[str], None] | None = None
    if "stream" in model.options():
        def stream(piece: str) -> None:
            click.echo(piece, nl=False)
    try:
        samples = model.sample(1, seed=seed, messages=messages,
                               **({"stream": stream} if stream else {}), **opts)
    except KeyboardInterrupt:
        click.echo()
        click.echo("(reply interrupted; it is not kept)", err=True)
        return None
    reply = (samples.texts or [""])[0]
    if stream is None:
        click.echo(reply, nl=False)
    click.echo()
    return reply
