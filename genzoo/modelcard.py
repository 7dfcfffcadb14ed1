"""A model folder's README.md, written the way the Hub reads it: huggingface_hub's
``ModelCard``/``ModelCardData``, with every measured figure as a ``model-index`` eval result.

So ``huggingface_hub.ModelCard.load(folder).data.eval_results`` lists what ``genzoo eval``
measured, and license, base_model and datasets travel with a model through save, finetune
and push. A figure is a number the evaluation measured; the settings it was measured with
(``n``, ``seed``, the reference set, the sampling options, facts of training) ride along
as each result's ``metric_args``. The card's ``pipeline_tag`` and task tags follow what the
model can do (its modality and conditions: ``card_task``); a family's own ``card_fields``
win over them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

#: Result keys that describe how a figure was measured rather than being one.
SETTING_KEYS = frozenset({"n", "seed", "dtype", "feature", "reference", "reference_n", "data",
                          "iw_k", "eval_ctx", "eval_windows", "heldout_set", "train_set",
                          "val_chars", "tokens", "chars", "classes_covered_min_share"})
#: What each modality's samples are, as the Hub names the task, for a model that takes no
#: condition (the task of an evaluation's figures, which are measured without one).
PIPELINE_TAGS = {"text": "text-generation", "image": "unconditional-image-generation"}
#: The Hub task of a model whose samples a text ``prompt`` condition steers, by modality.
PROMPT_TASKS = {"image": "text-to-image", "audio": "text-to-audio"}
#: Tags a capability adds to a card (the Hub has no task for class-conditional generation:
#: such a model says so in its tags rather than claiming "unconditional").
CAPABILITY_TAGS = {"label": "class-conditional", "init": "image-to-image", "mask": "inpainting"}


def split_metrics(metrics: dict[str, Any],
                  options: Iterable[str] = ()) -> tuple[dict[str, float], dict[str, Any]]:
    """``(figures, settings)``: numbers that were measured, and everything that says how
    (sampling options named in ``options``, ``SETTING_KEYS``, ``train_*`` facts, text)."""
    options = set(options)
    figures: dict[str, float] = {}
    settings: dict[str, Any] = {}
    for key, value in metrics.items():
        measured = (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and key not in SETTING_KEYS and key not in options
                    and not key.startswith("train_"))
        if measured:
            figures[key] = value
        elif isinstance(value, (str, int, float, bool)) or value is None:
            settings[key] = value
    return figures, settings


def eval_results(name: str, metrics: dict[str, Any], modality: str,
                 options: Iterable[str] = (), task: str | None = None) -> list:
    """``huggingface_hub.EvalResult``s of a flat metrics dict (see ``split_metrics``), for
    the card's ``task`` (default: the modality's unconditional task, which is how the common
    figures are measured)."""
    from huggingface_hub import EvalResult
    figures, settings = split_metrics(metrics, options)
    reference = str(settings.get("reference") or settings.get("data") or "samples")
    return [EvalResult(task_type=task or PIPELINE_TAGS.get(modality, "other"),
                       dataset_type=f"genzoo/{reference}", dataset_name=reference,
                       metric_type=key, metric_name=key, metric_value=value,
                       metric_args=settings or None)
            for key, value in figures.items()]


def card_task(modality: str, capabilities: Iterable[str]) -> tuple[str | None, list[str]]:
    """``(pipeline_tag, tags)`` of a model that makes ``modality`` and can be asked for
    ``capabilities`` (its condition options, ``interpolate`` ...). The pipeline tag names
    the main task: a ``prompt`` condition makes text-to-image (or -audio); a class-conditional
    image model gets none (the Hub has no such task, and "unconditional" would be wrong) but
    the ``image-generation`` and ``class-conditional`` tags. Secondary conditions only add
    tags (``init``: image-to-image, ``mask``: inpainting)."""
    caps = list(capabilities)
    tags = [CAPABILITY_TAGS[c] for c in caps if c in CAPABILITY_TAGS]
    if "prompt" in caps and modality in PROMPT_TASKS:
        return PROMPT_TASKS[modality], tags
    if modality == "image" and "label" in caps:
        return None, ["image-generation", *tags]
    return PIPELINE_TAGS.get(modality, "feature-extraction"), tags


def card_data(model, info: dict[str, Any]):
    """The ``ModelCardData`` of ``model`` from ``info`` (a registry card's fields or a
    finetune's provenance: name, license, tags, metrics, base_model, datasets).

    ``pipeline_tag`` and task tags come from the model's capabilities (``card_task``); the
    family's ``card_fields`` (a class attribute: ``{"pipeline_tag": ..., "tags": [...]}``)
    and then ``info``'s own ``pipeline_tag`` win over them."""
    from huggingface_hub import ModelCardData
    name = info.get("name") or model.arch
    fields = dict(getattr(model, "card_fields", None) or {})
    pipeline_tag, task_tags = card_task(model.modality, getattr(model, "capabilities", ()))
    for own in (fields, info):  # the family knows its task best (None: no pipeline_tag)
        if "pipeline_tag" in own:
            pipeline_tag = own["pipeline_tag"]
    tags = list(dict.fromkeys(["genzoo", model.family, *task_tags, *fields.get("tags", []),
                               *info.get("tags", [])]))
    options = model.options() if hasattr(model, "options") else {}
    results = eval_results(name, info.get("metrics") or {}, model.modality, options,
                           task=pipeline_tag)
    return ModelCardData(library_name="genzoo", license=info.get("license"), tags=tags,
                         pipeline_tag=pipeline_tag,
                         base_model=info.get("base_model"), datasets=info.get("datasets"),
                         model_name=name, eval_results=results or None)


def render(model, info: dict[str, Any]) -> str:
    """README.md text: the card data as YAML front matter, then a short description and usage."""
    data = card_data(model, info)
    title = info.get("name") or model.arch
    body = info.get("summary") or f"A {model.family} model ({model.arch}) saved by genzoo."
    if model.modality == "text":
        call = 'samples = model.sample(3, prompt="Hello", seed=0)\nprint(samples.texts)'
    else:
        call = 'samples = model.sample(16, seed=0)\nsamples.save("samples.png")'
    usage = f"```python\nimport genzoo\nmodel = genzoo.load(\"PATH_OR_REPO\")\n{call}\n```\n"
    lines = [f"- family: {model.family}", f"- arch: {model.arch}",
             f"- parameters: {model.num_parameters():,}"]
    if info.get("base_model"):
        lines.append(f"- finetuned from: {info['base_model']}")
    return (f"---\n{data.to_yaml()}\n---\n\n# {title}\n\n{body}\n\n" + "\n".join(lines)
            + f"\n\n## Usage\n\n{usage}")


def read_card_data(readme: Path) -> dict[str, Any]:
    """The front matter of a README.md as a dict ({} when it has none)."""
    from huggingface_hub import ModelCard
    if not readme.is_file():
        return {}
    return ModelCard.load(readme, ignore_metadata_errors=True).data.to_dict()


def write_metrics(readme: Path, metrics: dict[str, Any], name: str, modality: str,
                  options: Iterable[str] = ()) -> None:
    """Merge ``metrics`` into a README.md's ``model-index`` (a figure measured again replaces
    the old one), keeping the rest of the card; written atomically."""
    from huggingface_hub import ModelCard, ModelCardData

    from genzoo.fsutil import atomic_write_text
    card = ModelCard.load(readme, ignore_metadata_errors=True) if readme.is_file() \
        else ModelCard("---\nlibrary_name: genzoo\n---\n")
    data: ModelCardData = card.data
    new = eval_results(name, metrics, modality, options, task=data.pipeline_tag)
    fresh = {(r.metric_type, r.dataset_type) for r in new}
    kept = [r for r in (data.eval_results or []) if (r.metric_type, r.dataset_type) not in fresh]
    data.eval_results = kept + new or None
    data.model_name = data.model_name or name
    if data.library_name is None:
        data.library_name = "genzoo"
    atomic_write_text(readme, f"---\n{data.to_yaml()}\n---\n{card.text}")


__all__ = ["split_metrics", "eval_results", "card_task", "card_data", "render", "read_card_data",
           "write_metrics", "SETTING_KEYS", "PIPELINE_TAGS", "CAPABILITY_TAGS"]
