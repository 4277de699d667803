r"""DPO on (chosen, rejected) pairs of a language model's own responses.

    pairs = [Pair(prompt_ids, chosen_ids, rejected_ids), ...]
    stats = dpo_update(model, optimizer, pairs, beta=0.1, sft_coef=0.1, epochs=2)

The reference log-probabilities are the model's own before the update (the reference is the
current iterate, as in RLHF Workflow's scripts, SPaR and Self-Rewarding's iterations), unless
given. The loss per pair is `spkit.rl.losses.dpo_loss` on summed sequence log-probs, plus
`sft_coef` × the chosen response's token-mean negative log-likelihood (SPaR's SFT term); pairs
are micro-batched with exact row weights, so the gradient does not depend on `micro_batch`.
Where the ranks hold the same pairs (a step of a trainer whose rollouts the run loop splits,
`spkit.parallel.split_rollouts`), each rank differentiates its `shard` of them, weighted by the
whole batch, and the ranks' gradients are averaged before the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from spkit.models import inference_model
from spkit.parallel import global_sum, own_rows, rollouts_split
from spkit.rl.losses import dpo_loss, masked_mean, sequence_logps
from spkit.rl.verifiable import global_batch, microbatches, padded_logprobs
from spkit.run import fsdp
from spkit.run.distributed import all_reduce_grads, clip_grad_norm

__all__ = ["Pair", "sequence_logprobs", "dpo_update", "best_worst"]


@dataclass(frozen=True)
class Pair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def sequence_logprobs(model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                      micro_batch: int = 64) -> torch.Tensor:
    """(B,) log π(y|x) of each completion, without gradient."""
    out = []
    with torch.no_grad():
        for sl in microbatches(len(prompt_ids), micro_batch):
            logp, mask = padded_logprobs(model, prompt_ids[sl], completion_ids[sl])
            out.append(sequence_logps(logp, mask))
    return torch.cat(out) if out else torch.zeros(0)


def dpo_update(model, optimizer, pairs: Sequence[Pair], beta: float = 0.1, sft_coef: float = 0.0,
               epochs: int = 1, micro_batch: int = 32, max_grad_norm: float = 1.0,
               ref: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """`epochs` optimizer steps, each over all `pairs`, of
        L = mean_pairs[ −log σ(β h) + sft_coef · NLL_tokenmean(y_w) ]
    h = log π(y_w)/π_ref(y_w) − log π(y_l)/π_ref(y_l). Returns the mean losses over the epochs,
    the last pre-clip gradient norm and the last epoch's pair accuracy (h > 0) and margin."""
    if not pairs:
        return {}
    n, rows = len(pairs), own_rows(len(pairs))  # this rank's share of the batch's pairs
    P = [list(p.prompt_ids) for p in pairs[rows]]
    W = [list(p.chosen_ids) for p in pairs[rows]]
    L = [list(p.rejected_ids) for p in pairs[rows]]
    model.eval()
    now = inference_model(model)  # π_t; under --fsdp its full copy (no collective forwards)
    ref_w, ref_l = ((ref[0][rows], ref[1][rows]) if ref is not None
                    else (sequence_logprobs(now, P, W), sequence_logprobs(now, P, L)))
    n_share = global_batch(len(P), 0.0)[0]  # the whole batch's pairs / world: the step averages ranks
    stats = {"dpo": 0.0, "sft": 0.0, "grad_norm": 0.0, "pair_acc": 0.0, "margin": 0.0}
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        acc = margin = 0.0
        for sl in fsdp.lockstep(model, microbatches(len(P), micro_batch)):
            m = sl.stop - sl.start
            lw, mw = padded_logprobs(model, P[sl] + P[sl], W[sl] + L[sl])  # chosen rows, then rejected
            seq = sequence_logps(lw, mw)
            cw, cl = seq[:m], seq[m:]
            dpo = dpo_loss(cw, cl, ref_w[sl], ref_l[sl], beta)
            sft = masked_mean(-lw[:m], mw[:m], dim=-1).mean()
            loss = (dpo + sft_coef * sft) * (m / n_share)
            loss.backward()
            stats["dpo"] += dpo.item() * m / n / epochs
            stats["sft"] += sft.item() * m / n / epochs
            h = ((cw - ref_w[sl]) - (cl - ref_l[sl])).detach()
            acc += float((h > 0).sum())
            margin += float(h.sum())
        if max_grad_norm > 0:
            stats["grad_norm"] = clip_grad_norm(model, max_grad_norm)
        else:
            all_reduce_grads(model)  # `model` may be a copy no run loop averages (Self-Rewarding's)
        optimizer.step()
        stats["pair_acc"], stats["margin"] = acc / n, margin / n
    if rollouts_split():  # each rank summed its own pairs: the whole batch's numbers (every rank calls it)
        stats.update({k: global_sum(v) for k, v in stats.items() if k != "grad_norm"})
    model.eval()
    return stats


def best_worst(scores: Sequence[float], k: int) -> list[tuple[int, int] | None]:
    """Per group of K rows: (row of the highest score, row of the lowest), the first of equals;
    None where the best and the worst tie (RLHF Workflow drops ties)."""
    out: list[tuple[int, int] | None] = []
    for g in range(len(scores) // k):
        rows = range(g * k, (g + 1) * k)
        hi = max(rows, key=lambda i: scores[i])
        lo = min(rows, key=lambda i: scores[i])
        out.append((hi, lo) if scores[hi] > scores[lo] else None)
    return out
