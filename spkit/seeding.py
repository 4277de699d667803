"""Seeds, written once. Same seed + same machine (+ same torch thread count) -> same numbers.

Two kinds of randomness run through spkit. Global RNGs (python, numpy, torch) are seeded once per
process by `seed_everything` and saved / restored whole by checkpoints (`rng_state`). Anything
whose result must not depend on batch order or on how many processes share the work — one game,
one sampled row, one evaluation match — takes its own seed from `derive_seed(seed, step, ...)`.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: int | str) -> int:
    """A stable seed for one (step, example, sample, ...): FNV-1a over the parts' text, so it is
    the same in every process and every Python (unlike `hash`)."""
    h = 1469598103934665603
    for part in parts:
        for byte in str(part).encode():
            h = ((h ^ byte) * 1099511628211) % 2**64
        h = ((h ^ 0xFF) * 1099511628211) % 2**64
    return h % 2**31


def rng_state() -> dict[str, Any]:
    """All global RNG states as JSON-able data (numpy's array state as a list)."""
    np_state = np.random.get_state()
    return {
        "python": _lists(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _lists(x: Any) -> Any:
    return [_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x
