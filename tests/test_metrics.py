"""genzoo.eval.metrics: the metric math against the reference implementations (pytorch-fid,
torch-fidelity), bad inputs, the reference-statistics cache, evaluate() and the eval CLI."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from genzoo.errors import DataError, OptionError
from genzoo.eval.metrics import (class_coverage, distinct_n, evaluate, frechet_distance, kid,
                            precision_recall, _trace_sqrt_product_eigh)
from genzoo.model import GenerativeModel
from genzoo.options import Option, with_classes


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def _gauss(rng, n, d, shift=0.0, scale=1.0):
    return rng.normal(size=(n, d)) * scale + shift


# ---- agreement with the reference implementations -----------------------------------------
@pytest.mark.parametrize("n,d", [(400, 32), (300, 64), (60, 16)])
def test_frechet_distance_matches_pytorch_fid(n, d):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(d)
    a, b = _gauss(rng, n, d), _gauss(rng, n, d, shift=0.3, scale=1.3)
    stats = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch-fid passes scipy's deprecated `disp`
        expected = fid_score.calculate_frechet_distance(*stats)
    assert _rel(frechet_distance(*stats), expected) < 1e-3
    # the eigen-based fallback (used without scipy) computes the same number
    mu1, s1, mu2, s2 = stats
    fallback = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) \
        - 2 * _trace_sqrt_product_eigh(s1, s2)
    assert _rel(fallback, expected) < 1e-3


def test_frechet_distance_identical_is_zero_and_singular_is_finite():
    rng = np.random.default_rng(0)
    a = _gauss(rng, 500, 8)
    mu, sigma = a.mean(0), np.cov(a, rowvar=False)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6
    few = _gauss(rng, 10, 32)  # fewer samples than dimensions: a singular covariance
    value = frechet_distance(few.mean(0), np.cov(few, rowvar=False), mu.repeat(4), np.eye(32))
    assert math.isfinite(value) and value > 0


def test_kid_matches_torch_fidelity():
    metric_kid = pytest.importorskip("torch_fidelity.metric_kid")
    rng = np.random.default_rng(1)
    a, b = _gauss(rng, 300, 24), _gauss(rng, 250, 24, shift=0.2)
    mean, std = kid(a, b, subsets=20, subset_size=200)
    ref = metric_kid.kid_features_to_metric(torch.tensor(a), torch.tensor(b), kid_subsets=20,
                                            kid_subset_size=200, verbose=False)
    assert _rel(mean, ref["kernel_inception_distance_mean"]) < 1e-3
    assert _rel(std, ref["kernel_inception_distance_std"]) < 1e-3
    same_mean, _ = kid(a, _gauss(rng, 300, 24), subsets=10, subset_size=200)
    assert abs(same_mean) < 0.1 * mean  # unbiased: about zero for one distribution


def test_precision_recall_matches_torch_fidelity_and_sanity():
    metric_prc = pytest.importorskip("torch_fidelity.metric_prc")
    rng = np.random.default_rng(2)
    real, fake = _gauss(rng, 200, 16), _gauss(rng, 150, 16, shift=0.5, scale=0.7)
    p, r = precision_recall(real, fake, k=3)
    ep, er = metric_prc.calculate_precision_recall_full(torch.tensor(fake), torch.tensor(real), 3)
    assert abs(p - ep) < 1e-6 and abs(r - er) < 1e-6
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, _gauss(rng, 150, 16, shift=100.0)) == (0.0, 0.0)


# ---- the other metrics --------------------------------------------------------------------
def test_class_coverage_math():
    even = torch.eye(10).repeat(5, 1)
    cov = class_coverage(even)
    assert cov["entropy"] == pytest.approx(math.log(10))
    assert cov["max_share"] == pytest.approx(0.1) and cov["classes_covered"] == 10
    assert cov["histogram"] == [5] * 10 and cov["confidence"] == pytest.approx(1.0)
    one = class_coverage(torch.tensor([[0.1, 0.9]] * 7))
    assert one["entropy"] == 0.0 and one["max_share"] == 1.0 and one["classes_covered"] == 1
    probs = torch.zeros(200, 10)
    probs[:150, 3] = 1
    probs[150:199, 7] = 1
    probs[199, 0] = 1  # one sample of 200 is under 1%: seen, but not "covered"
    cov = class_coverage(probs)
    shares = np.array([150, 49, 1]) / 200
    assert cov["entropy"] == pytest.approx(float(-(shares * np.log(shares)).sum()))
    assert cov["classes_covered"] == 2 and cov["max_share"] == 0.75


def test_distinct_n():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["x"], 2) == 0.0 and distinct_n([], 1) == 0.0
    assert distinct_n(["abab"], 1, unit="chars") == 0.5


@pytest.mark.parametrize("call", [
    lambda: kid(np.zeros((5, 3)), np.zeros((5, 4))),
    lambda: kid(np.zeros((1, 3)), np.zeros((5, 3))),
    lambda: precision_recall(np.zeros((3, 2)), np.zeros((9, 2)), k=3),
    lambda: frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)),
    lambda: class_coverage(torch.zeros(5)),
    lambda: distinct_n(["a"], 0),
])
def test_bad_metric_inputs_are_one_line_option_errors(call):
    with pytest.raises(OptionError) as e:
        call()
    assert "\n" not in str(e.value)


# ---- the reference-statistics cache -------------------------------------------------------
class CountingNet:
    """A fake feature network: a fixed random projection, counting how often it runs."""

    name, key, input_shape = "fake", "fake-net-v1", (1, 28, 28)

    def __init__(self):
        self.calls = 0
        self.w = torch.randn(784, 6, generator=torch.Generator().manual_seed(0))

    def __call__(self, images):
        self.calls += 1
        return images.flatten(1) @ self.w, None


def test_reference_stats_cache_hit_and_invalidation(tmp_path, monkeypatch):
    from genzoo.eval.refstats import cache_dir, reference_stats
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))
    net = CountingNet()
    images = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    first = reference_stats(images, "mnist:ref", net)
    second = reference_stats(images, "mnist:ref", net)
    assert (first.cached, second.cached, net.calls) == (False, True, 1)
    assert np.array_equal(first.mu, second.mu) and np.array_equal(first.sigma, second.sigma)
    assert torch.equal(first.features, second.features)
    assert sorted(p.suffix for p in cache_dir().iterdir()) == [".json", ".safetensors"]
    changed = images.clone()
    changed[0, 0, 0, 0] += 0.5  # one pixel of a "changed dataset" under the same name
    third = reference_stats(changed, "mnist:ref", net)
    assert not third.cached and net.calls == 2 and third.key != first.key
    for f in cache_dir().glob("*.safetensors"):  # a corrupt entry is recomputed, not trusted
        f.write_bytes(b"garbage")
    assert not reference_stats(images, "mnist:ref", net).cached and net.calls == 3


# ---- evaluate() -----------------------------------------------------------------------------
class NoiseModel(GenerativeModel):
    """A stand-in image model: uniform noise, or (kind="train") real training digits."""

    arch, family, modality = "test-noise", "test", "image"
    sample_defaults = {"kind": "noise"}

    def __init__(self, config=None):
        super().__init__(config or {"image_shape": [1, 28, 28]})
        self.p = nn.Parameter(torch.zeros(1))
        self.digits = None

    def generate(self, generators, kind="noise"):
        if kind == "train":
            from genzoo.data import mnist_split
            if self.digits is None:
                self.digits = mnist_split("train")[0]
            idx = [int(torch.randint(len(self.digits), (1,), generator=g)) for g in generators]
            return self.digits[idx]
        shape = tuple(self.config["image_shape"])
        return torch.stack([torch.rand(shape, generator=g) for g in generators])


class FeatureOnly(NoiseModel):
    arch, family, modality = "test-features", "features", "features"


def test_evaluate_bad_inputs_are_one_line(tmp_path):
    model = NoiseModel()
    for call, err in [
        (lambda: evaluate(model, n=1), OptionError),
        (lambda: evaluate(FeatureOnly(), n=4), OptionError),
        (lambda: evaluate(model, n=4, feature="nope"), OptionError),
        (lambda: evaluate(NoiseModel({"image_shape": [3, 32, 32]}), n=4), OptionError),
    ]:
        with pytest.raises(err) as e:
            call()
        assert "\n" not in str(e.value)
    np.savez(tmp_path / "big.npz", images=np.zeros((10, 32, 32), np.uint8))
    with pytest.raises(DataError, match="32x32"):
        evaluate(model, n=4, data=str(tmp_path / "big.npz"), feature="mnist")


class LabelledDigits(NoiseModel):
    """Real digits of the label asked for (``honest``), or of any label (not honest)."""

    arch = "test-digits"
    sample_options = (Option("label", "int", None, "class", min=0, max=9, condition=True,
                             per_sample=True),)

    def __init__(self, honest=True, classes=10):
        super().__init__()
        self.honest, self.classes = honest, classes

    def options(self):
        return with_classes(super().options(), self.classes)

    def generate(self, generators, kind="noise", label=None):
        from genzoo.data import mnist_split
        images, labels = mnist_split("floor")
        wanted = label if isinstance(label, list) else [label] * len(generators)
        out = []
        for g, want in zip(generators, wanted):
            pool = images[labels == want] if self.honest and want is not None else images
            out.append(pool[int(torch.randint(len(pool), (1,), generator=g))])
        return torch.stack(out)


def test_evaluate_reports_label_accuracy_of_a_model_that_takes_labels():
    honest = evaluate(LabelledDigits(), n=100)["label_accuracy"]
    assert honest > 0.9
    assert evaluate(LabelledDigits(honest=False), n=100)["label_accuracy"] < 0.4
    assert "label_accuracy" not in evaluate(LabelledDigits(), n=20, labels=False)
    assert "label_accuracy" not in evaluate(LabelledDigits(classes=3), n=20)  # not the net's 10
    assert "label_accuracy" not in evaluate(NoiseModel(), n=20)


def test_eval_cli_skips_the_labelled_draw_with_no_label_accuracy(monkeypatch):
    import json

    from click.testing import CliRunner

    import genzoo.api
    from genzoo.cli import cli
    drawn = []

    class Counted(LabelledDigits):
        def generate(self, generators, kind="noise", label=None):
            drawn.append(len(generators))
            return super().generate(generators, kind, label)
    monkeypatch.setattr(genzoo.api, "load", lambda *a, **k: Counted())
    both = CliRunner().invoke(cli, ["eval", "digits", "-n", "20", "--json"])
    assert both.exit_code == 0, both.output
    assert "label_accuracy" in json.loads(both.stdout) and sum(drawn) == 40  # twice n
    drawn.clear()
    once = CliRunner().invoke(cli, ["eval", "digits", "-n", "20", "--json",
                                    "--no-label-accuracy"])
    assert once.exit_code == 0, once.output
    assert "label_accuracy" not in json.loads(once.stdout) and sum(drawn) == 20
    helped = CliRunner().invoke(cli, ["eval", "--help"])
    assert "--no-label-accuracy" in helped.output and "n more" in helped.output


class ReferenceSeer(NoiseModel):
    """A family whose own metric looks at the reference labels (the newer keyword)."""

    seen: dict = {}

    def evaluate_metrics(self, reference, *, seed=0, labels=None):
        ReferenceSeer.seen = {"images": reference, "labels": labels}
        return {"labelled_refs": 0 if labels is None else int((labels >= 0).sum())}


def test_evaluate_metrics_sees_the_reference_labels_when_it_asks():
    from genzoo.data import mnist_split
    out = evaluate(ReferenceSeer(), n=4)
    images, labels = mnist_split("ref")
    assert out["labelled_refs"] == 500
    assert torch.equal(ReferenceSeer.seen["labels"], labels)
    assert torch.equal(ReferenceSeer.seen["images"], images)  # labels paired with their images

    class Kwargs(NoiseModel):
        def evaluate_metrics(self, reference, **extra):
            return {"got_labels": float(extra["labels"] is not None)}

    class Older(NoiseModel):  # written before the keyword: still called as before
        def evaluate_metrics(self, reference, *, seed=0):
            return {"old": 1.0}
    assert evaluate(Kwargs(), n=4)["got_labels"] == 1.0
    assert evaluate(Older(), n=4)["old"] == 1.0


def test_user_reference_labels_reach_evaluate_metrics(tmp_path):
    images = np.zeros((6, 28, 28), np.uint8)
    images[:, 5:20, 10:15] = 255
    np.savez(tmp_path / "ref.npz", images=images, labels=[1, 1, 7, 7, 7, -1])
    out = evaluate(ReferenceSeer(), n=4, data=str(tmp_path / "ref.npz"))
    assert ReferenceSeer.seen["labels"].tolist() == [1, 1, 7, 7, 7, -1]
    assert out["labelled_refs"] == 5
    np.savez(tmp_path / "plain.npz", images=images)
    assert evaluate(ReferenceSeer(), n=4, data=str(tmp_path / "plain.npz"))["labelled_refs"] == 0


def test_evaluate_text_needs_a_text_file():
    class TextModel(NoiseModel):
        arch, family, modality = "test-text", "textlm", "text"
    with pytest.raises(OptionError, match="text file"):
        evaluate(TextModel(), n=4)


def test_evaluate_text_reports_scores_and_distinct_n(tmp_path):
    class TextModel(NoiseModel):
        arch, family, modality = "test-text", "textlm", "text"
        sample_defaults = {}

        def generate(self, generators):
            return [f"the cat {int(torch.randint(3, (1,), generator=g))}" for g in generators]

        def evaluate_metrics(self, reference, *, seed=0):
            assert reference == "some held-out text\n"  # the text itself, read by core
            return {"nats_per_char": 1.0, "perplexity": math.e}
    (tmp_path / "val.txt").write_text("some held-out text\n")
    out = evaluate(TextModel(), n=20, data=tmp_path / "val.txt")
    assert out["perplexity"] == pytest.approx(math.e) and out["n"] == 20
    assert 0 < out["distinct_1"] < 1 and out["distinct_1"] == pytest.approx(5 / 60)
    assert out["samples_per_s"] > 0
    assert out["dtype"] == "float32"
    bf16 = TextModel().to_device("cpu", "bf16")  # the precision measured is the one reported
    assert evaluate(bf16, n=2, data=tmp_path / "val.txt")["dtype"] == "bfloat16"


def test_timm_feature_without_cached_weights_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    from genzoo.eval.features import feature_net
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(OptionError, match="not in the Hugging Face cache") as e:
        feature_net("timm:test_resnet")
    assert "\n" not in str(e.value)
    with pytest.raises(OptionError, match="unknown timm model"):
        feature_net("timm:no_such_net_xyz?pretrained=false")


def test_timm_random_init_features(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    from genzoo.eval.metrics import image_metrics
    from genzoo.eval.refstats import reference_stats
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))
    from genzoo.eval.features import feature_net
    net = feature_net("timm:test_resnet?pretrained=false&size=32")
    real = torch.rand(60, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    feats, probs = net(real)
    assert feats.shape == (60, net(real[:2])[0].shape[1]) and probs is None
    again = feature_net("timm:test_resnet?pretrained=false&size=32")
    assert torch.allclose(again(real)[0], feats)  # random init is seeded: one network
    ref = reference_stats(real, "rand", net)
    out = image_metrics(net(real.flip(0))[0], None, ref)
    assert abs(out["fd"]) < 1e-6 and out["precision"] == 1.0 and "class_entropy" not in out


# ---- card writing and the CLI ---------------------------------------------------------------
def test_write_card_metrics_to_catalog_and_folder(tmp_path, monkeypatch):
    import yaml
    from genzoo.cli.eval import card_metrics, write_card_metrics
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("# my models\nversion: 1\nmodels:\n- name: tiny-test\n  family: test\n"
                       "  arch: test-noise\n  source: ./tiny\n  metrics: {old: 1}\n")
    monkeypatch.setenv("GENZOO_REGISTRY", str(catalog))
    result = {"model": "tiny-test", "family": "test", "n": 100, "seed": 0, "sampler": "ddim",
              "feature": "mnist", "reference": "mnist:ref", "fd": 1.234567, "kid": 0.01,
              "classes_covered": 10, "samples_per_s": 99.0, "class_histogram": [1, 2]}
    metrics = card_metrics(result)
    assert metrics == {"n": 100, "seed": 0, "sampler": "ddim", "feature": "mnist",
                       "reference": "mnist:ref", "fd": 1.2346, "kid": 0.01,
                       "classes_covered": 10, "samples_per_s": 99.0}
    assert write_card_metrics("tiny-test", metrics) == str(catalog)
    text = catalog.read_text()
    assert text.startswith("# my models")
    assert yaml.safe_load(text)["models"][0]["metrics"] == {"old": 1, **metrics}
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlibrary_name: genzoo\ngenzoo_metrics: {a: 1}\n---\n\n# hi\n")
    write_card_metrics(str(folder), {"fd": 2.0, "n": 100, "reference": "mnist:ref"})
    write_card_metrics(str(folder), {"fd": 1.5, "kid": 0.1, "n": 100, "reference": "mnist:ref"})
    readme = (folder / "README.md").read_text()
    from huggingface_hub import ModelCard
    results = {r.metric_type: r for r in ModelCard.load(folder / "README.md").data.eval_results}
    assert {k: r.metric_value for k, r in results.items()} == {"fd": 1.5, "kid": 0.1}
    assert results["fd"].dataset_name == "mnist:ref" and results["fd"].metric_args["n"] == 100
    assert readme.rstrip().endswith("# hi")
    with pytest.raises(OptionError):
        write_card_metrics(str(tmp_path / "missing"), {})


def test_cli_parses_options_and_reports_errors():
    from click.testing import CliRunner
    from genzoo.cli.root import GenzooGroup
    from genzoo.cli.eval import eval_command
    from genzoo.options import parse_key_values
    assert parse_key_values(("sampler=ddim", "steps=50", "max-new-tokens=5")) == \
        {"sampler": "ddim", "steps": "50", "max_new_tokens": "5"}
    with pytest.raises(OptionError):
        parse_key_values(("oops",))
    group = GenzooGroup("genzoo")
    group.add_command(eval_command)
    result = CliRunner().invoke(group, ["eval", "no-such-model-xyz"])
    assert result.exit_code == 1 and "Error:" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_timm_pretrained_weights_come_from_the_hf_cache_only(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    from genzoo.eval.features import feature_net
    # a Hugging Face cache holding "pretrained" test_resnet weights (made here, seeded)
    torch.manual_seed(123)
    source = timm.create_model("test_resnet", pretrained=False)
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()},
              str(repo / "snapshots" / commit / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    net = feature_net("timm:test_resnet?size=32")
    x = torch.rand(3, 1, 28, 28)
    source.reset_classifier(0)
    expected = source.eval()(torch.nn.functional.interpolate(
        (x.expand(-1, 3, -1, -1) - 0.5) / 0.5, size=(32, 32), mode="bilinear",
        align_corners=False, antialias=True))
    assert torch.allclose(net(x)[0], expected, atol=1e-5)
    assert net.key.startswith("timm:test_resnet:") and "random" not in net.key
