"""Data parallelism with plain `torch.distributed`: no wrapper class, four functions.

Launch with `torchrun --nproc_per_node N -m spkit train ...`. Every rank holds the whole model and
averages gradients before each optimizer step, so the replicas stay identical: `spkit.run.Run`
does it for the optimizer a trainer gives `run.track` (a pre-step hook); SPIRAL also calls
`all_reduce_grads` itself, before its gradient clipping, and collects rollouts from rank-derived
seeds (the other trainers draw the same problems on every rank). Rank 0 alone writes files and
logs. NCCL on GPUs, gloo on the CPU (the test suite runs two CPU processes).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int]:
    """Join the process group torchrun set up; (rank, world size), (0, 1) without torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" not in os.environ:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_grads(model: torch.nn.Module) -> None:
    """Average gradients across ranks (call between backward and the optimizer step)."""
    if not _active():
        return
    world = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world
    model._spkit_grads_averaged = True  # the run loop's pre-step hook does not average them again


def average_before_step(model: torch.nn.Module):
    """An optimizer pre-step hook (`Optimizer.register_step_pre_hook`) that averages `model`'s
    gradients across ranks unless the trainer already did since the last step (SPIRAL does, before
    its gradient clipping)."""

    def hook(optimizer, args, kwargs) -> None:
        if not getattr(model, "_spkit_grads_averaged", False):
            all_reduce_grads(model)
        model._spkit_grads_averaged = False

    return hook


def rank0_decides(flag: bool) -> bool:
    """Rank 0's value of `flag` on every rank (a time budget must stop all ranks at one step)."""
    if not _active():
        return flag
    t = torch.tensor([float(flag)])
    dist.broadcast(t, src=0)
    return bool(t.item())
