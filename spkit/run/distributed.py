"""Data parallelism with plain `torch.distributed`: no wrapper class, a few functions.

Launch with `torchrun --nproc_per_node N -m spkit train ...`. Every rank holds the whole model and
averages gradients before each optimizer step, so the replicas stay identical: `spkit.run.Run`
does it for the optimizer a trainer gives `run.track` (a pre-step hook), and `clip_grad_norm`
does it before clipping, so the norm clipped is the whole batch's. Rollouts are split across
ranks in one of two ways:

* Each rank has its own rows. SPIRAL plays its games from rank-derived seeds and runs its RAE
  baselines and loss normaliser over the global batch (`gather_objects`, `global_sum`); GRPO (and
  the trainers on its loop) and RFT draw one global batch of problems and sample their `shard` of
  it with the global batch's per-row randomness (`Sampler.generate(row_seeds=...)`), normalising
  the loss by the global batch; the LM preference learners sample their shard, gather the batch
  and differentiate their own rows (`spkit.algos.preference_game.LMPreferenceRun`). 2 ranks ×
  batch B make the update 1 rank × batch 2B makes (tested for each).
* The ranks hold one batch (every other trainer: its data comes from seeds). The run loop runs
  its steps inside `spkit.parallel.split_rollouts`, where every `Sampler.generate` call samples
  this rank's shard of the rows and gathers the batch, and the shared SFT and DPO steps
  (`spkit.rl.verifiable.sft_update`, `spkit.rl.pairs.dpo_update`) differentiate this rank's
  shard of their rows; a trainer's own loss runs on the whole batch on every rank (the same
  gradient on each, averaged). Tested against one process on the same rows.

Rank 0 alone writes files and logs. NCCL on GPUs, gloo on the CPU (the test suite runs two
CPU processes). The rank bookkeeping itself (`world`, `shard`, `global_sum`, ...) is
`spkit.parallel`, which the sampler uses too.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from spkit.parallel import (  # noqa: F401 - re-exported: the trainers import them from here
    active,
    gather_objects,
    global_sum,
    init_distributed,
    rank0_decides,
    shard,
    world,
)
from spkit.run import fsdp


def all_reduce_grads(model: torch.nn.Module) -> None:
    """Average gradients across ranks (call between backward and the optimizer step).

    A parameter without a gradient on this rank (a rank whose shard of the batch was empty, or a
    parameter its data did not reach) takes part with zeros, so every rank makes the same
    collective calls whatever its data."""
    if not active() or fsdp.is_sharded(model):  # FSDP2 reduce-scatters in each backward
        return
    world = dist.get_world_size()
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= world
    model._spkit_grads_averaged = True  # the run loop's pre-step hook does not average them again


def clip_grad_norm(model: torch.nn.Module, max_norm: float) -> float:
    """Average gradients across ranks, then clip their global norm to ``max_norm``; the norm
    before clipping. Clipping each rank's gradient before averaging would clip a different
    vector than one process on the whole batch clips."""
    all_reduce_grads(model)
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))


def average_before_step(model: torch.nn.Module):
    """An optimizer pre-step hook (`Optimizer.register_step_pre_hook`) that averages `model`'s
    gradients across ranks unless the trainer already did since the last step (SPIRAL does, before
    its gradient clipping)."""

    def hook(optimizer, args, kwargs) -> None:
        if not getattr(model, "_spkit_grads_averaged", False):
            all_reduce_grads(model)
        model._spkit_grads_averaged = False

    return hook


class ShardedOptimizerState:
    """ZeRO stage 1 (`--shard-optimizer`): each parameter's optimizer state lives on one rank.

    Adam keeps two tensors per parameter, as large as the model; with N ranks each holds 1/N of
    them. After the ranks' gradients are averaged (and clipped), every rank drops the gradients
    of the parameters it does not own, so its optimizer steps (and keeps state for) only its own
    share; then each owner broadcasts its updated parameters. The weights stay identical on all
    ranks and equal to an unsharded run's (tested). Owners are assigned largest parameter first
    to the least-loaded rank, the same on every rank. A checkpoint holds the whole state
    (`full_state_dict`, gathered on rank 0); a resumed rank keeps only its share."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.rank, size = world()
        load, self.owner = [0] * size, [0] * len(self.params)
        for i in sorted(range(len(self.params)), key=lambda i: (-self.params[i].numel(), i)):
            r = min(range(size), key=lambda r: (load[r], r))
            self.owner[i], load[r] = r, load[r] + self.params[i].numel()
        optimizer.register_step_pre_hook(self._keep_own_gradients)  # after the averaging hook
        optimizer.register_step_post_hook(self._broadcast)

    def _keep_own_gradients(self, optimizer, args, kwargs) -> None:
        for p, r in zip(self.params, self.owner, strict=True):
            if r != self.rank:
                p.grad = None  # the optimizer skips it: no step, no state

    def _broadcast(self, optimizer, args, kwargs) -> None:
        for p, r in zip(self.params, self.owner, strict=True):
            dist.broadcast(p.data, src=r)

    def full_state_dict(self) -> dict | None:
        """The optimizer's whole state dict on rank 0, None on the others (a collective)."""
        sd = self.optimizer.state_dict()
        mine = {i: {k: v.cpu() if torch.is_tensor(v) else v for k, v in st.items()} for i, st in sd["state"].items()}
        parts = gather_objects(mine)
        return None if self.rank else {**sd, "state": {i: st for part in parts for i, st in part.items()}}

    def drop_unowned(self) -> None:
        """After loading a whole state dict (resume): keep only this rank's share."""
        for p, r in zip(self.params, self.owner, strict=True):
            if r != self.rank:
                self.optimizer.state.pop(p, None)
