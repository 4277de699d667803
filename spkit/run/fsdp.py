"""FSDP2 (`--fsdp`): parameters, gradients and optimizer state sharded across torchrun ranks.

DDP keeps the whole model, its gradients and Adam's two moments on every GPU; FSDP2
(`torch.distributed.fsdp.fully_shard`) keeps 1/N of each per rank and gathers one decoder
block's weights at a time for its forward and backward. spkit shards each decoder block (the
classes a transformers model lists in `_no_split_modules`) and then the whole model, as the
PyTorch FSDP2 tutorial does.

Two things make RL training under FSDP different from pre-training, and this module settles
both:

* Rollouts. Sampling runs many small forwards whose number differs across ranks (games end at
  different turns, stop strings end completions early), and every FSDP forward is a collective
  all ranks must join. So sampling never touches the sharded model: the rank keeps a full copy
  of the weights for inference (`Sharded.inference`, no gradients; what vLLM holds in the
  papers' setups) and `spkit.models.inference_model` hands it to the `Sampler` and to policy
  tables. The copy follows every step of any optimizer over the model's weights and every
  `load_state_dict` of it (`_follow`). Checkpoints, the final model and rank 0's evaluations
  read the copy too (it is the current weights, in plain transformers form), and so does a
  trainer that copies the model (a reference, a value model's backbone).
* The update. Each forward and backward of the sharded model is a collective, so every rank must
  run the same number of them per step. Where ranks hold different rows (GRPO, NFT, RFT's and
  the split-rollout trainers' SFT step, SPIRAL), the micro-batch loops go through `lockstep`,
  which runs `dummy_pass` (a zero loss through the whole model) for the micro-batches a rank
  has fewer than the busiest one; elsewhere every rank runs the same loop on the same batch.

Memory per GPU, by arithmetic: the inference copy (2 bytes per parameter in bf16) plus 1/N of
the weights, gradients and Adam moments (8 bytes per parameter in bf16 with bf16 moments), plus
one block's gathered weights and the activations. Equivalence with DDP is tested on two gloo
processes (`tests/test_scale.py`).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.optim.optimizer import register_optimizer_step_post_hook

from spkit.errors import SpkitError
from spkit.models import SHARDED_ATTR, inference_model, is_sharded
from spkit.parallel import active

__all__ = ["Sharded", "shard", "is_sharded", "refresh", "lockstep", "dummy_pass"]

T = TypeVar("T")


@dataclass
class Sharded:
    """The sharded model's bookkeeping: its full copy for inference and the optimizer it steps."""

    model: torch.nn.Module
    inference: torch.nn.Module
    optimizer: torch.optim.Optimizer | None

    def optimizer_state(self) -> dict | None:
        """The optimizer's whole state, keyed by parameter name, on rank 0 (None on the others;
        a collective)."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        sd = get_optimizer_state_dict(self.model, self.optimizer,
                                      options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return sd if dist.get_rank() == 0 else None

    def load(self, optimizer_state: dict | None) -> None:
        """After the inference copy was loaded from a checkpoint: shard its weights (and the
        optimizer's saved state) into the training model."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        set_model_state_dict(self.model, self.inference.state_dict(), options=StateDictOptions(full_state_dict=True))
        if optimizer_state is not None and self.optimizer is not None:
            set_optimizer_state_dict(self.model, self.optimizer, optimizer_state,
                                     options=StateDictOptions(full_state_dict=True))
        refresh(self.model)


def shard(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> Sharded:
    """Shard `model` in place with FSDP2 (each decoder block, then the root) and point
    `optimizer`'s parameter groups at the sharded parameters (the trainer built it before, on
    the full ones; it must not have stepped yet). Keeps a full copy for inference."""
    done = getattr(model, SHARDED_ATTR, None)
    if done is not None:  # tracked again (a trainer adding state)
        if optimizer is not None and optimizer is not done.optimizer:
            raise SpkitError("--fsdp: the model was sharded with another optimizer; track one optimizer")
        return done
    if not active():
        raise SpkitError("--fsdp shards the model across torchrun ranks; launch with "
                         "torchrun --nproc_per_node N (N >= 2)")
    from torch.distributed.fsdp import fully_shard

    blocks = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in blocks]
    if not layers:
        raise SpkitError(f"--fsdp: {type(model).__name__} names no decoder block class (_no_split_modules)")
    if optimizer is not None and optimizer.state:
        raise SpkitError("--fsdp: the optimizer has already stepped; shard before the first step")
    inference = copy.deepcopy(model).requires_grad_(False).eval()
    names = {id(p): n for n, p in model.named_parameters()}
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    sharded = dict(model.named_parameters())
    if optimizer is not None:
        for group in optimizer.param_groups:
            group["params"] = [sharded[names[id(p)]] for p in group["params"]]
    state = Sharded(model, inference, optimizer)
    object.__setattr__(model, SHARDED_ATTR, state)  # an attribute, not a submodule: the copy stays out of its state
    _follow(model)
    return state


_SHARDED: weakref.WeakValueDictionary[int, torch.nn.Module] = weakref.WeakValueDictionary()  # param id -> model


def _follow(model: torch.nn.Module) -> None:
    """Make the inference copy follow every change of the weights: a step of any optimizer over
    them (the run's, a trainer's fresh Adam per round, SPIRAL's format SFT: a global post-step
    hook) and a `load_state_dict` (a trainer resetting its model)."""
    if not _SHARDED:
        register_optimizer_step_post_hook(_after_step)
    for p in model.parameters():
        _SHARDED[id(p)] = model
    model.register_load_state_dict_post_hook(lambda module, keys: refresh(module))


def _after_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    stepped = {id(m): m for g in optimizer.param_groups for p in g["params"] if (m := _SHARDED.get(id(p)))}
    for model in stepped.values():
        refresh(model)


def refresh(model: torch.nn.Module) -> None:
    """Copy a sharded model's current weights into its inference copy (a collective: each
    sharded tensor is gathered); a no-op for other models. Runs after every optimizer step and
    `load_state_dict` of the model (`_follow`)."""
    if not is_sharded(model):
        return
    with torch.no_grad():
        full = inference_model(model).state_dict()
        for name, value in model.state_dict().items():
            tensor = value.full_tensor() if hasattr(value, "full_tensor") else value
            if name in full:
                full[name].copy_(tensor)


def lockstep(model: torch.nn.Module, microbatches: Sequence[T]) -> Sequence[T]:
    """`microbatches`, this rank's forward+backward passes of one optimizer step, after running
    as many zero-loss passes as it has fewer than the busiest rank (FSDP: every forward and
    backward is a collective). Without FSDP it returns them at once::

        for sl in fsdp.lockstep(model, V.microbatches(n, size)):
            loss(model, sl).backward()
    """
    if not is_sharded(model):
        return microbatches
    t = torch.tensor([len(microbatches)], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    for _ in range(int(t.item()) - len(microbatches)):
        dummy_pass(model)
    return microbatches


def dummy_pass(model: torch.nn.Module) -> None:
    """A forward and backward of zero loss through the whole model: the collectives of one
    micro-batch, and no change to any gradient."""
    dev = next(inference_model(model).parameters()).device
    logits = model(input_ids=torch.zeros(1, 1, dtype=torch.long, device=dev)).logits
    (logits.float().sum() * 0.0).backward()
