"""``genzoo serve``: a thin command; the server (genzoo.serve.app, which needs the ``serve`` extra
and torch) is imported only when the command runs, so ``genzoo list`` stays fast."""
from __future__ import annotations

import importlib.util

import click

from genzoo.devices import DTYPE_HELP

_PIP = 'pip install "genzoo[serve]"'


class _MissingExtra(click.ClickException):
    exit_code = 1


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback requires --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--models", "models", default=None, metavar="PATTERN",
              help="Serve only catalog names matching PATTERN (wildcards, comma-separated).")
@click.option("--max-batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Most samples one merged generate call holds.")
@click.option("--max-queue", type=click.IntRange(min=1), default=64, show_default=True,
              help="Requests waiting at most; beyond it the server answers 503 + Retry-After.")
@click.option("--token", envvar="GENZOO_SERVE_TOKEN", default=None,
              help="Bearer token clients must send (or GENZOO_SERVE_TOKEN); never logged.")
@click.option("--allow-folders", is_flag=True,
              help="Also serve local model folders named by absolute path.")
@click.option("--max-n", type=click.IntRange(min=1), default=256, show_default=True,
              help="Most samples one request may ask for.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Most max_new_tokens one text request may ask for.")
@click.option("--max-body", type=click.IntRange(min=1), default=8 << 20, show_default=True,
              help="Largest request body in bytes.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
              help="Seconds a request may take, queue included (then 504).")
@click.option("--max-image-pixels", type=click.IntRange(min=1), default=4096 * 4096,
              show_default=True,
              help="Most pixels (width x height) an uploaded init/mask image may declare.")
@click.option("--memory-budget", type=click.IntRange(min=1), default=2048, show_default=True,
              help="MiB of weights kept loaded; least recently used models are dropped past it.")
@click.option("--exact", is_flag=True,
              help="Never merge requests: every response is byte for byte what `genzoo "
                   "sample` writes, at the cost of throughput.")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
              help="Let web pages from ORIGIN (e.g. https://app.example) call the API from a "
                   "browser (repeatable); other origins get 403.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, mps.")
@click.option("--dtype", default="auto", show_default=True, help=DTYPE_HELP)
def serve_command(host: str, port: int, models: str | None, max_batch: int, max_queue: int,
                  token: str | None, allow_folders: bool, max_n: int, max_tokens: int,
                  max_body: int, timeout: float, max_image_pixels: int, memory_budget: int,
                  exact: bool, allow_origins: tuple[str, ...], device: str,
                  dtype: str) -> None:
    """Serve the models over HTTP: a JSON API (/v1/models, /openapi.json) and a gallery page
    at / that makes samples in the browser. Concurrent requests are batched together."""
    if importlib.util.find_spec("starlette") is None or importlib.util.find_spec("uvicorn") is None:
        raise _MissingExtra(f"genzoo serve needs its extra: {_PIP}")
    from genzoo.serve.app import ServeConfig, serve
    from genzoo.serve.formats import Limits
    config = ServeConfig(host=host, port=port, models=models, max_batch=max_batch,
                         max_queue=max_queue, token=token, allow_folders=allow_folders,
                         memory_budget_mib=memory_budget, merge=not exact, device=device,
                         dtype=dtype,
                         limits=Limits(max_n, max_tokens, max_body, timeout, max_image_pixels),
                         allow_origins=tuple(allow_origins))
    serve(config)
