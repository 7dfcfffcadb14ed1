"""What a bench_lora.py side has imported before it trains (its peak RSS floor): torch,
genzoo and the text family, plus peft (and so transformers) for the LoRA side.

    python benchmarks/peak_rss.py benchmarks/lora_imports.py full|lora
"""
import sys

import genzoo  # noqa: F401
import genzoo_textlm.model  # noqa: F401
import torch  # noqa: F401

if sys.argv[1:] == ["lora"]:
    import peft  # noqa: F401
