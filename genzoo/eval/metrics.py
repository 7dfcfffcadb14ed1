"""Sample quality and diversity for every family: ``genzoo.evaluate(model, ...)``.

Images are measured in a feature space — the zoo's MNIST classifier (``"mnist"``, the default
for 1x28x28 models) or any timm model (``"timm:NAME"``) — against a reference set:

- Fréchet distance (FD) between Gaussian fits, computed as pytorch-fid does;
- KID, the unbiased polynomial-kernel MMD² averaged over random subsets, as torch-fidelity does;
- precision and recall of k-NN manifolds (Kynkäänniemi et al., 2019);
- class coverage (with the MNIST classifier): how evenly the samples spread over the digits.

Text models report distinct-n over their samples. Each family adds its own figures through the
``GenerativeModel.evaluate_metrics`` extension point (a VAE's ELBO and importance-weighted NLL
on the reference images, a text model's nats per character on the text file); a family whose
``evaluate_metrics`` takes a ``labels`` keyword also gets the reference images' class labels.
``real_floor`` gives the same numbers for real held-out digits: the best a model can hope for
at this sample size.
"""
from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from genzoo.errors import OptionError
from genzoo.eval.run import (SampleRun, family_metrics, given_reference, label_accuracy,
                             shared_reference_stats)
from genzoo.eval.reference import (DEFAULT_REFERENCE, MNIST_SHAPE, ReferenceSet,
                                   family_reference, image_reference, read_text, reads_images)

if TYPE_CHECKING:
    from genzoo.model import GenerativeModel


# ---- the metrics ------------------------------------------------------------------------
def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``||mu1 - mu2||² + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))`` with the matrix square
    root from scipy's ``sqrtm`` exactly as pytorch-fid computes it; without scipy (or if sqrtm
    returns a clearly complex result) the trace of the root comes from a symmetric eigen
    decomposition instead, which is mathematically the same number."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise OptionError(f"frechet_distance: mismatched shapes mu {mu1.shape} vs {mu2.shape}, "
                          f"sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    tr_covmean = _trace_sqrt_product(s1, s2, eps)
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    """Tr(sqrt(s1 @ s2)), the way pytorch-fid gets it, with an eigen-based fallback."""
    try:
        from scipy import linalg
    except ImportError:
        return _trace_sqrt_product_eigh(s1, s2)
    with warnings.catch_warnings():  # a singular product is expected with few samples
        warnings.simplefilter("ignore", getattr(linalg, "LinAlgWarning", RuntimeWarning))
        covmean = linalg.sqrtm(s1.dot(s2))
        if not np.isfinite(covmean).all():  # nearly singular product: regularise as pytorch-fid
            offset = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            return _trace_sqrt_product_eigh(s1, s2)
        covmean = covmean.real
    return float(np.trace(covmean))


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr(sqrt(s1 s2)) = sum of sqrt(eigenvalues of sqrt(s1) s2 sqrt(s1)), a symmetric PSD
    matrix, so the eigenvalues are real and (up to rounding) non-negative."""
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def kid(feats_a, feats_b, subsets: int = 100, subset_size: int | None = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = 2020) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) over ``subsets`` random subsets of the unbiased
    MMD² with the kernel ``(gamma x·y + coef0) ** degree`` (gamma = 1/D by default).

    Subsets are drawn as torch-fidelity draws them (``np.random.RandomState(seed)``, without
    replacement, first from ``feats_a`` then ``feats_b``), so the numbers match it exactly;
    ``subset_size`` is capped at the smaller set (None: the smaller set)."""
    a, b = _as_2d(feats_a, "feats_a"), _as_2d(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise OptionError(f"kid: feature sizes differ ({a.shape[1]} vs {b.shape[1]})")
    m = min(len(a), len(b), subset_size or len(a) + len(b))
    if m < 2:
        raise OptionError("kid needs at least 2 samples in each set")
    g = 1.0 / a.shape[1] if gamma is None else gamma
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T * g + coef0) ** degree
        k_yy = (y @ y.T * g + coef0) ** degree
        k_xy = (x @ y.T * g + coef0) ** degree
        mmds[i] = ((k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
                   - 2 * k_xy.sum() / (m * m))
    return float(mmds.mean()), float(mmds.std())


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019).

    Each set's manifold is the union of balls around its points reaching their k-th nearest
    neighbour (self excluded). Precision: the share of ``fake`` inside the real manifold;
    recall: the share of ``real`` inside the fake manifold."""
    r = torch.as_tensor(_as_2d(real, "real"))
    f = torch.as_tensor(_as_2d(fake, "fake"))
    if r.shape[1] != f.shape[1]:
        raise OptionError(f"precision_recall: feature sizes differ ({r.shape[1]} vs {f.shape[1]})")
    if min(len(r), len(f)) < k + 1:
        raise OptionError(f"precision_recall with k={k} needs at least {k + 1} samples in each set")
    radius_r = torch.cdist(r, r).kthvalue(k + 1, dim=1).values
    radius_f = torch.cdist(f, f).kthvalue(k + 1, dim=1).values
    d_fr = torch.cdist(f, r)
    precision = (d_fr <= radius_r[None, :]).any(dim=1).double().mean()
    recall = (d_fr.T <= radius_f[None, :]).any(dim=1).double().mean()
    return float(precision), float(recall)


def class_coverage(probs, min_share: float = 0.01) -> dict[str, Any]:
    """How samples spread over classes, from (N, C) class probabilities.

    Returns ``entropy`` (nats, of the predicted-class histogram; ln C when even),
    ``histogram`` (counts per class), ``max_share`` (the largest class's share),
    ``classes_covered`` (classes with at least ``min_share`` of the samples, and at least one)
    and ``confidence`` (the mean top probability: low when samples look like no class)."""
    p = torch.as_tensor(np.asarray(probs) if not isinstance(probs, torch.Tensor) else probs)
    if p.ndim != 2 or len(p) == 0:
        raise OptionError(f"class_coverage takes (N, classes) probabilities, got shape {tuple(p.shape)}")
    counts = torch.bincount(p.argmax(1), minlength=p.shape[1]).double()
    share = counts / counts.sum()
    nz = share[share > 0]
    need = max(1.0, min_share * len(p))
    return {"entropy": max(0.0, float(-(nz * nz.log()).sum())),
            "histogram": [int(c) for c in counts],
            "max_share": float(share.max()),
            "classes_covered": int((counts >= need).sum()),
            "confidence": float(p.double().max(1).values.mean())}


def distinct_n(texts: Sequence[str], n: int = 1, unit: str = "words") -> float:
    """Distinct-n (Li et al., 2016): distinct n-grams / all n-grams over ``texts``; tokens are
    whitespace-separated words (``unit="chars"``: characters). 0.0 when there are none."""
    if n < 1:
        raise OptionError(f"distinct_n: n must be at least 1, got {n}")
    if unit not in ("words", "chars"):
        raise OptionError(f"distinct_n: unit must be 'words' or 'chars', got {unit!r}")
    grams: Counter = Counter()
    for text in texts:
        toks = text.split() if unit == "words" else list(text)
        grams.update(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def _as_2d(x, name: str) -> np.ndarray:
    arr = x.detach().to("cpu", torch.float64).numpy() if isinstance(x, torch.Tensor) \
        else np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or len(arr) == 0:
        raise OptionError(f"{name}: expected an (N, D) array of features, got shape {arr.shape}")
    return arr


# ---- evaluating models --------------------------------------------------------------------
def image_metrics(feats: torch.Tensor, probs: torch.Tensor | None, ref) -> dict[str, Any]:
    """FD, KID, precision/recall (and class coverage when ``probs`` is given) of features
    against reference statistics ``ref`` (a ``refstats.RefStats``); for any modality's
    features, the name is historical."""
    from genzoo.eval.refstats import gaussian_stats
    mu, sigma = gaussian_stats(feats)
    k = min(3, len(feats) - 1, len(ref.features) - 1)
    kid_mean, kid_std = kid(feats, ref.features, subset_size=1000)
    precision, recall = precision_recall(ref.features, feats, k=k)
    out = {"fd": frechet_distance(mu, sigma, ref.mu, ref.sigma), "kid": kid_mean,
           "kid_std": kid_std, "precision": precision, "recall": recall}
    if probs is not None:
        cov = class_coverage(probs)
        out.update({"class_entropy": cov["entropy"], "class_max_share": cov["max_share"],
                    "classes_covered": cov["classes_covered"],
                    "class_confidence": cov["confidence"], "class_histogram": cov["histogram"]})
    return out


def evaluate(model: GenerativeModel, n: int | None = None,
             data: Any = None, feature: str | None = None, seed: int = 0,
             batch_size: int | None = None, progress: bool = False, labels: bool = True,
             **sample_options: Any) -> dict[str, Any]:
    """Measure ``model`` (a loaded GenerativeModel; ``genzoo.evaluate`` also takes a name)
    on ``n`` samples.

    Tensor modalities (images, audio ...): FD, KID, precision, recall in the ``feature``
    space against the reference ``data``, class coverage when the feature net classifies,
    and ``samples_per_s``. Images are read by core's loader (a folder, .npz, or
    ``mnist:SPLIT``; default ``mnist:ref`` for 1x28x28 models); any other tensor modality's
    reference set by its family's own loader (``prepare_data``: for audio a folder of WAVs,
    an ``.npz`` ...; see ``genzoo.eval.reference``). Text models: ``data`` is a text file,
    and distinct-1/2/3 measure the samples' diversity. Every model adds what its family
    measures through ``GenerativeModel.evaluate_metrics`` (a VAE's ELBO, a text model's nats
    per character). A model that takes class labels the feature net classifies (the house
    MNIST models) also reports ``label_accuracy``: ``n`` more samples with labels 0, 1, 2 ...
    in turn, the share the classifier reads as their label. Those extra samples double the
    sampling time; ``labels=False`` skips them (``genzoo eval --no-label-accuracy``).
    ``n``, ``data`` (``"reference"``), ``feature`` and unset sampling options default to the
    family's ``eval_defaults`` (else n=1000; the feature: the modality's
    ``default_feature``: ``mnist`` for images, ``logmel`` for audio). A model that samples only given images
    (``required_conditions``: an autoencoder) is measured on its outputs for the first n
    reference images (n at most the reference set's size). Extra keywords are sampling
    options. Returns a flat dict."""
    if isinstance(model, (str, os.PathLike)):  # names are the API's to resolve
        raise OptionError(f"evaluate takes a loaded model, got {type(model).__name__} "
                          f"{os.fspath(model)!r}; genzoo.evaluate loads names and folders")
    defaults = dict(getattr(model, "eval_defaults", None) or {})
    default_n = defaults.pop("n", 1000)
    default_data, default_feature = defaults.pop("reference", None), defaults.pop("feature", None)
    n = default_n if n is None else n
    data = default_data if data is None else data
    sample_options = {**defaults, **{k: v for k, v in sample_options.items() if v is not None}}
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise OptionError(f"evaluation needs n >= 2 samples, got {n!r}")
    spec = _modality_of(model)
    feature = feature or default_feature or getattr(spec, "default_feature", None)
    model.check_options(sample_options)  # a bad option fails before the slow parts
    dtype = str(model.autocast_dtype or torch.float32).removeprefix("torch.")
    from genzoo.devices import describe_machine
    head = {"model": model.name_or_path or model.arch, "family": model.family, "n": n,
            "seed": seed, "dtype": dtype, "measured_on": describe_machine(model.device),
            **sample_options}
    run = SampleRun(n, seed, batch_size, progress, sample_options)
    if spec.holds != "tensor":  # texts: scored on held-out text, diversity of the samples
        if data is None:
            raise OptionError("text models are scored on held-out text: pass data= a text file")
        reference = read_text(data)
        out = {**head, "data": os.fspath(data), **_text_diversity(model, run)}
        ref_labels = None
    else:
        ref, out = _evaluate_tensors(model, run, data=data, feature=feature, head=head,
                                     labels=labels)
        reference, ref_labels = ref.data, ref.labels
    return {**out, **family_metrics(model, reference, seed, ref_labels)}


def _modality_of(model: GenerativeModel) -> Any:
    """The model's registered ``Modality``, or a one-line OptionError for output no
    installed plugin declares (a feature network's ``"features"``)."""
    from genzoo.errors import PluginError
    try:
        return model.sample_modality()
    except PluginError:
        raise OptionError(f"{model.name_or_path or model.arch} makes {model.modality!r} output, "
                          "which no installed modality declares, so it has no samples to "
                          "measure; evaluate a generative model, or install the plugin that "
                          f"defines {model.modality!r}") from None


def _reference(model: GenerativeModel, run: SampleRun, data: Any,
               feature: str | None) -> tuple[ReferenceSet, str]:
    """The reference set of ``model`` and the feature net to measure in (None: refused in
    one line), with cheap checks first: images by core's loader (the model's image shape from
    its config, else from one sample), any other tensor modality by its family's loader."""
    from genzoo.eval.features import check_feature
    spec = model.sample_modality()
    if reads_images(spec) and feature is not None:
        shape = tuple(model.config.get("image_shape") or ())
        if len(shape) != 3:  # a foreign format without image_shape in its config: ask one sample
            shape = tuple(model.sample(1, seed=run.seed, **run.options).images.shape[1:])
        check_feature(feature, shape)  # cheap checks first, then the slow loads
        return image_reference(data, shape), feature
    if feature is None:
        from genzoo.plugins.manager import feature_nets
        raise OptionError(f"{model.name_or_path or model.arch} names no feature network for its "
                          f"{spec.plural} (eval_defaults['feature']); pass --feature NAME "
                          f"(registered: {', '.join(sorted(feature_nets()))})")
    check_feature(feature, None)  # an unknown name fails before the family's loader runs
    reference = family_reference(model, data)
    check_feature(feature, tuple(reference.data.shape[1:]))
    return reference, feature


def _evaluate_tensors(model: GenerativeModel, run: SampleRun, *, data: Any,
                      feature: str | None, head: dict[str, Any], labels: bool = True) -> tuple[ReferenceSet, dict]:
    """The reference set and the metrics of ``run``'s samples against it in ``feature``'s
    space (with ``label_accuracy`` from as many labelled samples again when ``labels``)."""
    from genzoo.eval.features import feature_net
    reference, feature = _reference(model, run, data, feature)
    run = given_reference(model, run, reference)
    net = feature_net(feature, model.device)
    ref = shared_reference_stats(reference, net)
    feats, probs, seconds = run.features(model, net)
    out = {**head, "n": run.n, "feature": net.name, "reference": reference.source,
           "reference_n": ref.n, **reference.meta,
           **image_metrics(feats, probs, ref), "samples_per_s": run.n / max(seconds, 1e-9),
           "sample_seconds": seconds}
    if labels and "label" not in run.options:
        out.update(label_accuracy(model, run, net, probs))
    return reference, out


def reference_set(data: Any, shape: tuple) -> ReferenceSet:
    """The image reference set for a model of image ``shape`` (``reference.image_reference``:
    kept under this name for callers written before other modalities)."""
    return image_reference(data, shape)


def reference_images(data: Any, shape: tuple) -> tuple[torch.Tensor, str]:
    """The reference images for a model of image ``shape``: (N, C, H, W) in [0, 1], source
    (``reference_set`` without the labels)."""
    ref = image_reference(data, shape)
    return ref.data, ref.source


def real_floor(feature: str = "mnist", data: str = "mnist:floor",
               reference: str = DEFAULT_REFERENCE) -> dict:
    """The same image metrics for real held-out digits (``mnist:floor``) against the reference
    (``mnist:ref``): the row every model is compared with."""
    from genzoo.eval.features import feature_net
    from genzoo.eval.refstats import reference_stats
    images, source = reference_images(data, MNIST_SHAPE)
    net = feature_net(feature, "cpu")
    ref_set = reference_set(reference, MNIST_SHAPE)
    ref = reference_stats(ref_set.images, ref_set.source, net)
    feats, probs = net(images)
    return {"model": f"real data ({source})", "family": "data", "n": len(images),
            "feature": net.name, "reference": ref_set.source, "reference_n": ref.n,
            **image_metrics(feats, probs, ref)}


def _text_diversity(model: GenerativeModel, run: SampleRun) -> dict[str, Any]:
    """distinct-1/2/3 and mean length of a text model's samples, and their speed."""
    t0 = time.perf_counter()
    samples = run.draw(model)
    seconds = time.perf_counter() - t0
    texts = list(samples.texts or [])
    if not all(isinstance(t, str) for t in texts):
        raise OptionError(f"{model.name_or_path or model.arch} makes {samples.spec().plural} "
                          "that are not strings; genzoo eval measures texts and tensors only, "
                          "so report this family's figures through its evaluate_metrics")
    out: dict[str, Any] = {f"distinct_{k}": distinct_n(texts, k) for k in (1, 2, 3)}
    out.update({"mean_chars": sum(map(len, texts)) / max(1, len(texts)),
                "samples_per_s": run.n / max(seconds, 1e-9), "sample_seconds": seconds})
    return out


__all__ = ["frechet_distance", "kid", "precision_recall", "class_coverage", "distinct_n",
           "evaluate", "real_floor", "image_metrics", "reference_images", "reference_set",
           "ReferenceSet", "SampleRun", "family_reference", "DEFAULT_REFERENCE", "MNIST_SHAPE"]
