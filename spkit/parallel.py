"""Which process am I, and what share of a batch is mine: the few `torch.distributed` calls
every layer of spkit may need, without a wrapper class.

Launch with `torchrun --nproc_per_node N -m spkit train ...`; outside torchrun every function
here is the one-process identity (rank 0 of 1, the whole batch, a sum of one). The training
side of data parallelism (gradient averaging, ZeRO-1, FSDP2) is `spkit.run.distributed`.

Split rollouts. `split_rollouts()` is the scope the run loop opens around each training step of
a trainer whose ranks hold the same batch (most trainers: their data comes from seeds that
do not depend on the rank). Inside it, `spkit.generation.Sampler.generate` samples only this
rank's `shard` of the rows, with the random stream each row has in the whole batch, and every
rank gathers the whole batch back (`split_rows`): N ranks sample 1/N of the rollouts each, and
every rank goes on with the batch one process would have sampled (up to float rounding that
can flip a near-tied token, see `Sampler.generate`). The ranks must ask for the same rows in
the same order; `split_rows` checks a fingerprint of them and stops with one line if a rank
asked for different ones (a trainer drawing its data from the rank-seeded global RNG).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.distributed as dist

from spkit.errors import SpkitError


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


def active() -> bool:
    """True under torchrun with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def shard(n: int) -> slice:
    """This rank's contiguous share of ``n`` items (the first ``n % world`` ranks get one more)."""
    rank, size = world()
    per, extra = divmod(n, size)
    start = rank * per + min(rank, extra)
    return slice(start, start + per + (rank < extra))


def global_sum(x: float) -> float:
    """The sum of ``x`` over ranks (``x`` itself outside torchrun): batch sizes and token counts
    a loss is normalised by, and sample counts a budget is measured in."""
    if not active():
        return float(x)
    t = torch.tensor([float(x)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable, small: returns, class ids, counts), in rank order; ``[obj]``
    outside torchrun. Used where a step needs the whole global batch's few numbers, e.g. a running
    baseline that must see every rank's returns in one order."""
    if not active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def rank0_decides(flag: bool) -> bool:
    """Rank 0's value of `flag` on every rank (a time budget must stop all ranks at one step)."""
    if not active():
        return flag
    t = torch.tensor([float(flag)])
    dist.broadcast(t, src=0)
    return bool(t.item())


# ---- split rollouts ------------------------------------------------------------------------
_SPLIT = [False]


@contextlib.contextmanager
def split_rollouts(on: bool = True) -> Iterator[None]:
    """Within: the ranks hold the same batch, and samplers split its rows (module docstring).
    A no-op outside torchrun. `split_rollouts(False)` turns it off inside (a rank sampling rows
    that are its own already)."""
    before, _SPLIT[0] = _SPLIT[0], on and active()
    try:
        yield
    finally:
        _SPLIT[0] = before


def rollouts_split() -> bool:
    """True inside `split_rollouts()` under torchrun."""
    return _SPLIT[0]


def own_rows(n: int) -> slice:
    """The rows of a batch of `n` this rank computes on: its `shard` inside `split_rollouts()`,
    where every rank holds the same batch; all of them elsewhere."""
    return shard(n) if rollouts_split() else slice(0, n)


def fingerprint(*parts) -> str:
    """A short digest of a request's inputs (their `repr`), to compare across ranks."""
    return hashlib.sha1(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def agree(key: str, value):
    """Rank 0's `value` on every rank, after checking that every rank passed the same `key`
    (a collective: every rank calls it)."""
    keys, values = zip(*gather_objects((key, value)), strict=True)
    if len(set(keys)) > 1:
        raise SpkitError("torchrun: the ranks asked for different rollouts in one training step "
                         f"(request fingerprints {', '.join(keys)}); a trainer whose ranks hold the "
                         "same batch must draw it from seeds, not from the rank-seeded global RNG")
    return values[0]


def split_rows(n: int, work: Callable[[slice], Sequence]) -> list:
    """`work(rows)` for this rank's `shard(n)` of n rows, then every rank's results gathered in
    row order (a collective). A rank whose shard is empty does no work but still gathers."""
    rows = shard(n)
    mine = list(work(rows)) if rows.stop > rows.start else []
    out = [x for part in gather_objects(mine) for x in part]
    if len(out) != n:
        raise SpkitError(f"split_rows: {len(out)} results gathered for {n} rows")
    return out
