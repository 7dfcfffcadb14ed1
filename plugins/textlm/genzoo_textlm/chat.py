"""Conversations for the text LMs: checking ``messages``, finding a model folder's chat
template and end ids, and rendering a template as transformers does.

A chat template is Jinja code shipped in a model folder (``tokenizer_config.json``'s
``chat_template`` or a ``chat_template.jinja`` file). It is untrusted, so it runs in jinja2's
``ImmutableSandboxedEnvironment`` with the same extras transformers gives it
(``raise_exception``, a ``tojson`` that does not escape HTML, ``strftime_now``), and a
template error is the caller's ``OptionError`` (a role the template rejects), never a crash.
"""
from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from genzoo.errors import OptionError

TEMPLATE_FILE = "chat_template.jinja"
#: What a message is: exactly these two string fields (extra keys are ignored, as OpenAI does
#: for ``name``; the template sees only role and content).
MESSAGE_KEYS = ("role", "content")


def conversation(messages: Any, system: str | None = None) -> list[dict[str, str]]:
    """``messages`` checked (a non-empty list of {role, content} strings) and copied, with
    ``system`` put first as a system message; anything else is a one-line ``OptionError``."""
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise OptionError(f"messages must be a list of {{role, content}} objects, got "
                          f"{type(messages).__name__}")
    out = [{"role": "system", "content": system}] if system is not None else []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not all(
                isinstance(message.get(k), str) for k in MESSAGE_KEYS):
            raise OptionError(f"messages[{i}] must be an object with string 'role' and "
                              f"'content', got {_short(message)}")
        if not message["role"]:
            raise OptionError(f"messages[{i}] has an empty role")
        out.append({k: message[k] for k in MESSAGE_KEYS})
    if not out:
        raise OptionError("messages is empty: give at least one {role, content} message")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def read_chat_template(folder: Path) -> str | None:
    """The folder's chat template: ``chat_template.jinja``, else ``tokenizer_config.json``'s
    ``chat_template`` (a string, or the one named "default" in a list of named ones)."""
    folder = Path(folder)
    if (folder / TEMPLATE_FILE).is_file():
        return (folder / TEMPLATE_FILE).read_text(encoding="utf-8")
    template = _json(folder / "tokenizer_config.json").get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template else None


def read_special_tokens(folder: Path) -> dict[str, str]:
    """``tokenizer_config.json``'s special token strings (``bos_token``, ``eos_token``,
    ``pad_token``...; a string or an added-token object), which templates may write."""
    out = {}
    for key, value in _json(Path(folder) / "tokenizer_config.json").items():
        if isinstance(value, dict):
            value = value.get("content")
        if key.endswith("_token") and isinstance(value, str):
            out[key] = value
    return out


def read_end_ids(folder: Path) -> list[int]:
    """``generation_config.json``'s ``eos_token_id`` (an int or a list) as a list."""
    return id_list(_json(Path(folder) / "generation_config.json").get("eos_token_id"))


def id_list(value: Any) -> list[int]:
    """A token id, a list of them, or None as a list of ints (bools and junk dropped)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [int(v) for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when it is absent or not an object (the loaders of the
    tokenizer and weights report real damage; a template is an optional extra)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@functools.lru_cache(maxsize=16)
def _compiled(template: str):
    """A sandboxed jinja2 template with transformers' chat-template environment."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat(template: str, messages: list[dict[str, str]], **special: Any) -> str:
    """The prompt text of ``messages`` under ``template`` with the generation prompt added;
    ``special`` gives the template its token strings (``bos_token``, ``eos_token``...). A
    template that raises (an unknown role, a wrong order of roles) is an ``OptionError``."""
    from jinja2 import TemplateError
    try:
        return _compiled(template).render(messages=messages, add_generation_prompt=True,
                                          **special)
    except TemplateError as e:
        raise OptionError(f"the model's chat template refuses these messages: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
