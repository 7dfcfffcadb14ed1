"""What the model commands (sample, eval) share: a model's own options read from the command
line, and help that lists them. Thin and torch-free at import."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import click

if TYPE_CHECKING:  # torch-free at import: the name is for annotations only
    from genzoo.model import GenerativeModel


def model_options(model: GenerativeModel, flags: list[str],
                  pairs: tuple[str, ...]) -> dict[str, Any]:
    """The sampling options of one command line, typed by the model's own schema: its flags
    (``--steps 20``, read from what click left over) and ``-O KEY=VALUE`` pairs. An image
    option's value is a picture or a folder of them, converted to the model's image shape as
    finetune data is (with the same one-line note)."""
    from genzoo.options import parse_flags, parse_key_values, validate
    schema = model.options()
    owner = model.name_or_path or model.arch
    reader = _image_reader(model)
    return {**parse_flags(flags, schema, owner, reader),
            **validate(schema, parse_key_values(pairs), owner, as_text=True, read_image=reader)}


def _image_reader(model: GenerativeModel) -> Callable[[str], Any]:
    """Reads a picture or a folder of pictures as (N, C, H, W) images of the model's shape."""
    def read(path: str) -> Any:
        from genzoo.data import load_image_dataset
        shape = model.config.get("image_shape")
        if not shape:
            from genzoo.errors import OptionError
            raise OptionError(f"{model.arch} declares no image_shape; pass images through the "
                              "API instead")
        return load_image_dataset(path, shape=tuple(shape)).images
    return read


def images_given(options: dict[str, Any], required: tuple[str, ...] = ()) -> int | None:
    """How many samples the images given as options ask for (a folder of N init images gives
    N outputs): the largest stack of more than one, or of any size for a condition the model
    cannot sample without (``required``: one picture to reconstruct gives one), else None."""
    counts = [len(v) for name, v in options.items()
              if getattr(v, "ndim", 0) == 4 and (len(v) > 1 or name in required)]
    return max(counts) if counts else None


class NamedModelCommand(click.Command):
    """A command whose first argument names a model, and whose help says more about that
    model (``model_help``) than click can know."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["genzoo_args"] = list(args)  # before --help exits, so help can name the model
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help(ctx, formatter)
        # the first argument that is not a flag: the model it names
        name = next((a for a in ctx.meta.get("genzoo_args", []) if not a.startswith("-")), None)
        if name is not None:
            self.model_help(name, formatter)

    def model_help(self, name: str, formatter: click.HelpFormatter) -> None:
        """Add what the help should say about model ``name`` (nothing here)."""


class ModelCommand(NamedModelCommand):
    """A command whose first argument names a model: its help also lists that model's own
    sampling options (``genzoo sample diffusion-mnist --help``), which click cannot know."""

    def model_help(self, name: str, formatter: click.HelpFormatter) -> None:
        """List model ``name``'s own options that the command has no flag of its own for."""
        from genzoo.api import model_info
        from genzoo.errors import GenzooError
        try:
            options = model_info(name).get("options") or []
        except GenzooError:
            return  # an unknown name: the plain help is still right
        own = {flag for param in self.params for flag in getattr(param, "opts", [])}
        rows = [(f"{o['flag']} {o['type'].upper()}", f"{o['help']} [default: {o['default']}]")
                for o in options if o["flag"] not in own]
        if rows:
            with formatter.section(f"Options of {name} (or -O KEY=VALUE)"):
                formatter.write_dl(rows)


class FinetuneCommand(NamedModelCommand):
    """``genzoo finetune``: with a model named (``genzoo finetune NAME --help``) the help also
    says what that model's family reads as ``--data`` (its ``data_help``), which click
    cannot know; without one the help says it is whatever the family reads."""

    def model_help(self, name: str, formatter: click.HelpFormatter) -> None:
        """Say what model ``name``'s family reads as ``--data``, where it says."""
        from genzoo.api import data_help
        text = data_help(name)
        if text:
            with formatter.section(f"Data of {name} (--data)"):
                formatter.write_text(text)
