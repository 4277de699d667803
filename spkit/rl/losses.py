"""Policy losses as pure functions of log-probability tensors — written once, used everywhere.

Every loss here takes *log-probabilities*, never models, so the same function serves a finite
"policy" that is just a vector of logits (the preference-game toys of `spkit.algos.sppo` & co.)
and a language model whose sequence log-probability is a sum of token log-probabilities
(`spkit.logprobs.token_logprobs`). Shapes:

- sequence level: `(B,)` — one summed log-probability per completion;
- token level: `(B, T)` with a `(B, T)` 0/1 `mask` of the completion tokens.

Conventions follow the papers' reference code (and TRL where it has the same loss; see
`tests/test_trl_equivalence.py`): losses are *minimised*; `reduction="mean"` averages over the
batch, `"none"` returns the per-example values.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from spkit.errors import SpkitError

Reduction = Literal["mean", "sum", "none"]
Aggregation = Literal["token_mean", "seq_mean", "dr_grpo"]

__all__ = [
    "masked_sum",
    "masked_mean",
    "sequence_logps",
    "dpo_loss",
    "ipo_loss",
    "sppo_loss",
    "inpo_loss",
    "nash_md_loss",
    "aggregate_tokens",
    "ppo_clip_loss",
    "grpo_loss",
    "clamp_pass_grad",
    "nft_loss",
    "sft_loss",
    "reward_weighted_nll",
    "kl_k3",
    "entropy_from_logits",
]


# ---- helpers


def _reduce(x: Tensor, reduction: Reduction, weights: Tensor | None = None) -> Tensor:
    """Mean / sum / none over the batch; with `weights` (an expectation under a known
    distribution) both "mean" and "sum" give Σ w·x."""
    if weights is not None:
        return weights * x if reduction == "none" else (weights * x).sum()
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise SpkitError(f"unknown reduction {reduction!r}; use 'mean', 'sum' or 'none'")


def masked_sum(x: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Sum of `x` over the positions where `mask` is 1 (padding contributes exactly 0)."""
    return (x * mask).sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = -1) -> Tensor:
    """Mean of `x` over masked positions; an all-zero mask gives 0 rather than NaN."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def sequence_logps(token_logps: Tensor, mask: Tensor) -> Tensor:
    """log π(y|x) = Σ_t log π(y_t | x, y_<t): (B, T) token log-probs -> (B,) sequence log-probs."""
    return masked_sum(token_logps, mask, dim=-1)


# ---- pairwise preference losses (sequence level)


def _logratio_margin(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor
) -> Tensor:
    """h = log π(y_w)/π_ref(y_w) − log π(y_l)/π_ref(y_l), the implicit reward margin (B,)."""
    return (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)


def dpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float = 0.1,
    reduction: Reduction = "mean",
) -> Tensor:
    """DPO (sigmoid): −log σ(β·h). Its population minimiser is the KL-regularised optimum of a
    Bradley–Terry reward, which is why DPO inherits BT's blindness to intransitive preferences."""
    h = _logratio_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)  # (B,)
    return _reduce(-F.logsigmoid(beta * h), reduction)


def ipo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float = 0.1,
    reduction: Reduction = "mean",
) -> Tensor:
    """IPO: (h − 1/(2β))². A squared loss regresses the margin to a finite target, so unlike DPO it
    does not push deterministic preferences to infinite log-ratios. (TRL divides each log-ratio
    by the completion length first; pass length-normalised log-probs to get its value.)"""
    h = _logratio_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)  # (B,)
    return _reduce((h - 1.0 / (2.0 * beta)) ** 2, reduction)


def sppo_loss(
    logps: Tensor,
    prev_logps: Tensor,
    win_probs: Tensor,
    eta: float,
    weights: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """SPPO: (log π(y)/π_t(y) − η(P̂(y ≻ π_t) − ½))² per response.

    The regression target is the multiplicative-weights update π_{t+1} ∝ π_t exp(η P(y ≻ π_t))
    with the normaliser approximated by η/2. The paper's pairwise form ½[(ℓ_w − η(p_w−½))² +
    (ℓ_l − η(p_l−½))²] is this loss on the stacked (chosen, rejected) batch with
    `reduction="mean"`. `weights` (B,) turns the mean into an expectation over a known
    distribution (the exact-expectation form of the tabular toys).
    """
    resid = (logps - prev_logps) - eta * (win_probs - 0.5)  # (B,)
    sq = resid**2
    return _reduce(sq, reduction, weights)


def inpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    prev_chosen_logps: Tensor,
    prev_rejected_logps: Tensor,
    eta: float,
    tau: float,
    weights: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """INPO: (log π(y_w)/π(y_l) − ητ·log π_ref(y_w)/π_ref(y_l) − (1−ητ)·log π_t(y_w)/π_t(y_l) − η/2)².

    Pairs come from π_t and are ordered by the preference oracle. Because only *differences* of
    log-probabilities appear, the normaliser cancels and the population minimiser is exactly the
    online-mirror-descent step π_{t+1} ∝ π_t^{1−ητ} π_ref^{ητ} exp(η P(y ≻ π_t))
    (checked in tests/test_preference_learners.py).
    """
    h = (
        (chosen_logps - rejected_logps)
        - eta * tau * (ref_chosen_logps - ref_rejected_logps)
        - (1.0 - eta * tau) * (prev_chosen_logps - prev_rejected_logps)
    )  # (B,)
    sq = (h - eta / 2.0) ** 2
    return _reduce(sq, reduction, weights)


def nash_md_loss(
    token_logps: Tensor,
    ref_token_logps: Tensor,
    mask: Tensor,
    probability: Tensor,
    beta: float = 0.1,
    reduction: Reduction = "mean",
) -> Tensor:
    """Nash-MD policy-gradient loss (TRL form): β·Σ_t sg(log π − log π_ref)·log π − (p − ½)·Σ_t log π.

    y ~ π is compared with y' drawn from the geometric mixture of π and π_ref; p = P(y ≻ y').
    The first term is a REINFORCE estimate of the KL(π‖π_ref) gradient, the second a REINFORCE
    estimate of the preference gradient with ½ as control variate. Shapes: token tensors (B, T),
    `probability` (B,). For a finite response set use T = 1 and an all-ones mask.
    """
    logp = token_logps * mask  # (B, T)
    score = (probability - 0.5) * logp.sum(-1)  # (B,)
    log_ratio = ((token_logps - ref_token_logps) * mask).detach()  # (B, T)
    kl_term = (log_ratio * logp).sum(-1)  # (B,)
    return _reduce(beta * kl_term - score, reduction)


# ---- policy-gradient losses (token level)


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    aggregation: Aggregation = "token_mean",
    max_len: int | None = None,
) -> Tensor:
    """Token-level PPO-clip: −min(r·A, clip(r, 1−ε, 1+ε_high)·A) with r = exp(logp − old_logp).

    With `old_logp = logp.detach()` the ratio is 1 and this is plain REINFORCE (one on-policy
    step, as in SPIRAL and GRPO with one update per batch). `advantages` is (B,) per sequence or
    (B, T) per token. Aggregation over tokens matters for long-vs-short bias:

    - "token_mean": Σ loss / Σ mask over the whole batch (TRL "bnpo"/"dapo"; spkit's SPIRAL
      default at spkit-tiny's scale — not the paper's);
    - "seq_mean": mean over tokens of each sequence, then over sequences (TRL "grpo");
    - "dr_grpo": Σ loss / (B · max_len) (Dr. GRPO; `max_len` defaults to T). With `max_len` the
      generation budget this is oat's ``drgrpo`` critic, the default of SPIRAL's reference code.
    """
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages  # (B, 1) or (B, T)
    ratio = torch.exp(logp - old_logp)  # (B, T)
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)  # (B, T)
    return aggregate_tokens(per_token, mask, aggregation, max_len)


def aggregate_tokens(
    per_token: Tensor, mask: Tensor, aggregation: Aggregation = "token_mean", max_len: int | None = None
) -> Tensor:
    """A (B, T) per-token loss to a scalar, as `ppo_clip_loss` documents for each aggregation."""
    if aggregation == "token_mean":
        return masked_mean(per_token, mask, dim=None)
    if aggregation == "seq_mean":
        return masked_mean(per_token, mask, dim=-1).mean()
    if aggregation == "dr_grpo":
        length = per_token.shape[-1] if max_len is None else max_len
        return (per_token * mask).sum() / (per_token.shape[0] * length)
    raise SpkitError(f"unknown aggregation {aggregation!r}; use 'token_mean', 'seq_mean' or 'dr_grpo'")


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    aggregation: Aggregation = "seq_mean",
    max_len: int | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
) -> Tensor:
    """GRPO's objective (and Dr. GRPO's / DAPO's by the options): per token
    −min(r·A, clip(r, 1−ε, 1+ε_high)·A) + β·k3(π‖π_ref), aggregated once with `aggregation`.

    The KL term is added per token *before* aggregating, as in TRL's `GRPOTrainer`, so it is
    weighted like the policy term ("seq_mean" = GRPO paper, "token_mean" = DAPO's token-level
    mean, "dr_grpo" = Σ / (B · max_len)). Both terms are linear in the aggregation, so this is
    `ppo_clip_loss(...) + β · aggregate_tokens(k3, ...)`.
    """
    loss = ppo_clip_loss(logp, old_logp, advantages, mask, clip_eps, clip_eps_high, aggregation, max_len)
    if ref_logp is not None and kl_coef > 0:
        loss = loss + kl_coef * aggregate_tokens(kl_k3(logp, ref_logp), mask, aggregation, max_len)
    return loss


def clamp_pass_grad(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """The value of `clamp(x, min, max)` with the gradient of `x` (NFT's max_sg): clamping keeps
    a log finite without switching off the gradient where the clamp is active."""
    return x + (torch.clamp(x, min=min, max=max) - x).detach()


def nft_loss(
    logp: Tensor,
    old_logp: Tensor,
    correct: Tensor,
    correct_rate: Tensor,
    mask: Tensor,
    neg_weight: float = 1.0,
    eps_neg: float = 1.0,
    weight_by_wrong_rate: bool = True,
    aggregation: Aggregation = "dr_grpo",
    max_len: int | None = None,
    rate_bounds: tuple[float, float] = (0.02, 0.98),
    max_log_ratio: float = 10.0,
) -> Tensor:
    """Negative-aware Fine-Tuning (Chen et al. 2025), token level; shapes (B, T) and (B,).

    With R = exp(min(log π − log π_old, `max_log_ratio`)) per token and r = the question's
    correct rate clamped to `rate_bounds`:

    - a correct completion (`correct` = 1) costs −log R (maximum likelihood through the ratio);
    - a wrong one costs −log max_sg((1 − r·R)/(1 − r), ε) · `neg_weight`: the likelihood of the
      *implicit negative policy* (π_old − r·π)/(1 − r), the distribution of the wrong answers if
      π were the policy of the right ones; `clamp_pass_grad` keeps the value ≥ ε = `eps_neg`;
    - every token is weighted by w = 1 − r (`weight_by_wrong_rate`, the official `normalize=1`).

    At R = 1 (on-policy) the gradient is exactly Dr. GRPO's with advantage 1[correct] − r
    (tested). `neg_weight = 0` is rejection-sampling fine-tuning on the correct completions.
    """
    lo, hi = rate_bounds
    r = correct_rate.clamp(lo, hi).unsqueeze(-1)  # (B, 1)
    c = correct.float().unsqueeze(-1)  # (B, 1)
    log_ratio = torch.clamp(logp - old_logp, max=max_log_ratio)  # (B, T)
    ratio = torch.exp(log_ratio)
    positive = -log_ratio  # −log R, without exp/log underflow far below π_old
    negative = -torch.log(clamp_pass_grad((1.0 - r * ratio) / (1.0 - r), min=eps_neg))
    per_token = c * positive + (1.0 - c) * neg_weight * negative  # (B, T)
    if weight_by_wrong_rate:
        per_token = per_token * (1.0 - r)
    return aggregate_tokens(per_token, mask, aggregation, max_len)


def sft_loss(token_logps: Tensor, mask: Tensor, aggregation: Aggregation = "token_mean",
             max_len: int | None = None) -> Tensor:
    """Negative log-likelihood of the completion tokens only: the prompt is masked out by
    construction, since `token_logps` (B, T) holds log π(y_t | x, y_<t) of completion tokens.

    "token_mean" (default) equals Hugging Face's causal-LM loss with the prompt labels set to
    −100 (TRL's `completion_only_loss`), i.e. every kept token counts once.
    """
    return aggregate_tokens(-token_logps, mask, aggregation, max_len)


def reward_weighted_nll(token_logps: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
    """Offline REINFORCE on whole segments (EPO's loss, `spkit.algos.epo`): each completion's
    length-normalised log-likelihood weighted by its (already scaled) return w_i,

        L = −(1/B) Σ_i w_i · (1/|y_i|) Σ_t log π(y_i,t | x_i, y_i,<t)

    so a segment's weight does not grow with its length; no baseline, no ratio, no KL. `weights`
    is (B,); a negative weight pushes the segment's likelihood down."""
    return aggregate_tokens(-weights.unsqueeze(-1) * token_logps, mask, "seq_mean")


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(π‖π_ref) on samples from π: exp(d) − d − 1, d = log π_ref − log π.

    Unbiased, always ≥ 0 and low-variance (Schulman's "k3"); this is GRPO's KL penalty.
    """
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Exact entropy of the softmax distribution at every position: (..., V) -> (...)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)
