"""Advantage estimators: group-relative (GRPO, RLOO) and SPIRAL's role-conditioned EMA baseline.

A baseline lowers the variance of a REINFORCE gradient without biasing it as long as it does not
depend on the sample it is subtracted from. GRPO uses the group mean (and rescales by the group
std), RLOO the leave-one-out mean, SPIRAL's RAE a running mean per (game, role) — in zero-sum
self-play one role can be structurally favoured (Kuhn Poker's second player wins 1/18 per hand),
and a shared baseline would then keep pushing one role's policy in the same direction.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import torch
from torch import Tensor

from spkit.errors import SpkitError

__all__ = ["grpo_advantages", "rloo_advantages", "RoleBaseline"]


def _grouped(rewards: Tensor, group_size: int) -> Tensor:
    if group_size < 1 or rewards.numel() % group_size:
        raise SpkitError(
            f"{rewards.numel()} rewards do not split into groups of {group_size}; "
            "lay rewards out as consecutive groups of equal size"
        )
    return rewards.reshape(-1, group_size)  # (G, K)


def grpo_advantages(
    rewards: Tensor, group_size: int, eps: float = 1e-4, scale: bool = True
) -> Tensor:
    """A_i = (r_i − mean_group) / (std_group + eps), std with Bessel's correction (as TRL).

    `rewards` (G·K,) holds G consecutive groups of K completions of one prompt. `scale=False`
    keeps only the mean subtraction (Dr. GRPO). A group of one has std undefined -> treated as 0.
    """
    r = _grouped(rewards.float(), group_size)  # (G, K)
    adv = r - r.mean(dim=1, keepdim=True)
    if scale:
        std = r.std(dim=1, keepdim=True, unbiased=True) if group_size > 1 else torch.zeros_like(r)
        adv = adv / (std + eps)
    return adv.reshape(-1)


def rloo_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """A_i = r_i − mean_{j≠i} r_j (leave-one-out baseline): unbiased because r_i is excluded."""
    if group_size < 2:
        raise SpkitError("RLOO needs at least 2 samples per group (group_size >= 2)")
    r = _grouped(rewards.float(), group_size)  # (G, K)
    loo_mean = (r.sum(dim=1, keepdim=True) - r) / (group_size - 1)
    return (r - loo_mean).reshape(-1)


class RoleBaseline:
    """SPIRAL's Role-conditioned Advantage Estimation: one EMA baseline b[key] per (game, role).

    For each return R of key k, in order: A = R − b[k] (read *before* the update), then
    b[k] ← α·b[k] + (1 − α)·R. Baselines start at 0. `state_dict()` / `load_state_dict()`
    make a resumed run produce exactly the numbers of a straight run.
    """

    def __init__(self, alpha: float = 0.95) -> None:
        if not 0.0 <= alpha < 1.0:
            raise SpkitError(f"RoleBaseline alpha must be in [0, 1), got {alpha}")
        self.alpha = alpha
        self.values: dict[str, float] = {}

    @staticmethod
    def _key(key: Hashable) -> str:
        # Tuples like ("kuhn_poker", 0) become "kuhn_poker/0" so the state is plain JSON.
        return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)

    def value(self, key: Hashable) -> float:
        """Current baseline of `key` (0 before any return was seen)."""
        return self.values.get(self._key(key), 0.0)

    def update(self, key: Hashable, reward: float) -> float:
        """Return the advantage of `reward` under the current baseline, then move the baseline."""
        k = self._key(key)
        b = self.values.get(k, 0.0)
        advantage = float(reward) - b
        self.values[k] = self.alpha * b + (1.0 - self.alpha) * float(reward)
        return advantage

    def advantages(self, keys: Iterable[Hashable], rewards: Iterable[float]) -> list[float]:
        """Sequential `update` over a batch (order matters: each return moves the baseline)."""
        return [self.update(k, r) for k, r in zip(keys, rewards, strict=True)]

    def state_dict(self) -> dict:
        return {"alpha": self.alpha, "values": dict(self.values)}

    def load_state_dict(self, state: dict) -> None:
        try:
            self.alpha = float(state["alpha"])
            self.values = {str(k): float(v) for k, v in state["values"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SpkitError(f"corrupt RoleBaseline state ({e}); expected {{'alpha', 'values'}}") from e
