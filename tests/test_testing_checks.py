"""The conformance kit's later checks, each against a planted plugin (tests/kit_plugins):
training moves samples toward the data (in its range and sense), trains every parameter,
every sampling option acts; labelled kit data for a class-conditional family with messages
that name the real cause; merged batches a family declares; no pytest deprecation warnings;
finetune called with ``dtype``, never the deprecated ``precision``."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
from _kit import finetuned, kit_plugin_args
from _kit import kit, kit_site  # noqa: F401 - fixtures

pytest_plugins = ["pytester"]


def _probe(arch: str, tmp_path, steps: int = 100):
    from genzoo.kit import conformance as c
    from genzoo.kit import learning as lr
    return lr.run_probe(c.make_model(arch, {}), tmp_path / "probe", steps=steps)


# ---- each mutant passes the older checks and fails the new one --------------------------------
def _escapes_range_loss_and_stages(arch):
    """Raw output in [0, 1] before and after training; the loss falls; staged parameters move."""
    def run(tmp_path, mp):
        from genzoo.kit import conformance as c
        from genzoo.kit import train as t
        c.check_sample_output(c.make_model(arch, {}))
        done = finetuned(arch, tmp_path)
        t.check_trained_output(done, mp)
        t.check_staged_parameters_trained(done)
    return run


def _escapes_option_values(arch):
    def run(tmp_path, mp):
        from genzoo.kit import conformance as c
        from genzoo.kit import config as cc
        c.check_bad_options(c.make_model(arch, {}))
        cc.check_option_values(c.make_model(arch, {}))
    return run


def _catch(name):
    def run(arch, tmp_path):
        from genzoo.kit import config as cc
        from genzoo.kit import learning as lr
        from genzoo.kit import train as t
        if name == "toward_data":
            return lr.check_moves_toward_data(_probe(arch, tmp_path))
        done = finetuned(arch, tmp_path)
        if name == "every_parameter":
            return t.check_every_parameter_trained(done)
        return cc.check_sampling_options_act(done.model, labelled=done.notes["labelled"])
    return run


NEW_MUTANTS = [
    ("kit-bright", _escapes_range_loss_and_stages("kit-bright"), "toward_data",
     r"the samples are brighter than the data after 100 steps .* samples' mean 0\.6.*x \* 1\.5"),
    ("kit-inverted", _escapes_range_loss_and_stages("kit-inverted"), "toward_data",
     r"the samples run against the data .*correlation -\d.*inverted \(1 - x\)"),
    ("kit-frozen-decoder", _escapes_range_loss_and_stages("kit-frozen-decoder"), "every_parameter",
     r"4 trainable parameter\(s\) are in no train_stages\(\) stage .*: dec\.0\.weight, dec\.0\.bias"
     r".*frozen_parameters"),
    ("kit-ignored-option", _escapes_option_values("kit-ignored-option"), "options",
     r"sampling option\(s\) temperature do not change the samples .*affects_output=False"),
]


@pytest.mark.parametrize("arch,escapes,check,message", NEW_MUTANTS,
                         ids=[f"{m[0]}-{m[2]}" for m in NEW_MUTANTS])
def test_each_new_mutant_is_caught(kit, arch, escapes, check, message, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        escapes(tmp_path / "escape", mp)  # the kit's older checks pass it
    with pytest.raises(AssertionError, match=message):
        _catch(check)(arch, tmp_path)


def test_a_conforming_model_passes_the_new_checks(kit, tmp_path):
    from genzoo.kit import config as cc
    from genzoo.kit import learning as lr
    from genzoo.kit import train as t
    lr.check_moves_toward_data(_probe("kit-image", tmp_path))
    done = finetuned("kit-image", tmp_path / "ft")
    t.check_every_parameter_trained(done)
    cc.check_sampling_options_act(done.model)


def test_an_option_declared_inert_is_exempt(kit, tmp_path):
    from genzoo.kit import config as cc
    done = finetuned("kit-inert-option", tmp_path)
    assert done.model.options()["temperature"].affects_output is False
    cc.check_sampling_options_act(done.model)


def test_frozen_parameters_are_exempt(kit, tmp_path):
    from genzoo.kit import train as t
    done = finetuned("kit-frozen-decoder", tmp_path)
    t.check_every_parameter_trained(done, frozen=("dec.*",))
    for p in done.model.dec.parameters():  # requires_grad=False declares it too
        p.requires_grad_(False)
    t.check_every_parameter_trained(done)


def test_a_model_that_does_not_learn_fails_the_probe(kit, tmp_path):
    """One step is not enough for the samples to take the data's pattern: the message says
    what to raise."""
    from genzoo.kit import learning as lr
    with pytest.raises(AssertionError, match="toward_data_steps"):
        lr.check_moves_toward_data(_probe("kit-image", tmp_path, steps=1))


def test_probe_data_is_mid_grey_and_labelled_where_the_model_takes_labels(kit):
    from genzoo.kit import conformance as c
    from genzoo.kit import learning as lr
    images = lr.probe_images(c.make_model("kit-image", {"image_shape": [3, 5, 7]}))
    assert tuple(images.shape) == (16, 3, 5, 7)
    assert 0.1 < float(images.min()) and float(images.max()) < 0.75
    assert 0.35 < float(images.mean()) < 0.5
    labelled = lr.with_labels(c.make_model("kit-labels", {}), images)
    assert labelled.labels.tolist() == [i % 3 for i in range(16)]
    assert lr.with_labels(c.make_model("kit-image", {}), images) is images


# ---- labelled kit data, and messages naming the real cause -------------------------------------
def test_the_kits_data_is_labelled_for_a_family_that_takes_labels(kit, tmp_path):
    from genzoo.kit import conformance as c
    from genzoo.kit import config as cc
    model = c.make_model("kit-labels", {})
    data = c.default_data(model, tmp_path)
    assert sorted(set(data.labels.tolist())) == [0, 1, 2]
    assert not hasattr(c.default_data(c.make_model("kit-image", {}), tmp_path), "labels")
    cc.check_config_drives_model("kit-labels", {}, data=data)  # label_dropout acts


def test_unlabelled_data_is_named_as_the_cause(kit, tmp_path):
    from genzoo.kit import conformance as c
    from genzoo.kit import config as cc
    images = c.default_data(c.make_model("kit-image", {}), tmp_path)  # no labels
    with pytest.raises(AssertionError, match=r"config value\(s\) label_dropout do not change.*"
                       r"takes `label` but the data it trained on has no labels"):
        cc.check_config_drives_model("kit-labels", {}, data=images)


# ---- merged batches ------------------------------------------------------------------------
def test_a_family_declares_that_merged_batches_differ(kit):
    from genzoo.kit import conformance as c
    model = c.make_model("kit-text-merged", {})
    with pytest.raises(AssertionError, match="texts differ.*set merged_batches = 'differ'"):
        c.check_seeds(model)
    c.check_seeds(model, merged="differ")
    c.check_seeds(c.make_model("kit-text", {}), merged="exact")
    with pytest.raises(AssertionError, match="merged_batches is 'sometimes'; use one of"):
        c.check_seeds(model, merged="sometimes")


# ---- pytest and engine deprecations -----------------------------------------------------------
def test_the_suite_raises_no_pytest_deprecation_warning(kit, pytester):
    """The class-scoped fixtures are classmethods (as instance methods pytest 9.1 deprecates
    them): a run with every pytest deprecation an error passes."""
    from genzoo.testing import Conformance
    for name in ("genzoo_finetune_run", "genzoo_probe_run"):  # pytest < 9.1 does not warn
        assert "classmethod" in repr(Conformance.__dict__[name]), f"{name} is no classmethod"
    pytester.makepyfile(test_mod='genzoo_arch = "kit-image"\n')
    result = pytester.runpytest_inprocess(
        *kit_plugin_args(), "-q", "-W", "error::pytest.PytestDeprecationWarning",
        "-k", "finetune_lowers or every_parameter or toward_data")
    assert result.parseoutcomes().get("passed") == 3, result.stdout.str()


def test_the_cuda_check_passes_dtype_not_precision(monkeypatch, tmp_path):
    import torch

    from genzoo.kit import devices as d
    from genzoo.samples import Samples
    seen = {}

    def fake_finetune(model, data, **options):
        seen.update(options)
        return SimpleNamespace(metrics={"loss": 0.5})
    monkeypatch.setattr("genzoo.engine.train.finetune", fake_finetune)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    model = SimpleNamespace(to_device=lambda device, dtype: None, device=torch.device("cuda"),
                            sample=lambda n, seed: Samples(images=torch.full((n, 1, 2, 2), .5)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        d.check_cuda_bf16(model, None, tmp_path)
    assert seen["dtype"] == "bf16" and "precision" not in seen
