"""A model folder's README.md, written the way the Hub reads it: huggingface_hub's
``ModelCard``/``ModelCardData``, with every measured figure as a ``model-index`` eval result.

So ``huggingface_hub.ModelCard.load(folder).data.eval_results`` lists what ``genzoo eval``
measured, and license, base_model and datasets travel with a model through save, finetune
and push. A figure is a number the evaluation measured; the settings it was measured with
(``n``, ``seed``, the reference set, the sampling options, facts of training) ride along
as each result's ``metric_args``. The card's ``pipeline_tag`` and task tags follow what the
model can do: its modality's ``pipeline_tags`` by its conditions (``card_task``); a family's
own ``card_fields`` win over them. The usage snippet is the modality's (``Modality.usage``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from genzoo.samples import Modality, modality as modality_named

#: Result keys that describe how a figure was measured rather than being one.
SETTING_KEYS = frozenset({"n", "seed", "dtype", "feature", "reference", "reference_n", "data",
                          "sample_rate",  # audio's metadata, which eval reports beside figures
                          "iw_k", "eval_ctx", "eval_windows", "heldout_set", "train_set",
                          "val_chars", "tokens", "chars", "classes_covered_min_share"})
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


def _spec(modality: str | Modality) -> Modality:
    """A registered modality by name (or the ``Modality`` itself)."""
    return modality_named(modality) if isinstance(modality, str) else modality


def unconditional_task(modality: str | Modality) -> str:
    """The task a model of ``modality`` performs given no condition, as the Hub names it
    (``pipeline_tags[""]``), else its ``generation_tag``, else "other": the task of an
    evaluation's figures, which are measured without a condition."""
    spec = _spec(modality)
    return spec.pipeline_tags.get("") or spec.generation_tag or "other"


def eval_results(name: str, metrics: dict[str, Any], modality: str | Modality,
                 options: Iterable[str] = (), task: str | None = None) -> list:
    """``huggingface_hub.EvalResult``s of a flat metrics dict (see ``split_metrics``), for
    the card's ``task`` (default: the modality's unconditional task, which is how the common
    figures are measured)."""
    from huggingface_hub import EvalResult
    figures, settings = split_metrics(metrics, options)
    reference = str(settings.get("reference") or settings.get("data") or "samples")
    return [EvalResult(task_type=task or unconditional_task(modality),
                       dataset_type=f"genzoo/{reference}", dataset_name=reference,
                       metric_type=key, metric_name=key, metric_value=value,
                       metric_args=settings or None)
            for key, value in figures.items()]


def card_task(modality: str | Modality,
              capabilities: Iterable[str]) -> tuple[str | None, list[str]]:
    """``(pipeline_tag, tags)`` of a model that makes ``modality`` (a name or a ``Modality``)
    and can be asked for ``capabilities`` (its condition options, ``interpolate`` ...).

    The pipeline tag names the main task, from the modality's ``pipeline_tags``: the first
    entry whose condition the model takes (``""``: none needed) wins (a ``prompt`` makes
    text-to-image, or text-to-audio). An entry of None means the Hub has no such task (a
    class-conditional image model is not "unconditional"): no pipeline tag then, but the
    modality's ``generation_tag``. Secondary conditions only add tags (``init``:
    image-to-image, ``mask``: inpainting, ``label``: class-conditional)."""
    spec = _spec(modality)
    caps = list(capabilities)
    tags = [CAPABILITY_TAGS[c] for c in caps if c in CAPABILITY_TAGS]
    for condition, tag in spec.pipeline_tags.items():
        if condition == "" or condition in caps:
            if tag is not None:
                return tag, tags
            break
    generation = [spec.generation_tag] if spec.generation_tag else []
    return None, [*generation, *tags]


def card_data(model, info: dict[str, Any]):
    """The ``ModelCardData`` of ``model`` from ``info`` (a registry card's fields or a
    finetune's provenance: name, license, tags, metrics, base_model, datasets).

    ``pipeline_tag`` and task tags come from the model's capabilities (``card_task``); the
    family's ``card_fields`` (a class attribute: ``{"pipeline_tag": ..., "tags": [...]}``)
    and then ``info``'s own ``pipeline_tag`` win over them."""
    from huggingface_hub import ModelCardData
    name = info.get("name") or model.arch
    fields = dict(getattr(model, "card_fields", None) or {})
    spec = model.sample_modality()
    pipeline_tag, task_tags = card_task(spec, getattr(model, "capabilities", ()))
    for own in (fields, info):  # the family knows its task best (None: no pipeline_tag)
        if "pipeline_tag" in own:
            pipeline_tag = own["pipeline_tag"]
    tags = list(dict.fromkeys(["genzoo", model.family, *task_tags, *fields.get("tags", []),
                               *info.get("tags", [])]))
    options = model.options() if hasattr(model, "options") else {}
    results = eval_results(name, info.get("metrics") or {}, spec, options,
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
    call = model.sample_modality().usage  # e.g. samples.save("samples.wav") for audio
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


def write_metrics(readme: Path, metrics: dict[str, Any], name: str, modality: str | Modality,
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
           "write_metrics", "unconditional_task", "SETTING_KEYS", "CAPABILITY_TAGS"]
