"""The conformance kit (genzoo.testing): it passes conforming plugins, catches each kind of
contract violation with a message that says what to fix, and offers three ways to opt in
(a Conformance subclass, module variables, ``pytest --genzoo-arch``).

The plugins under test live in tests/kit_plugins and are installed for real (tests/_kit.py);
the checks added for the contract's later misses are tested in test_testing_checks.py.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from _kit import finetuned as _finetuned
from _kit import kit, kit_site  # noqa: F401 - fixtures
from _kit import kit_plugin_args as _kit_plugin_args

from genzoo.testing import Conformance, conformance_tests

pytest_plugins = ["pytester"]

# ---- the module itself --------------------------------------------------------------------
def test_importing_the_kit_leaves_torch_out():
    code = "import sys, genzoo.testing; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_conformance_tests_builds_a_suite_in_the_callers_module(tmp_path):
    def data(path):
        return path / "data.npz"
    suite = conformance_tests("some-arch", config={"hidden": 4}, data=data, finetune_steps=3)
    cls = suite["TestGenzooConformance"]
    assert issubclass(cls, Conformance) and cls.__module__ == __name__
    assert (cls.arch, cls.config, cls.finetune_steps) == ("some-arch", {"hidden": 4}, 3)
    assert cls().make_data(None, tmp_path) == tmp_path / "data.npz"
    with pytest.raises(TypeError, match="finetune_step"):
        conformance_tests("some-arch", finetune_step=3)


def test_cli_config_accepts_json_or_a_file(tmp_path):
    from genzoo.testing import _cli_config
    (tmp_path / "c.json").write_text('{"hidden": 8}')
    assert _cli_config('{"hidden": 4}') == {"hidden": 4}
    assert _cli_config(f"@{tmp_path / 'c.json'}") == {"hidden": 8}
    assert _cli_config(None) == {}
    for bad in ("[1, 2]", "{nope", "@/no/such/file.json"):
        with pytest.raises(pytest.UsageError):
            _cli_config(bad)


# ---- the checks on conforming models --------------------------------------------------------
@pytest.mark.parametrize("arch", ["kit-image", "kit-labels", "kit-text", "kit-audio"])
def test_conforming_models_pass_every_check(kit, arch, tmp_path):
    from genzoo.kit import conformance as c
    from genzoo.kit import config as cc
    from genzoo.kit import devices as d
    from genzoo.kit import train as t
    from genzoo.kit import writing as w
    c.check_registration(arch)
    c.check_plugin_health(arch)
    c.check_class_contract(arch)
    with pytest.MonkeyPatch.context() as mp:  # it forbids pickle until the end of the block
        c.check_save_load(c.make_model(arch, {}), tmp_path / "saved", mp)
    c.check_sample_output(c.make_model(arch, {}))
    w.check_writers(c.make_model(arch, {}), tmp_path / "written")
    c.check_seeds(c.make_model(arch, {}))
    d.check_cpu_fp32(c.make_model(arch, {}))
    c.check_bad_options(c.make_model(arch, {}))
    cc.check_option_values(c.make_model(arch, {}))
    model = c.make_model(arch, {})
    cc.check_config_drives_model(arch, {}, data=c.default_data(model, tmp_path))
    run = t.run_finetune(model, c.default_data(model, tmp_path), tmp_path / "ft", steps=20)
    t.check_loss_lowered(run)
    with pytest.MonkeyPatch.context() as mp:
        t.check_trained_output(run, mp)
        t.check_trained_round_trip(run, tmp_path / "trained", mp)
    t.check_staged_parameters_trained(run)
    t.check_every_parameter_trained(run)
    t.check_loss_uses_data(run)
    cc.check_sampling_options_act(run.model, labelled=run.notes["labelled"])
    with pytest.raises(pytest.skip.Exception, match="no bundled or local cards"):
        c.check_cards(arch)


def test_default_image_data_matches_the_model(kit, tmp_path):
    from genzoo.kit import conformance as c
    data = c.default_data(c.make_model("kit-image", {"image_shape": [3, 5, 7]}), tmp_path)
    assert tuple(data.shape) == (16, 3, 5, 7)
    assert 0 <= float(data.min()) and float(data.max()) <= 1 and float(data.std()) > 0.05


# ---- the checks catch violations ---------------------------------------------------------
BAD = [
    ("registration", "calling its hooks imported numpy, torch"),
    ("class_contract", "learning_rate"),
    ("save_load", r"pickle files \['model.pt'\]"),
    ("sample_output", r"must lie in \[0, 1\]"),
    ("seeds", "identical calls; draw all randomness from the generators"),
    ("finetune", "did not lower the loss"),
    ("bad_options", "raised ValueError.*raise genzoo.errors.OptionError"),
]


@pytest.mark.parametrize("check,message", BAD, ids=[b[0] for b in BAD])
def test_violations_are_caught_with_a_useful_message(kit, check, message, tmp_path, monkeypatch):
    from genzoo.kit import conformance as c
    calls = {
        "registration": lambda: c.check_registration("kit-bad"),
        "class_contract": lambda: c.check_class_contract("kit-bad"),
        "save_load": lambda: c.check_save_load(c.make_model("kit-bad", {}), tmp_path / "m",
                                               monkeypatch),
        "sample_output": lambda: c.check_sample_output(c.make_model("kit-bad", {})),
        "seeds": lambda: c.check_seeds(c.make_model("kit-bad", {})),
        "finetune": lambda: _finetuned("kit-bad", tmp_path, steps=5),
        "bad_options": lambda: c.check_bad_options(c.make_model("kit-bad", {})),
    }
    with pytest.raises(AssertionError, match=message):
        calls[check]()


# Each mutant in kit_plugins/kitmutants plants one violation that the kit used to miss: it
# passes the older check named in "escapes" (shown here), and the newer check catches it.
def _escapes_fresh_range(tmp_path, mp):
    from genzoo.kit import conformance as c
    c.check_sample_output(c.make_model("kit-unsquashed", {}))


def _escapes_fresh_round_trip(tmp_path, mp):
    from genzoo.kit import conformance as c
    c.check_save_load(c.make_model("kit-forgetful", {}), tmp_path / "fresh", mp)


def _escapes_old_loss_check(arch):
    return lambda tmp_path, mp: _finetuned(arch, tmp_path)


def _escapes_bad_options(arch):
    def run(tmp_path, mp):
        from genzoo.kit import conformance as c
        c.check_bad_options(c.make_model(arch, {}))
    return run


def _escapes_nothing(tmp_path, mp):
    """The registration check ran before this change, but looked only for torch."""


def _catch(name):
    def run(arch, tmp_path, mp):
        from genzoo.kit import conformance as c
        from genzoo.kit import config as cc
        from genzoo.kit import train as t
        if name == "registration":
            return c.check_registration(arch)
        if name == "save_load":
            return c.check_save_load(c.make_model(arch, {}), tmp_path / "m", mp)
        if name == "option_values":
            return cc.check_option_values(c.make_model(arch, {}))
        if name == "config":
            return cc.check_config_drives_model(arch, {})
        run_ = _finetuned(arch, tmp_path)
        return {"trained_output": lambda: t.check_trained_output(run_, mp),
                "trained_round_trip": lambda: t.check_trained_round_trip(run_, tmp_path / "t", mp),
                "staged": lambda: t.check_staged_parameters_trained(run_),
                "data": lambda: t.check_loss_uses_data(run_)}[name]()
    return run


MUTANTS = [
    ("kit-unsquashed", _escapes_fresh_range, "trained_output",
     r"must lie in \[0, 1\]; generate returned .* after 20 finetune steps"),
    ("kit-hidden-pickle", _escapes_bad_options("kit-hidden-pickle"), "save_load",
     r"pickle files \['extra.dat'\]"),
    ("kit-old-pickle", _escapes_bad_options("kit-old-pickle"), "save_load",
     "pickle.loads was called while loading"),
    ("kit-unsquashed", _escapes_nothing, "registration", "calling its hooks imported numpy"),
    ("kit-forgetful", _escapes_fresh_round_trip, "trained_round_trip",
     "tensor out_bias differs after the round trip after 20 finetune steps"),
    ("kit-value-error", _escapes_bad_options("kit-value-error"), "option_values",
     r"temperature=-1000000000.0\) raised ValueError.*raise genzoo.errors.OptionError"),
    ("kit-inert-config", _escapes_bad_options("kit-inert-config"), "config",
     "config value\\(s\\) depth do not change the built model.*config_inert"),
    ("kit-half-trained", _escapes_old_loss_check("kit-half-trained"), "staged",
     "4 parameter\\(s\\) named by train_stages\\(\\) did not change.*model:enc.0.weight"),
    ("kit-deaf", _escapes_old_loss_check("kit-deaf"), "data",
     "the loss does not respond to the data: model .* on the batch"),
]


@pytest.mark.parametrize("arch,escapes,check,message", MUTANTS,
                         ids=[f"{m[0]}-{m[2]}" for m in MUTANTS])
def test_each_planted_mutant_is_caught(kit, arch, escapes, check, message, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        escapes(tmp_path / "escape", mp)  # the kit's older check passes it
    with pytest.MonkeyPatch.context() as mp, pytest.raises(AssertionError, match=message):
        _catch(check)(arch, tmp_path, mp)


def test_pickle_streams_are_found_by_content_not_name(tmp_path):
    import pickle

    import torch
    from safetensors.torch import save_file

    from genzoo.kit import conformance as c
    (tmp_path / "a.dat").write_bytes(pickle.dumps([1, 2], protocol=2))
    (tmp_path / "b").write_bytes(pickle.dumps({"x": 1}, protocol=5))
    torch.save({"w": torch.ones(2)}, tmp_path / "c.weights")  # a zip holding data.pkl
    (tmp_path / "d.json").write_text("{}")
    # a safetensors header length of 0x280 starts with the bytes b"\x80\x02", like a pickle
    save_file({"w": torch.zeros(1)}, str(tmp_path / "e.safetensors"), metadata={"k": "v" * 560})
    assert (tmp_path / "e.safetensors").read_bytes()[:2] == b"\x80\x02"
    assert c.pickle_files(tmp_path) == ["a.dat", "b", "c.weights"]


def test_option_values_follow_a_declared_schema():
    from types import SimpleNamespace

    from genzoo.kit import config as cc
    opt = SimpleNamespace(type="float", min=0.0, max=2.0, choices=None)
    assert cc.bad_values(opt, declared=True)[0][:1] == ["not-a-number"]
    must, hostile = cc.bad_values(opt, declared=True)
    assert must[2:] == [-1.0, 3.0] and hostile == []
    must, hostile = cc.bad_values(SimpleNamespace(type="int", min=None, max=None, choices=None),
                                  declared=True)
    assert must == ["not-a-number"] and hostile == [-10 ** 9]
    must, _ = cc.bad_values(SimpleNamespace(type="str", choices=("ddpm", "ddim")), declared=True)
    assert must == ["genzoo-no-such-choice"]
    assert cc.bad_values(opt, declared=False)[0] == []  # inferred: nothing is promised


def test_config_variants_change_one_value_at_a_time():
    from genzoo.kit import config as cc
    config = {"a": 2, "b": 0.0, "c": True, "d": [1, 0], "e": "x", "n": {"f": 3, "g": ["s"]}}
    got = dict(cc.config_variants(config))
    assert set(got) == {"a", "b", "c", "d", "n.f"}
    assert (got["a"]["a"], got["b"]["b"], got["c"]["c"], got["d"]["d"]) == (4, 0.5, False, [2, 1])
    assert got["n.f"]["n"] == {"f": 6, "g": ["s"]} and got["n.f"]["a"] == 2


def test_config_inert_exempts_a_key(kit):
    from genzoo.kit import config as cc
    cc.check_config_drives_model("kit-inert-config", {}, inert=("depth",))


def test_an_uninstalled_arch_fails_with_the_install_hint(kit):
    from genzoo.kit import conformance as c
    with pytest.raises(pytest.fail.Exception, match=r"pip install -e \."):
        c.make_model("no-such-arch", {})
    with pytest.raises(pytest.fail.Exception, match="not registered by any installed plugin"):
        c.check_registration("no-such-arch")


def test_unknown_finetune_stage_is_reported(kit, tmp_path):
    from genzoo.kit import conformance as c
    from genzoo.kit import train as t
    model = c.make_model("kit-image", {})
    with pytest.raises(AssertionError, match="unknown stages"):
        t.run_finetune(model, c.default_data(model, tmp_path), tmp_path / "ft", steps=2,
                       stages=["discriminator"])


# ---- the three ways in, through pytest itself ----------------------------------------------
def _outcomes(result) -> dict[str, int]:
    return {k: v for k, v in result.parseoutcomes().items() if k in ("passed", "failed", "skipped")}


def test_module_variables_opt_in(kit, pytester):
    pytester.makepyfile(test_mod='genzoo_arch = "kit-image"\ngenzoo_config = {"hidden": 8}\n')
    result = pytester.runpytest_inprocess(*_kit_plugin_args(), "-q", "--co")
    result.stdout.fnmatch_lines(["*test_mod.py::TestGenzooConformance::test_registers_without_torch",
                                 "*::TestGenzooConformance::test_bundled_cards_load"])
    result = pytester.runpytest_inprocess(*_kit_plugin_args(), "-q",
                                          "-k", "class_contract or cpu_fp32 or seeds")
    assert _outcomes(result) == {"passed": 3}


def test_subclass_and_helper_opt_in_need_no_plugin(kit, pytester):
    pytester.makepyfile(test_mod="""
from genzoo.testing import Conformance, conformance_tests

class TestText(Conformance):
    arch = "kit-text"

globals().update(conformance_tests("kit-image", config={"hidden": 8}))
""")
    result = pytester.runpytest_inprocess("-p", "no:genzoo", "-q", "-k", "class_contract")
    assert _outcomes(result) == {"passed": 2}


def test_command_line_opt_in(kit, pytester):
    args = [*_kit_plugin_args(), "-q", "--genzoo-arch", "kit-image",
            "--genzoo-config", '{"hidden": 8}']
    result = pytester.runpytest_inprocess(*args, "--co")
    assert "22 tests collected" in result.stdout.str()
    result = pytester.runpytest_inprocess(*args, "-k", "class_contract or bad_options")
    assert _outcomes(result) == {"passed": 2}
    result = pytester.runpytest_inprocess(*_kit_plugin_args(), "--genzoo-arch", "kit-image",
                                          "--genzoo-config", "[1]")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_command_line_opt_in_keeps_the_projects_testpaths(kit, pytester):
    """Run in a plugin's folder, ``--genzoo-arch`` adds the suite to the plugin's own tests
    (its testpaths); with no testpaths, the suite alone (not every file under the folder)."""
    pytester.makepyfile(**{"tests/test_own": "def test_own():\n    pass\n",
                           "test_stray": "def test_stray():\n    pass\n"})
    args = [*_kit_plugin_args(), "-q", "--co", "--genzoo-arch", "kit-image"]
    result = pytester.runpytest_inprocess(*args)
    assert "22 tests collected" in result.stdout.str() and "test_stray" not in result.stdout.str()
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    result = pytester.runpytest_inprocess(*args)
    assert "23 tests collected" in result.stdout.str(), result.stdout.str()
    result.stdout.fnmatch_lines(["*tests/test_own.py::test_own"])
    result = pytester.runpytest_inprocess(*_kit_plugin_args(), "-q", "--genzoo-arch", "kit-image",
                                          "-k", "finetune_lowers or trained_ or updates_staged or "
                                          "every_parameter or sampling_options or responds")
    assert _outcomes(result) == {"passed": 7}  # the seven share one finetune


def test_a_violating_plugin_fails_its_suite(kit, pytester):
    pytester.makepyfile(test_mod='genzoo_arch = "kit-bad"\n')
    result = pytester.runpytest_inprocess(*_kit_plugin_args(), "-q", "-k",
                                          "class_contract or sample_shape or plugin_is_healthy")
    assert _outcomes(result) == {"passed": 1, "failed": 2}
    result.stdout.fnmatch_lines(["*learning_rate*", "*must lie in [[]0, 1[]]*"])
