"""CLI commands that run models: sample, finetune, push (and eval, from cli_eval).

Thin by design: parse, call the API, print. torch is imported only inside the commands, so
``genzoo --help`` and ``genzoo list`` stay fast.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from genzoo.cli.complete import complete_model_name
from genzoo.cli.echo import echo_json
from genzoo.cli.options import FinetuneCommand, ModelCommand, images_given, model_options
from genzoo.devices import DTYPE_HELP
from genzoo.engine.options import (DATA_HELP, FINETUNE_OPTIONS, LORA_METAVARS, LORA_OPTIONS, OUT,
                                   STEPS, check_keywords)
from genzoo.errors import OptionError
from genzoo.names import ADAPTER_CONFIG, WEIGHTS_NAME
from genzoo.options import Option

if TYPE_CHECKING:  # torch-free at import: the name is for annotations only
    from genzoo.samples import Samples


@click.command("sample", cls=ModelCommand,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("model_name", metavar="NAME_OR_PATH", shell_complete=complete_model_name)
@click.option("-n", "--num", "n", type=click.IntRange(min=1), default=None,
              help="How many samples (default: the model's modality says: 16 images, 4 "
                   "audios, or 1 text that streams as it grows).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Base seed; sample i depends only on (seed, i).")
@click.option("--interpolate", "to_seed", type=int, default=None, metavar="SEED",
              help="Frames from sample 0 of --seed to sample 0 of SEED through the model's "
                   "latents (models that can interpolate; -n frames, default 8).")
@click.option("-o", "--out", "out", default=None,
              help="Where to write, as the model's modality writes: dir/ (one file per "
                   "sample), x.png (a grid) or x.npz for images, x.wav or x.npz for audio, "
                   "x.txt or x.jsonl for texts. Default: NAME.png for images, NAME.wav for "
                   "audio; texts are printed.")
@click.option("-O", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A model option as KEY=VALUE (repeatable); the same as its --KEY flag.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Samples per forward batch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--dtype", default="auto", show_default=True, help=DTYPE_HELP)
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_context
def sample_command(ctx: click.Context, model_name: str, n: int | None, seed: int,
                   to_seed: int | None, out: str | None, options: tuple[str, ...],
                   batch_size: int | None, device: str, dtype: str, revision: str | None,
                   as_json: bool) -> None:
    """Draw samples from a model (a catalog name, a folder or hf://org/repo[@rev]).

    Each model declares its own sampling options, taken as flags after NAME_OR_PATH
    (`--steps 50 --sampler ddim`, `--temperature 0.8`, `--prompt "ROMEO:"`) or as
    `-O KEY=VALUE`; `genzoo info NAME` lists them with their types, ranges and defaults.
    """
    from genzoo.api import load
    from genzoo.devices import init_distributed
    t0 = time.perf_counter()
    rank, _ = init_distributed()  # under torchrun: shard the samples, rank 0 writes them
    if to_seed is not None and rank != 0:
        return  # an interpolation is a few frames: rank 0 alone makes them
    model = load(model_name, device=device, dtype=dtype, revision=revision)
    opts = model_options(model, ctx.args, options)
    spec = model.sample_modality()
    if n is None:
        given = None if to_seed is not None else images_given(opts, model.required_conditions)
        n = given or (8 if to_seed is not None else spec.default_n)
    out = out if out is not None else _default_out(spec, model_name)
    streaming = spec.streams and n == 1 and out is None and not as_json
    if streaming and "stream" in model.options():
        opts["stream"] = lambda piece: click.echo(piece, nl=False)
    writer = _open_output(out, n, spec, rank, interpolating=to_seed is not None)
    texts: list[str] = []
    meta: dict[str, Any] = {}
    t_sample = time.perf_counter()
    try:
        batches = [model.interpolate(seed, to_seed, n, **opts)] if to_seed is not None else \
            model.iter_samples(n, seed=seed, batch_size=batch_size,
                               progress=sys.stderr.isatty() and not as_json,
                               distributed="main", **opts)
        for batch in batches:
            meta = {k: v for k, v in batch.meta.items() if k != "start"}
            if writer is not None:
                writer.write(batch)
            if batch.texts is not None and (as_json or writer is None):
                _show_texts(batch, n, streamed="stream" in opts, keep=texts if as_json else None)
        written = [str(p) for p in writer.close()] if writer is not None else []
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if rank != 0:
        return  # rank 0 alone reports
    now = time.perf_counter()
    _report(model, model_name, n, seed, (now - t0, now - t_sample), written, meta, texts,
            as_json, out, streamed="stream" in opts)


def _default_out(spec: Any, model_name: str) -> str | None:
    """Where ``genzoo sample`` writes without ``-o``: NAME with the suffix of the modality's
    ``default_output`` (NAME.png, NAME.wav; a folder NAME/ when it has none), or None where
    the samples are printed (texts). A modality that can be neither printed (a tensor) nor
    written by default is refused here, before the model samples."""
    if spec.default_output is None:
        if spec.holds != "list":
            raise OptionError(f"{spec.plural} cannot be printed: name a file or folder with "
                              f"-o (it takes {', '.join(spec.writers()) or 'a folder/'})")
        return None
    stem = Path(model_name.rstrip("/")).name.split("@")[0]
    suffix = Path(spec.default_output).suffix
    return f"{stem}{suffix}" if suffix else f"{stem}/"


def _open_output(out: str | None, n: int, spec: Any, rank: int, interpolating: bool) -> Any:
    """Rank 0's writer for ``out`` (None without one, and on the other ranks), opened before
    anything is sampled. Under torchrun every rank samples, so a writer rank 0 cannot open
    stops every rank with the same line; an interpolation is rank 0's alone."""
    from genzoo.batching import raise_together
    from genzoo.writers import open_writer
    writer, failure = None, None
    try:  # an interpolation's grid is one row; a suffix the modality lacks is one line
        if out is not None and rank == 0:
            writer = open_writer(out, n, spec, nrow=n if interpolating else None)
    except Exception as e:  # noqa: BLE001 - shared with the other ranks, then raised
        failure = e
    if not interpolating:
        raise_together(failure)
    elif failure is not None:
        raise failure
    return writer


def _report(model: Any, model_name: str, n: int, seed: int, times: tuple[float, float],
            written: list[str], meta: dict[str, Any], texts: list[str], as_json: bool,
            out: str | None, streamed: bool) -> None:
    """``genzoo sample``'s summary: JSON, or one line (on stderr for texts). ``times``: the
    seconds of the whole command (load included) and of its sampling and writing."""
    seconds, sample_seconds = times
    if as_json:
        payload = {"model": model_name, "n": n, "seed": seed, "seconds": seconds,
                   "sample_seconds": sample_seconds, "written": written, "meta": meta}
        if model.sample_modality().holds == "list":  # values JSON holds as they are
            payload[model.sample_modality().plural] = texts
        echo_json(payload)
        return
    if streamed:
        click.echo()
    where = written[0] if len(written) == 1 else f"{len(written)} files in {out}" if written else ""
    click.echo(f"{n} samples from {model_name} in {seconds:.2f} s"
               + (f" -> {where}" if where else ""),
               err=model.sample_modality().default_output is None)  # stdout holds samples


def _show_texts(batch: Samples, n: int, streamed: bool, keep: list[str] | None) -> None:
    """Print a batch of texts as it arrives (headed by its index when n > 1), or keep them
    for the JSON summary; a streamed text was printed piece by piece already."""
    start = int(batch.meta.get("start", 0))
    for i, text in enumerate(batch.texts or ()):
        if keep is not None:
            keep.append(text)
        elif not streamed:
            if n > 1:
                click.secho(f"--- sample {start + i} ---", fg="cyan")
            click.echo(text)


_CLICK_TYPES = {"int": int, "float": float, "bool": bool}


def _flag(option: Option, param: str, metavar: str | None = None,
          shown_default: str | None = None, hidden: bool = False) -> Callable[..., Any]:
    """One click option from a declared option: its flag, type, default and help."""
    flag = "--" + param.replace("_", "-")
    if option.type == "bool":
        return click.option(flag, param, is_flag=True, default=bool(option.default),
                            help=option.help, hidden=hidden)
    shown = f" (default: {shown_default})" if option.default is None and shown_default else ""
    return click.option(flag, param, type=_CLICK_TYPES.get(option.type, str),
                        default=option.default, show_default=option.default is not None,
                        metavar=metavar, help=option.help + shown, hidden=hidden)


def finetune_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``genzoo finetune``'s flags, one per option ``genzoo.engine.options`` declares (in
    its order), then the ``--lora-*`` flags that spell the ``lora`` keyword."""
    flags = [_flag(o, name, o.metavar, o.shown_default, hidden=o.alias_of is not None)
             for name, o in FINETUNE_OPTIONS.items() if o.cli]
    flags += [_flag(o, f"lora_{name}", LORA_METAVARS.get(name)) for name, o in LORA_OPTIONS.items()]
    for decorate in reversed(flags):  # click lists the last-applied decorator first
        command = decorate(command)
    return command


@click.command("finetune", cls=FinetuneCommand)
@click.argument("model_name", metavar="NAME_OR_PATH", shell_complete=complete_model_name)
@click.option("--data", required=True,
              help=DATA_HELP)
@click.option("--steps", type=int, default=STEPS.default, show_default=True, help=STEPS.help)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help=OUT.help)
@finetune_flags
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def finetune_command(model_name: str, data: str, steps: int, out: str, as_json: bool,
                     **flags: Any) -> None:
    """Finetune a model on your data with genzoo's engine (works under torchrun for DDP)."""
    options = _finetune_keywords(flags)
    options["progress"] = sys.stderr.isatty() and not as_json
    STEPS.check(steps)  # checked before the model loads: a bad flag fails at once
    check_keywords(options)
    from genzoo.api import load
    from genzoo.engine.train import finetune
    model = load(model_name, device="cpu")
    result = finetune(model, data, steps=steps, out=out, **options)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 alone reports (and writes)
    summary = {"folder": str(result.folder) if result.folder else None, "steps": result.steps,
               "seconds": result.seconds, "metrics": result.metrics,
               "stopped_early": result.stopped_early}
    if as_json:
        echo_json(summary)
    elif result.stopped_early:
        click.echo(f"stopped at step {result.steps} after {result.seconds:.1f} s; resume with "
                   f"--resume --out {out}")
    elif result.folder:
        click.echo(f"finetuned {model_name} for {result.steps} steps in {result.seconds:.1f} s "
                   f"-> {result.folder} (sample it: genzoo sample {result.folder})")


def _finetune_keywords(flags: dict[str, Any]) -> dict[str, Any]:
    """``finetune``'s keywords from the flags: a deprecated flag becomes the option it names
    (with a note on stderr), the ``--lora-*`` flags become ``lora``."""
    options = {name: flags[name] for name in FINETUNE_OPTIONS if name in flags}
    for name, option in FINETUNE_OPTIONS.items():
        alias_of = option.alias_of
        value = options.pop(name, None) if alias_of is not None else None
        if alias_of is not None and value is not None:
            click.echo(f"{option.flag} is deprecated; use {FINETUNE_OPTIONS[alias_of].flag}",
                       err=True)
            options[alias_of] = value
    options["lora"] = _lora_option({name: flags[f"lora_{name}"] for name in LORA_OPTIONS})
    return options


def _lora_option(given: dict[str, Any]) -> dict[str, Any] | None:
    """``finetune``'s ``lora`` keyword from the --lora-* flags (None: full finetuning).
    A comma-separated list of plain names is a list; anything else is a regex."""
    if given["rank"] is None:
        if any(v is not None for v in given.values()):
            raise OptionError("--lora-alpha, --lora-targets and --lora-dropout need "
                              "--lora-rank R")
        return None
    spec = {k: v for k, v in given.items() if v is not None}
    targets = given["targets"]
    if targets is not None:
        names = [t.strip() for t in targets.split(",")]
        plain = all(t.replace("_", "").replace(".", "").isalnum() for t in names)
        spec["targets"] = names if plain else targets
    return spec


@click.command("push")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.argument("repo_id", metavar="ORG/REPO")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--revision", default=None, help="Branch to push to.")
@click.option("--token", default=None, envvar="HF_TOKEN", help="Hub token (default: HF_TOKEN).")
def push_command(folder: str, repo_id: str, private: bool, revision: str | None,
                 token: str | None) -> None:
    """Upload a genzoo model folder (config.json, model.safetensors, README.md) or a LoRA
    adapter folder (adapter_config.json, adapter_model.safetensors, README.md) to the Hub."""
    from genzoo.catalog.hub import upload_folder
    from genzoo.modelio import read_config
    if (Path(folder) / ADAPTER_CONFIG).is_file():
        from genzoo.cli.lora import check_adapter_folder
        check_adapter_folder(Path(folder))
        url = upload_folder(folder, repo_id, token=token, private=private, revision=revision)
        click.echo(f"pushed {folder} -> {url}")
        return
    config = read_config(Path(folder))
    if "genzoo" not in config:
        raise OptionError(f"{folder} is not a genzoo model folder (config.json has no genzoo "
                          "section); save it with model.save_pretrained first")
    if not (Path(folder) / WEIGHTS_NAME).is_file():
        raise OptionError(f"{folder} has no {WEIGHTS_NAME}; only safetensors weights are pushed")
    url = upload_folder(folder, repo_id, token=token, private=private, revision=revision)
    click.echo(f"pushed {folder} -> {url}")


def register_model_commands(group: click.Group) -> None:
    """Attach sample, finetune, push, eval and chat to the ``genzoo`` group."""
    group.add_command(sample_command)
    group.add_command(finetune_command)
    group.add_command(push_command)
    from genzoo.cli.eval import eval_command
    group.add_command(eval_command)
    from genzoo.cli.chat import chat_command
    group.add_command(chat_command)
