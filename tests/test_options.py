"""genzoo.options: the sampling-options schema a family declares and core enforces — typing of
text values, bounds, choices, NaN, unknown names, flags left over by click, and the model's
``check_options`` built on it."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from genzoo.errors import OptionError
from genzoo.options import Option, build_schema, parse_flags, parse_key_values, validate

STEPS = Option("steps", "int", 20, "denoising steps", min=1, max=1000)
ETA = Option("eta", "float", 0.0, "noise", min=0.0, max=1.0)
SAMPLER = Option("sampler", "str", "ddim", choices=("ddim", "ddpm"))
EMA = Option("ema", "bool", True)
STOP = Option("stop", "any", None)
SCHEMA = {o.name: o for o in (STEPS, ETA, SAMPLER, EMA, STOP)}


@pytest.mark.parametrize("option,text,value", [
    (STEPS, "50", 50), (STEPS, "1000", 1000), (ETA, "0.5", 0.5), (ETA, "1", 1.0),
    (SAMPLER, "ddpm", "ddpm"), (EMA, "false", False), (EMA, "YES", True),
    (STOP, "[\"a\", \"b\"]", ["a", "b"]), (STOP, "plain words", "plain words"),
])
def test_text_values_are_typed_by_the_schema(option, text, value):
    assert option.parse_text(text) == value
    assert type(option.parse_text(text)) is type(value)


@pytest.mark.parametrize("option,value,needle", [
    (STEPS, "abc", "whole number between 1 and 1000"), (STEPS, 0, "between 1 and 1000"),
    (STEPS, 2.5, "whole number"), (STEPS, True, "whole number"), (ETA, "nan", "finite"),
    (ETA, math.inf, "finite"), (ETA, -0.1, "between 0 and 1"), (SAMPLER, "euler", "one of ddim"),
    (SAMPLER, 3, "a string"), (EMA, "maybe", "true or false"), (STEPS, None, "whole number"),
])
def test_bad_values_are_one_line_option_errors(option, value, needle):
    with pytest.raises(OptionError) as e:
        option.parse(value)
    assert needle in str(e.value) and option.name in str(e.value)
    assert "\n" not in str(e.value)


def test_none_is_unset_only_where_the_default_is_none():
    assert STOP.parse(None) is None
    with pytest.raises(OptionError):
        ETA.parse(None)


def test_declaration_errors():
    with pytest.raises(OptionError, match="identifier"):
        Option("max-steps", "int")
    with pytest.raises(OptionError, match="type"):
        Option("x", "complex")
    with pytest.raises(OptionError, match="unknown field"):
        build_schema([{"name": "x", "kind": "int"}], {})
    with pytest.raises(OptionError, match="twice"):
        build_schema([STEPS, STEPS], {})


def test_schema_merges_declared_options_with_defaults():
    schema = build_schema([STEPS, {"name": "eta", "type": "float", "min": 0}],
                          {"steps": 50, "temperature": 0.7, "batch_size": 16})
    assert schema["steps"].default == 50 and schema["steps"].max == 1000
    assert schema["temperature"].type == "float" and schema["batch_size"].type == "int"
    assert schema["eta"].default is None


def test_validate_names_unknown_options_and_allowed_ones():
    with pytest.raises(OptionError) as e:
        validate(SCHEMA, {"stepz": 3}, "diffusion-mnist")
    assert "stepz" in str(e.value) and "steps" in str(e.value) and "diffusion-mnist" in str(e.value)
    assert validate(SCHEMA, {"steps": "7"}, "m", as_text=True) == {"steps": 7}


def test_key_values_stay_text_and_flags_follow_the_schema():
    assert parse_key_values(["a=1", "max-new-tokens=5", "b=x=y"]) == \
        {"a": "1", "max_new_tokens": "5", "b": "x=y"}
    with pytest.raises(OptionError, match="KEY=VALUE"):
        parse_key_values(["novalue"])
    assert parse_flags(["--steps", "5", "--eta=0.25", "--no-ema", "--sampler", "ddpm"],
                       SCHEMA, "m") == {"steps": 5, "eta": 0.25, "ema": False, "sampler": "ddpm"}
    assert parse_flags(["--ema"], SCHEMA, "m") == {"ema": True}
    for args, needle in ((["--temperature", "1"], "no such option '--temperature'"),
                         (["stray"], "unexpected argument 'stray'"),
                         (["--steps"], "needs a value")):
        with pytest.raises(OptionError, match=needle):
            parse_flags(args, SCHEMA, "m")


def test_model_check_options_uses_the_schema():
    torch = pytest.importorskip("torch")  # noqa: F841 - the model base class needs it
    from genzoo.model import GenerativeModel

    class Declared(GenerativeModel):
        arch, family = "declared", "test"
        sample_defaults = {"steps": 20}
        sample_options = (STEPS, ETA)

    model = Declared({})
    assert model.check_options({"steps": 5}) == {"steps": 5, "eta": 0.0}
    with pytest.raises(OptionError, match="between 1 and 1000"):
        model.check_options({"steps": 0})
    with pytest.raises(OptionError, match="unknown option"):
        model.check_options({"nope": 1})
    model.apply_card_sampling({"steps": "30"})  # a card's defaults are checked and typed
    assert model.options()["steps"].default == 30
    with pytest.raises(OptionError):
        model.apply_card_sampling({"eta": 2})


def test_options_module_does_not_import_torch():
    code = "import sys, genzoo.options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_per_sample_text_keeps_commas_and_repeats_give_one_per_sample():
    schema = {"prompt": Option("prompt", "str", "", per_sample=True),
              "label": Option("label", "int", None, per_sample=True)}
    one = parse_flags(["--prompt", "a cat, in the snow"], schema, "m")
    assert one == {"prompt": "a cat, in the snow"}
    two = parse_flags(["--prompt", "a cat, asleep", "--prompt=a dog", "--prompt", "x"],
                      schema, "m")
    assert two == {"prompt": ["a cat, asleep", "a dog", "x"]}
    assert parse_flags(["--label", "3,1"], schema, "m") == {"label": [3, 1]}
    # a repeated option that is not per-sample text: the last one wins, as before
    assert parse_flags(["--label", "3", "--label", "4"], schema, "m") == {"label": 4}


STRS = Option("stop", "strs", None, "strings that end a sample")
DOC = Option("messages", "json", None, "a conversation")


def test_strs_takes_a_string_or_a_list_of_strings_only():
    assert STRS.parse("END") == "END"
    assert STRS.parse(["a", "b"]) == ["a", "b"] and STRS.parse(("a",)) == ["a"]
    assert STRS.parse([]) == [] and STRS.parse(None) is None
    assert STRS.parse_text("[\"a\"]") == "[\"a\"]"  # CLI text is taken as it is, never JSON
    for bad in (5, [5], True, [["x"]], {"a": "b"}, ["ok", None], 1.5, ["\udcff"]):
        with pytest.raises(OptionError) as e:
            STRS.parse(bad)
        assert "a string or a list of strings" in str(e.value) and "\n" not in str(e.value)


def test_a_repeated_strs_flag_gives_a_list():
    schema = {"stop": STRS}
    assert parse_flags(["--stop", "a"], schema, "m") == {"stop": "a"}
    assert parse_flags(["--stop", "a, b", "--stop=\n\n", "--stop", "c"], schema, "m") == \
        {"stop": ["a, b", "\n\n", "c"]}


def test_json_option_reads_inline_json_or_a_file_on_the_command_line(tmp_path):
    convo = [{"role": "user", "content": "hi"}]
    assert DOC.parse(convo) == convo
    assert DOC.parse_text(' [{"role": "user", "content": "hi"}]') == convo
    path = tmp_path / "chat.json"
    path.write_text('[{"role": "user", "content": "hi"}]')
    assert DOC.parse_text(str(path)) == convo
    assert parse_flags(["--messages", str(path)], {"messages": DOC}, "m") == {"messages": convo}
    (tmp_path / "bad.json").write_text("[{")
    for text, needle in ((str(tmp_path / "none.json"), "cannot read"),
                         (str(tmp_path / "bad.json"), "not valid JSON"),
                         ("[" * 50_000, "nests too deeply")):
        with pytest.raises(OptionError, match=needle) as e:
            DOC.parse_text(text)
        assert "\n" not in str(e.value)


def test_json_option_refuses_what_json_cannot_say_and_deep_nesting():
    deep: list = []
    for _ in range(40):
        deep = [deep]
    for bad in (math.nan, {1: "x"}, object(), deep, b"x"):
        with pytest.raises(OptionError, match="JSON"):
            DOC.parse(bad)
    assert DOC.parse({"a": [1, 2.5, True, None, "s"]}) == {"a": [1, 2.5, True, None, "s"]}
