"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for the finetune engine: ``strategy="fsdp"``.

Each rank holds 1/world of every parameter, gradient and optimizer state; a unit's full
parameters exist only while it runs (all-gathered before its forward and backward, freed
after). The units are the model's own choice (``model.fsdp_modules()``, blocks first) or, by
default, every element of every ``nn.ModuleList`` (transformer blocks, UNet stages); the
engine's ``StageRunner`` is the root unit, because its ``forward`` is what training calls, so
its hooks gather the parameters no unit owns (embeddings, heads, norms).

Mixed precision is FSDP2's ``MixedPrecisionPolicy`` (parameters gathered and computed in bf16,
gradients reduced in float32, master weights float32); the engine keeps autocast on as well,
because a family's own float32 tensors meet the bf16 weights inside its forward. Checkpoints
are ``genzoo.engine.sharded_checkpoint``'s; the trainer is ``genzoo.engine.fsdp_trainer``'s.
"""
from __future__ import annotations

import ctypes
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from genzoo.errors import OptionError

if TYPE_CHECKING:
    from genzoo.model import GenerativeModel


def refuse_unsupported(model: GenerativeModel, amp_dtype: torch.dtype | None) -> None:
    """One-line ``OptionError`` for the combinations ``--strategy fsdp`` does not run."""
    if amp_dtype == torch.float16:
        # fp16 needs a loss scaler whose overflow check spans every rank's shard
        raise OptionError("--dtype fp16 with --strategy fsdp is not supported: use --dtype "
                          "bf16 (no loss scaling needed) or fp32")
    if amp_dtype is not None and any(parametrize.is_parametrized(m) for m in model.modules()):
        # a parametrisation (spectral norm) keeps float32 state that meets the bf16 weights
        raise OptionError(f"--dtype {_name(amp_dtype)} with --strategy fsdp is not supported "
                          f"for {model.arch}: its weights are re-parametrised (spectral norm "
                          "or similar); use --dtype fp32")
    if not any(p.requires_grad for p in model.parameters()):
        raise OptionError(f"{model.arch}: no trainable parameters to shard with --strategy fsdp")


#: glibc's M_MMAP_THRESHOLD, and the value set for FSDP on CPU (see ``return_freed_buffers``).
_M_MMAP_THRESHOLD, _MMAP_FROM = -3, 1 << 20


def return_freed_buffers(device: torch.device) -> None:
    """On CPU with glibc: serve allocations of 1 MiB and more by mmap, so freeing them
    returns the memory to the OS. glibc's default threshold rises to 32 MiB after the first
    large free, and then each unit's all-gathered parameters and gradients (tens of MB, freed
    after every use) stay in the heap: measured on the 86M GPT on 2 ranks, peak RSS per rank
    2.67 GB instead of 1.59 GB, no better than DDP. Process-wide; no-op elsewhere."""
    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM)
    except (OSError, AttributeError):  # not glibc (musl): nothing to tune
        pass


def _name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def ensure_process_group(world: int, device: torch.device) -> bool:
    """FSDP2 needs a process group even in one process: outside torchrun start a 1-process
    group on an in-memory store (no port, no file). NCCL for a CUDA device, else gloo. True
    when this call started one (the caller destroys it at the end)."""
    import torch.distributed as dist
    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if world > 1:
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return True


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The submodules to shard one by one, innermost first: ``model.fsdp_modules()`` when the
    model declares it, else each element of every ``nn.ModuleList`` that holds parameters
    (an element that is itself a list is not a unit; its own elements are)."""
    declared = getattr(model, "fsdp_modules", None)
    if callable(declared):
        return [m for m in declared() if any(True for _ in m.parameters())]
    depth = {id(m): name.count(".") + 1 if name else 0 for name, m in model.named_modules()}
    # a nested list or dict has no forward of its own to hook: its elements are units
    units = [child for m in model.modules() if isinstance(m, nn.ModuleList) for child in m
             if not isinstance(child, (nn.ModuleList, nn.ModuleDict))
             and any(True for _ in child.parameters())]
    # fully_shard wants children before their parents (nested ModuleLists: UNet stages)
    return sorted(dict.fromkeys(units), key=lambda m: -depth[id(m)])


def shard(runner: nn.Module, model: nn.Module, amp_dtype: torch.dtype | None,
          device: torch.device) -> None:
    """Apply ``fully_shard`` to each unit of ``model``, then to ``runner`` (the root)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    import torch.distributed as dist
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # compute in amp_dtype, but reduce gradients in float32 (bf16 sums lose bits fast)
    policy = MixedPrecisionPolicy(param_dtype=amp_dtype, reduce_dtype=torch.float32)
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(runner, mesh=mesh, mp_policy=policy)


def set_gradient_sync(runner: nn.Module, sync: bool) -> None:
    """FSDP's ``no_sync``: skip the gradient reduce-scatter on all but the last micro-batch."""
    runner.set_requires_gradient_sync(sync)  # type: ignore[operator]


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s whole state as CPU tensors on rank 0 (every rank must call it; the others
    get an empty dict): the sharded parameters are gathered one at a time."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))
    # a tied weight is gathered once per name: tie the copies again, so that the folder
    # stores it as an unsharded run's does (save_pretrained drops the tied duplicate)
    first: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if name in full:
            full[name] = full[first.setdefault(id(p), name)]
    return full


@contextmanager
def plain_state(model: nn.Module, full: dict[str, torch.Tensor]) -> Iterator[None]:
    """For the block, ``model.state_dict()`` returns ``full`` (the gathered tensors): so the
    model's own ``save_pretrained`` writes the ordinary folder (rank 0 only)."""
    model.state_dict = lambda *a, **k: dict(full)  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.state_dict


def destroy_process_group() -> None:
    """End the process group ``ensure_process_group`` started."""
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["refuse_unsupported", "return_freed_buffers", "ensure_process_group",
           "shard_units", "shard",
           "set_gradient_sync", "full_state_dict", "plain_state",
           "destroy_process_group"]
