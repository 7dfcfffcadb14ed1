"""diffusers' own pipeline as the oracle of the parity tests: the scheduler that matches a
genzoo sampler, and the per-sample generators genzoo gives, so outputs agree to 1e-4."""
from __future__ import annotations

import json
from pathlib import Path

import torch

#: genzoo's sampler -> the diffusers scheduler class that computes the same steps
SCHEDULERS = {"ddim": "DDIMScheduler", "dpmsolver++": "DPMSolverMultistepScheduler",
              "euler": "EulerDiscreteScheduler", "euler-a": "EulerAncestralDiscreteScheduler"}


def oracle(pipe, folder: Path, sampler: str, n: int, **kwargs) -> torch.Tensor:
    """What diffusers' ``pipe`` (loaded from ``folder``) makes with the scheduler matching
    ``sampler``, given the generators genzoo gives samples 0..n-1 of seed 0: its first
    output (``images`` of an image pipeline, ``audios`` of an audio one), as tensors."""
    import diffusers
    from genzoo.seeding import sample_generators
    # from the repository's own scheduler config: a config round-tripped through another
    # scheduler class gains that class's defaults (DDIM's "leading" spacing)
    base = json.loads((Path(folder) / "scheduler" / "scheduler_config.json").read_text())
    pipe.scheduler = getattr(diffusers, SCHEDULERS[sampler]).from_config(base)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        return pipe(generator=sample_generators(0, n), output_type="pt", **kwargs)[0]
