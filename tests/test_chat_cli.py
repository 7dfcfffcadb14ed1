"""``genzoo chat`` and ``genzoo sample --messages``: a conversation in the terminal (click's
CliRunner feeding stdin) against the tiny chat model, each reply equal to ``model.sample``
given the whole history; /reset, /exit, Ctrl-D; one-line refusals of models that cannot
chat and of bad message files."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("transformers")
pytest.importorskip("genzoo_textlm")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "textlm" / "tests"))

import genzoo  # noqa: E402
from genzoo.cli import cli  # noqa: E402
from genzoo.cli.chat import PROMPT  # noqa: E402

from _tiny_chat import build_tiny_chat  # noqa: E402

FLAGS = ["--temperature", "0", "--max-new-tokens", "12", "--device", "cpu"]


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    """(folder, model) of the tiny chat model."""
    folder = build_tiny_chat(tmp_path_factory.mktemp("chat") / "tiny")
    return folder, genzoo.load(str(folder), device="cpu")


def _reply(model, messages, system=None):
    return model.sample(1, messages=messages, system=system, temperature=0,
                        max_new_tokens=12).texts[0]


def test_chat_keeps_the_history_and_resets_it(chat):
    folder, model = chat
    u1, u2 = "What is a list?", "And a set?"
    result = CliRunner().invoke(cli, ["chat", str(folder), *FLAGS, "--system", "Be brief."],
                                input=f"{u1}\n{u2}\n/reset\n{u2}\n")
    assert result.exit_code == 0, result.output
    r1 = _reply(model, [{"role": "user", "content": u1}], "Be brief.")
    r2 = _reply(model, [{"role": "user", "content": u1}, {"role": "assistant", "content": r1},
                        {"role": "user", "content": u2}], "Be brief.")
    fresh = _reply(model, [{"role": "user", "content": u2}], "Be brief.")
    assert r2 != fresh  # the history changes the second reply, so the check below means it
    assert result.stdout == f"{PROMPT}{r1}\n{PROMPT}{r2}\n{PROMPT}{PROMPT}{fresh}\n{PROMPT}\n"
    assert "(conversation cleared)" in result.stderr


def test_chat_ends_on_exit_and_ignores_blank_lines(chat):
    folder, model = chat
    result = CliRunner().invoke(cli, ["chat", str(folder), *FLAGS],
                                input="\n/nope\nWhat is a list?\n/exit\nnever read\n")
    assert result.exit_code == 0, result.output
    r1 = _reply(model, [{"role": "user", "content": "What is a list?"}])
    assert result.stdout == f"{PROMPT}{PROMPT}{PROMPT}{r1}\n{PROMPT}"
    assert "unknown command /nope" in result.stderr


def test_chat_refuses_models_that_cannot_chat_in_one_line(tmp_path):
    from genzoo_textlm.model import GPTModel
    GPTModel.from_config(dict(vocab_size=256, n_positions=32, n_embd=16, n_layer=1,
                              n_head=2)).save_pretrained(tmp_path / "gpt")
    cases = [(tmp_path / "gpt", "no chat template")]
    try:  # an image model: no messages option at all
        from genzoo_gan.model import DCGAN
        DCGAN({"image_shape": [1, 8, 8], "latent_dim": 8, "g_channels": [16, 8],
               "d_channels": [8, 16]}).save_pretrained(tmp_path / "gan")
        cases.append((tmp_path / "gan", "takes no conversation"))
    except ImportError:
        pass
    for folder, needle in cases:
        result = CliRunner().invoke(cli, ["chat", str(folder), "--device", "cpu"], input="hi\n")
        assert result.exit_code == 1 and needle in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_sample_takes_a_messages_file_and_refuses_a_bad_one(chat, tmp_path):
    folder, model = chat
    convo = [{"role": "user", "content": "What is a list?"}]
    (tmp_path / "chat.json").write_text(json.dumps(convo))
    result = CliRunner().invoke(cli, ["sample", str(folder), "--messages",
                                      str(tmp_path / "chat.json"), *FLAGS, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["texts"] == [_reply(model, convo)]
    assert payload["meta"]["finish_reasons"] in (["stop"], ["length"])
    (tmp_path / "bad.json").write_text('[{"role": "user"')
    (tmp_path / "odd.json").write_text('[{"role": "user", "content": 3}]')
    for path, needle in (("bad.json", "not valid JSON"), ("odd.json", "messages[0]"),
                         ("none.json", "cannot read")):
        result = CliRunner().invoke(cli, ["sample", str(folder), "--messages",
                                          str(tmp_path / path), *FLAGS])
        assert result.exit_code == 1 and needle in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
