"""Curricula over difficulty categories: SEC's Boltzmann bandit, and the two baselines it is
compared with (uniform random, and a fixed easy-to-hard schedule), behind one interface.

Self-Evolving Curriculum (Chen et al. 2025, arXiv:2505.14970) treats each difficulty category
as an arm of a non-stationary bandit. The reward of an arm at a step is the mean absolute
advantage of that category's samples: a category the policy always or never solves yields
zero advantage (nothing to learn), one it solves about half the time the most (with binary
rewards and std-scaled advantages E|A| ∝ √(p(1 − p))). Every step all arms are updated by TD(0)
toward their reward, unsampled arms toward 0, so a category that stops being chosen decays and
is eventually tried again::

    cur = Curriculum([1, 2, 3, 4], kind="sec", alpha=0.5, tau=0.4)
    arms = cur.sample(16, seed)                     # one arm per prompt, p(c) = softmax(Q/τ)
    cur.update(arm_rewards(advantages, row_arms))   # Q ← (1 − α)Q + α·r for all arms

`state_dict()`/`load_state_dict()` make a resumed run draw exactly what a straight run draws.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch
from torch import Tensor

from spkit.errors import SpkitError

__all__ = ["CURRICULA", "Curriculum", "arm_rewards"]

CURRICULA = ("sec", "random", "easy_to_hard")


def arm_rewards(advantages: Tensor, arms: Sequence[Hashable], all_arms: Sequence[Hashable] | None = None,
                total: Callable[[float], float] = float) -> dict[Hashable, float]:
    """SEC's reward of each arm present: the mean |advantage| of its rows (one arm per row).

    `total` sums a count or a sum over processes (`spkit.run.distributed.global_sum` under
    torchrun, so every rank's bandit sees all ranks' rows and the bandits stay equal); every
    rank then calls it for each of `all_arms`, in that order, whatever rows it holds."""
    if len(arms) != advantages.numel():
        raise SpkitError(f"{advantages.numel()} advantages for {len(arms)} arm labels")
    mags = advantages.abs().tolist()
    out: dict[Hashable, float] = {}
    for a in dict.fromkeys(arms) if all_arms is None else all_arms:
        x = [m for m, r in zip(mags, arms, strict=True) if r == a]
        n = total(len(x))
        if n:
            out[a] = total(sum(x)) / n
    return out


class Curriculum:
    """Chooses a difficulty category for each prompt, and tracks SEC's arm values Q.

    kind "sec":          p(c) = softmax(Q(c)/τ), each prompt draws its own arm;
    kind "random":       p(c) = 1/|arms|;
    kind "easy_to_hard": every prompt of step t gets arm ⌊t / stage_steps⌋ (the last arm after).
    Q is updated the same way whatever the kind (`update`), so the three runs log comparable
    values; only "sec" samples from it.
    """

    def __init__(self, arms: Sequence[Hashable], kind: str = "sec", alpha: float = 0.5, tau: float = 0.4,
                 stage_steps: int = 1) -> None:
        if kind not in CURRICULA:
            raise SpkitError(f"unknown curriculum {kind!r}; use one of {', '.join(CURRICULA)}")
        if not arms or len(set(arms)) != len(arms):
            raise SpkitError(f"a curriculum needs distinct arms, got {list(arms)!r}")
        if not 0.0 < alpha <= 1.0 or tau <= 0 or stage_steps < 1:
            raise SpkitError(f"need 0 < alpha <= 1, tau > 0, stage_steps >= 1 (got {alpha}, {tau}, {stage_steps})")
        self.arms, self.kind, self.alpha, self.tau, self.stage_steps = list(arms), kind, alpha, tau, stage_steps
        self.q = [0.0] * len(self.arms)
        self.t = 0  # updates so far (easy_to_hard's clock)

    def probs(self) -> list[float]:
        """The probability of each arm for the next step's prompts."""
        n = len(self.arms)
        if self.kind == "sec":
            return torch.softmax(torch.tensor(self.q, dtype=torch.float64) / self.tau, 0).tolist()
        if self.kind == "random":
            return [1.0 / n] * n
        stage = min(self.t // self.stage_steps, n - 1)
        return [float(i == stage) for i in range(n)]

    def sample(self, n: int, seed: int) -> list[Hashable]:
        """`n` arms, one per prompt, drawn independently from `probs()` (same seed, same draws)."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.multinomial(torch.tensor(self.probs(), dtype=torch.float64), n, replacement=True, generator=g)
        return [self.arms[i] for i in idx.tolist()]

    def update(self, rewards: dict[Hashable, float]) -> None:
        """TD(0) for every arm: Q ← (1 − α)Q + α·r, with r = 0 for arms not in `rewards`."""
        unknown = set(rewards) - set(self.arms)
        if unknown:
            raise SpkitError(f"rewards for unknown arms {sorted(map(str, unknown))}")
        self.q = [(1 - self.alpha) * q + self.alpha * float(rewards.get(a, 0.0)) for a, q in zip(self.arms, self.q,
                                                                                                   strict=True)]
        self.t += 1

    def state_dict(self) -> dict:
        return {"q": list(self.q), "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        if len(state["q"]) != len(self.arms):
            raise SpkitError(f"checkpoint has {len(state['q'])} arms, this curriculum {len(self.arms)}")
        self.q, self.t = [float(x) for x in state["q"]], int(state["t"])
