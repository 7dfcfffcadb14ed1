"""The on-disk names, spelled once: the files of a model folder, of a LoRA adapter folder and
of a finetune run folder.

Torch-free and import-free, so that any module (the catalog, the CLI, a plugin's cheap entry
point) can name a file without pulling in ``genzoo.modelio`` or the engine. The names are part
of the on-disk contract (Hugging Face and peft read the same folders): never change a value.
"""
from __future__ import annotations

# ---- a model folder (``save_pretrained`` / ``from_pretrained``) ----------------------------
#: The config: the family's settings plus a ``genzoo`` section (arch, family, format version).
CONFIG_NAME = "config.json"
#: The weights, safetensors only (pickle is never read).
WEIGHTS_NAME = "model.safetensors"
#: The model card: YAML front matter (``library_name: genzoo``) and a description.
CARD_NAME = "README.md"

# ---- a LoRA adapter folder (peft's layout, plus the card above) ----------------------------
#: peft's adapter config; a folder holding it is a LoRA adapter.
ADAPTER_CONFIG = "adapter_config.json"
#: The adapter's tensors, keys prefixed as ``PeftModel.save_pretrained`` writes them.
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# ---- a finetune run folder (``--out``) -----------------------------------------------------
#: The folder of training checkpoints (``step-NNNNNNN/`` and the ``latest`` pointer).
CHECKPOINTS_DIR = "checkpoints"
#: The file in ``CHECKPOINTS_DIR`` naming the last complete checkpoint.
LATEST_NAME = "latest"
#: A checkpoint's tensors and its JSON state (step, hyper-parameters, optimizer scalars).
STATE_WEIGHTS = "state.safetensors"
STATE_JSON = "state.json"
#: One JSON line of training metrics per log step, only ever appended to.
METRICS_NAME = "metrics.jsonl"
#: Sample grids written every ``sample_every`` steps, and TensorBoard's logs.
SAMPLES_DIR = "samples"
TENSORBOARD_DIR = "tensorboard"
#: Written into every folder genzoo creates for a run: its files are genzoo's to replace.
RUN_MARKER = ".genzoo-run"
#: The lock file of a run folder (``flock``-ed for the whole run).
RUN_LOCK = ".genzoo-lock"
#: What a run adds beside the model it saves (left out of what defines a model).
RUN_FILES = frozenset({CHECKPOINTS_DIR, SAMPLES_DIR, TENSORBOARD_DIR})
