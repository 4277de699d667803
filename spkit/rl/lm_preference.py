"""A preference game played by a language model, with an exact answer.

The tabular preference learners (`spkit.rl.preference_games`) play over n abstract responses.
Here the responses are spkit-tiny's completions of "Tell me about <topic>.", and a completion's
*class* is read off its text (its first sentence):

- 0 "describe": "<Subject> is/feels/looks/seems <adjective> today."
- 1 "feeling":  "I like it a lot." | "It makes me happy." | "People love to see it."
- 2 "routine":  "We go there every week." | "It is good to think about." | "The day ends well."
- 3 "other":    anything else (other sentences, format noise)

(a leading quotation mark is ignored). spkit-tiny produces every class with non-trivial mass at
temperature 1. The preference oracle is a known matrix over the classes (`class_matrix`): an
intransitive 3-cycle describe ≻ feeling ≻ routine ≻ describe with unequal margins, and "other"
loses to all. So the von Neumann winner over classes is computable (`spkit.solvers.matrix`), and
the exploitability of the model's induced class distribution, max_c P(c ≻ q(·|x)) − ½ averaged
over the prompts x, is estimated from samples with a bootstrap interval
(`exploitability_interval`).

A learner sees preferences through a `GroupOracle`: one Bernoulli comparison of two completions
of the same prompt, drawn either from the class matrix ("oracle") or from a `LearnedJudge`, a
small pairwise model trained here from oracle comparisons (the role PairRM plays in the papers).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from spkit.errors import SpkitError
from spkit.models import inference_model
from spkit.solvers.matrix import check_preference_matrix, exploitability

__all__ = [
    "CLASSES",
    "TOPICS",
    "prompt",
    "classify",
    "class_matrix",
    "GroupOracle",
    "LearnedJudge",
    "exploitability_interval",
    "mixture_generate",
]

CLASSES = ("describe", "feeling", "routine", "other")
TOPICS = ("the sea", "a cat", "music", "the moon", "rain", "winter", "a garden", "a river")
FEELING = frozenset({"I like it a lot.", "It makes me happy.", "People love to see it."})
ROUTINE = frozenset({"We go there every week.", "It is good to think about.", "The day ends well."})
_DESCRIBE = re.compile(r"[A-Za-z ]+ (is|feels|looks|seems) [A-Za-z]+ today\.", re.IGNORECASE)


def prompt(topic: str) -> str:
    """The prompt of one topic, in the format spkit-tiny was pretrained on (prompt, newline, answer)."""
    return f"Tell me about {topic}.\n"


def classify(text: str) -> int:
    """The class (index into `CLASSES`) of a completion's first sentence."""
    t = text.strip().lstrip('"').strip()
    t = t[: t.find(".") + 1] if "." in t else t
    if t in FEELING:
        return 1
    if t in ROUTINE:
        return 2
    if _DESCRIBE.fullmatch(t):
        return 0
    return 3


def class_matrix(x: float = 0.2, y: float = 0.3, z: float = 0.4, other: float = 0.4) -> np.ndarray:
    """P[i, j] = P(class i ≻ class j): describe ≻ feeling by ½ + x, feeling ≻ routine by ½ + y,
    routine ≻ describe by ½ + z, and every class beats "other" by ½ + `other`.
    The von Neumann winner is (y, z, x, 0) / (x + y + z): (1/3, 4/9, 2/9, 0) by default, far from
    what spkit-tiny starts at (mostly "describe"), and a Bradley–Terry fit to spkit-tiny's
    comparisons ranks "routine" first, which "feeling" beats by ½ + y."""
    M = np.array([[0.0, x, -z, other], [-x, 0.0, y, other], [z, -y, 0.0, other],
                  [-other, -other, -other, 0.0]])
    return check_preference_matrix(0.5 + M)


# ---- judges


class LearnedJudge(torch.nn.Module):
    """A pairwise preference model over texts (the PairRM role), trained from comparisons.

    Features φ(y): hashed bag of lower-cased words of the first sentence (`dim` buckets) plus
    a bias. P(a ≻ b) = σ(φ(a)ᵀ (A − Aᵀ) φ(b) + wᵀ(φ(a) − φ(b))): the antisymmetric bilinear
    term can represent a preference cycle, which no scalar (Bradley–Terry) reward can; and
    P(a ≻ b) + P(b ≻ a) = 1 by construction.
    """

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.A = torch.nn.Parameter(0.01 * torch.randn(dim + 1, dim + 1, generator=g, dtype=torch.float64))
        self.w = torch.nn.Parameter(torch.zeros(dim + 1, dtype=torch.float64))

    def features(self, texts: list[str]) -> torch.Tensor:
        """(B, dim + 1) normalised hashed bag of words of the first sentence, then a 1."""
        out = torch.zeros(len(texts), self.dim + 1, dtype=torch.float64)
        for b, text in enumerate(texts):
            t = text.strip().lstrip('"').strip()
            t = t[: t.find(".") + 1] if "." in t else t
            words = re.findall(r"[a-z]+", t.lower()) or ["<empty>"]
            for w in words:
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little")
                out[b, h % self.dim] += 1.0 / len(words)
            out[b, self.dim] = 1.0
        return out

    def logits(self, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        S = self.A - self.A.T
        return ((fa @ S) * fb).sum(-1) + (fa - fb) @ self.w

    def prob(self, a: list[str], b: list[str]) -> np.ndarray:
        """P(a_i ≻ b_i) for two equal-length lists of texts."""
        with torch.no_grad():
            return torch.sigmoid(self.logits(self.features(a), self.features(b))).numpy()

    def fit(self, a: list[str], b: list[str], a_wins: np.ndarray, steps: int = 300, lr: float = 0.05,
            weight_decay: float = 1e-4) -> float:
        """Logistic regression on (a, b, 1[a ≻ b]) with Adam; returns the final training loss."""
        fa, fb = self.features(a), self.features(b)
        target = torch.as_tensor(np.asarray(a_wins, dtype=float))
        opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        loss = torch.tensor(0.0)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(self.logits(fa, fb), target)
            loss.backward()
            opt.step()
        return float(loss.detach())


@dataclass
class GroupOracle:
    """Noisy comparisons among the completions of one prompt, indexed 0..K−1: the interface of
    `spkit.rl.preference_games.Oracle`, so `empirical_win_rates` and `ordered_pairs` take it as is.

    `P` (classes × classes) with `classes` answers from the class matrix; a `judge` answers from
    its probability on `texts` instead. Each call is one Bernoulli draw per pair.
    """

    classes: np.ndarray
    rng: np.random.Generator
    P: np.ndarray | None = None
    judge: LearnedJudge | None = None
    texts: list[str] = field(default_factory=list)
    noisy: bool = True
    calls: int = 0

    def prob(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        i, j = np.asarray(i), np.asarray(j)
        if self.judge is not None:
            return self.judge.prob([self.texts[k] for k in i.ravel()], [self.texts[k] for k in j.ravel()]).reshape(i.shape)
        if self.P is None:
            raise SpkitError("GroupOracle needs a class matrix P or a judge")
        return self.P[self.classes[i], self.classes[j]]

    def __call__(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        p = self.prob(i, j)
        self.calls += int(np.size(p))
        return (self.rng.random(np.shape(p)) < p).astype(float)


# ---- measuring a policy


def exploitability_interval(counts: np.ndarray, P: np.ndarray, rng: np.random.Generator,
                            n_boot: int = 200, level: float = 0.9) -> tuple[float, float, float]:
    """Exploitability of the class distributions estimated from `counts` (prompts × classes),
    averaged over prompts: (point estimate, lower, upper) with a multinomial bootstrap
    percentile interval at `level`. The plug-in estimate is biased upward for few samples
    (max over classes of a noisy quantity); the interval shows by how much."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or (counts.sum(1) <= 0).any():
        raise SpkitError("counts must be (prompts, classes) with at least one sample per prompt")

    def value(c: np.ndarray) -> float:
        return float(np.mean([exploitability(P, row / row.sum()) for row in c]))

    point = value(counts)
    boots = []
    for _ in range(n_boot):
        boots.append(value(np.stack([rng.multinomial(int(r.sum()), r / r.sum()) for r in counts])))
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return point, float(lo), float(hi)


# ---- sampling from a geometric mixture of two models (Nash-MD's opponent)


def mixture_generate(model, ref, prompt_ids: list[list[int]], coef: float, max_new_tokens: int,
                     stop_token_ids: set[int], seed: int) -> list[list[int]]:
    """Sample completions token by token from log_softmax((1 − c)·logits_π + c·logits_ref),
    the geometric mixture π^{1−c} π_ref^c of Nash-MD (TRL mixes the logits the same way).

    Plain full-sequence forwards, no cache: meant for short completions. A completion ends at
    a token in `stop_token_ids` (kept) or after `max_new_tokens`.
    """
    g = torch.Generator().manual_seed(seed)
    model = inference_model(model)  # --fsdp: the full copy (sampling's forwards are not collectives)
    rows = [list(p) for p in prompt_ids]
    out: list[list[int]] = [[] for _ in rows]
    live = list(range(len(rows)))
    with torch.no_grad():
        for _ in range(max_new_tokens):
            if not live:
                break
            seqs = [rows[b] + out[b] for b in live]
            S = max(len(s) for s in seqs)
            ids = torch.zeros(len(seqs), S, dtype=torch.long)
            mask = torch.zeros(len(seqs), S, dtype=torch.long)
            for r, s in enumerate(seqs):
                ids[r, : len(s)] = torch.tensor(s)
                mask[r, : len(s)] = 1
            last = torch.tensor([len(s) - 1 for s in seqs])
            lp = model(input_ids=ids, attention_mask=mask).logits[torch.arange(len(seqs)), last].float()
            lr_ = ref(input_ids=ids, attention_mask=mask).logits[torch.arange(len(seqs)), last].float()
            probs = torch.softmax((1.0 - coef) * lp + coef * lr_, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=g).squeeze(1).tolist()
            still = []
            for b, tok in zip(live, nxt, strict=True):
                out[b].append(tok)
                if tok not in stop_token_ids:
                    still.append(b)
            live = still
    return out
