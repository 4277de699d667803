r"""A language model seen as a game policy, so exact solvers can measure it.

`LLMPolicy` implements the policy protocol of `spkit.games.policies`
(``action_probabilities(state)``, ``sample_action(state, rng)``), so
``nash_conv(game, LLMPolicy(model, tok))`` is the exact exploitability of the model on Kuhn
Poker (12 information sets -> 12 prompts).

Two views of the same model:

* ``mode="direct"``: the prompt ends with ``Move: \boxed{`` (see `spkit.games.prompts`).
  π(a | s) = p(a + "}" | prompt) / Σ_{b legal} p(b + "}" | prompt) — an exact distribution,
  renormalised over legal actions. ``legal_mass`` (the unnormalised sum) says how much of the
  model's probability went to legal answers at all. ``sample_action`` samples this
  distribution, so a direct-mode policy never plays an invalid move.
* ``mode="reasoning"``: N completions are sampled (``spkit.generation.Sampler``), each parsed
  with `parse_action`; π is the empirical distribution over the valid answers, with the
  invalid rate and Wilson 95% intervals alongside (``last_stats``). If every sample is invalid
  the distribution falls back to uniform (and ``last_stats.invalid_rate`` is 1), because a
  solver needs *some* distribution; ``sample_action`` returns the parsed move or an
  `InvalidMove`, which rollouts count.

Context: a prompt (plus its answer) longer than the model's positions is never scored past the
trained context: ``table`` / ``action_probabilities`` raise a one-line `SpkitError`, and
``sample_action`` returns an `InvalidMove` ("context overflow") that matches count.

Free-text moves (Who-is-the-Spy clues) cannot be enumerated, so in either mode they are
sampled from the prompt and validated by the game.

Sampling is seeded: ``action_probabilities`` derives its seed from (``seed``, prompt text), so
the same model, state and seed give the same distribution.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import torch

from spkit.errors import SpkitError
from spkit.games.base import InvalidMove, State
from spkit.games.policies import Policy, wilson_interval
from spkit.games.prompts import ANSWER_PREFIX, format_prompt, is_free_text, parse_action
from spkit.models import inference_model


@dataclass
class SampleStats:
    """What N reasoning samples at one state produced."""

    n: int
    counts: dict[str, int]  # legal action -> number of samples that chose it
    n_invalid: int
    invalid_reasons: dict[str, int] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)

    @property
    def invalid_rate(self) -> float:
        return self.n_invalid / max(self.n, 1)

    def invalid_interval(self) -> tuple[float, float]:
        """Wilson 95% interval of the invalid-answer rate."""
        return wilson_interval(self.n_invalid, self.n)

    def action_interval(self, action: str) -> tuple[float, float]:
        """Wilson 95% interval of π(action) among the valid samples."""
        return wilson_interval(self.counts.get(action, 0), self.n - self.n_invalid)


@dataclass
class PolicyTable:
    """A policy at several states: `probs[i]` over state i's legal moves; `legal_mass[i]` the share
    of the model's probability (direct) or of its samples (reasoning) that answered legally;
    `counts[i]` the legal answers sampled per move (reasoning mode only, for bootstrap intervals)."""

    probs: list[dict[str, float]]
    legal_mass: list[float]
    counts: list[dict[str, int]] | None


def direct_answers(tokenizer, state: State) -> tuple[list[int], list[list[int]]]:
    """Token ids of `state`'s direct-mode prompt and of each legal answer ``action}``, in
    `legal_actions()` order: what the model's exact direct-mode policy is read from."""
    prompt = tokenizer(format_prompt(state, state.current_player(), "direct"))["input_ids"]
    return prompt, [tokenizer(a + "}", add_special_tokens=False)["input_ids"] for a in state.legal_actions()]


def gradient_similarity(model, tokenizer, states: list[State]) -> torch.Tensor:
    """Cosine similarity between the parameter gradients of each state's direct-mode preference
    log p(last legal move) − log p(first legal move) (for Kuhn Poker: aggressive vs passive), (n, n).

    Why: a gradient step that raises a move at state I moves state J by the dot product of their
    gradients. At cosine ≈ 1 the network *cannot* move I and J apart, whatever the reward says,
    so an RL run can only reach policies where they are tied (lesson 02 measures both)."""
    from spkit.logprobs import shared_prefix_logprobs

    grads = []
    for s in states:
        pid, comps = direct_answers(tokenizer, s)
        lp = shared_prefix_logprobs(model, [pid, pid], [comps[0], comps[-1]])
        model.zero_grad(set_to_none=True)
        (lp[1].sum() - lp[0].sum()).backward()
        grads.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                               for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    g = torch.nn.functional.normalize(torch.stack(grads), dim=1)
    return g @ g.T


def _stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "replace")).digest()
    return int.from_bytes(digest[:8], "little") >> 2


class LLMPolicy(Policy):
    """A causal LM as a game policy (see the module docstring for the two modes)."""

    def __init__(
        self,
        model,
        tokenizer,
        mode: str = "direct",
        n_samples: int = 16,
        temperature: float = 1.0,
        max_new_tokens: int = 96,
        seed: int = 0,
        sampler=None,
    ) -> None:
        if mode not in ("direct", "reasoning"):
            raise SpkitError(f"LLMPolicy mode must be 'direct' or 'reasoning', got {mode!r}")
        if n_samples < 1:
            raise SpkitError(f"n_samples must be >= 1, got {n_samples}")
        self.model, self.tokenizer, self.mode = model, tokenizer, mode
        self.n_samples, self.temperature = n_samples, temperature
        self.max_new_tokens, self.seed = max_new_tokens, seed
        self._sampler = sampler
        self.last_stats: SampleStats | None = None
        self.legal_mass: float | None = None  # direct mode: Σ p(a + "}") over legal a
        self.last_completion: str | None = None

    # ---- plumbing --------------------------------------------------------------------------
    @property
    def sampler(self):
        if self._sampler is None:
            from spkit.generation import Sampler

            self._sampler = Sampler(self.model, self.tokenizer)
        return self._sampler

    def prompt(self, state: State) -> str:
        return format_prompt(state, state.current_player(), self.mode)

    def _params(self):
        from spkit.sampling import SamplingParams

        # Direct mode only needs the rest of one box; reasoning needs room to think.
        if self.mode == "direct":
            return SamplingParams(
                max_new_tokens=24, temperature=self.temperature, stop=("}",), include_stop=True
            )
        # Reasoning: stop where a rollout turn stops, at the brace closing the box (depth counted),
        # so the table measures the policy the rollouts play.
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                              stop_after_box=True)

    def _as_answer(self, text: str) -> str:
        # A direct completion continues "\boxed{", so re-attach it before parsing.
        return ANSWER_PREFIX + text if self.mode == "direct" else text

    # ---- protocol --------------------------------------------------------------------------
    def action_probabilities(self, state: State) -> dict[str, float]:
        legal = state.legal_actions()
        if not legal:
            raise SpkitError("action_probabilities called at a terminal or chance node")
        if self.mode == "direct" and not is_free_text(legal):
            return self._direct(state, legal)
        return self._sampled(state, legal)

    def context_problem(self, state: State) -> str | None:
        """Why `state`'s prompt does not fit the model's positions (None if it does)."""
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if not limit:
            return None
        if self.mode == "direct" and not is_free_text(state.legal_actions()):
            pid, answers = direct_answers(self.tokenizer, state)
            need = len(pid) + max(len(a) for a in answers)
        else:
            need = len(self.tokenizer(self.prompt(state))["input_ids"]) + self._params().max_new_tokens
        return None if need <= limit else f"context overflow: {need} tokens > the model's {limit} positions"

    def sample_action(self, state: State, rng: random.Random) -> str | InvalidMove:
        legal = state.legal_actions()
        problem = self.context_problem(state)
        if problem:
            return InvalidMove(problem)
        if self.mode == "direct" and not is_free_text(legal):
            return super().sample_action(state, rng)
        completion = self.sampler.generate(
            [self.prompt(state)], self._params(), seed=rng.getrandbits(62)
        )[0]
        self.last_completion = completion.text
        return parse_action(self._as_answer(completion.text), legal, state=state)

    # ---- the two views ---------------------------------------------------------------------
    def _direct(self, state: State, legal: list[str]) -> dict[str, float]:
        t = self.table([state])
        self.legal_mass = t.legal_mass[0]
        return t.probs[0]

    def table(self, states: list[State]) -> PolicyTable:
        """The policy at many states at once: one batched forward (direct mode; the shared rules
        paragraph is run once) or one batched sampling call (reasoning mode). Each row is
        renormalised over the legal moves; a reasoning-mode row with no legal answer is uniform."""
        if self.mode == "direct":
            return self._direct_table(states)
        prompts = [self.prompt(s) for s in states]
        outs = self.sampler.generate([p for p in prompts for _ in range(self.n_samples)], self._params(),
                                     seed=_stable_seed(self.seed, self.mode, *prompts))
        counts = []
        for j, s in enumerate(states):
            valid, _ = self._tally([o.text for o in outs[j * self.n_samples: (j + 1) * self.n_samples]], s)
            counts.append({a: valid.get(a, 0) for a in s.legal_actions()})
        probs = [{a: x / sum(c.values()) if sum(c.values()) else 1 / len(c) for a, x in c.items()} for c in counts]
        return PolicyTable(probs, [sum(c.values()) / self.n_samples for c in counts], counts)

    def _direct_table(self, states: list[State]) -> PolicyTable:
        from spkit.logprobs import shared_prefix_logprobs

        P, C, owner = [], [], []
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None) or 1 << 62
        for j, s in enumerate(states):
            pid, answers = direct_answers(self.tokenizer, s)
            if len(pid) + max(len(a) for a in answers) > limit:
                raise SpkitError(f"a direct-mode prompt of {len(pid)} tokens (+ answer) exceeds the model's "
                                 f"{limit} positions; it would be scored past the trained context")
            P += [pid] * len(answers)
            C += answers
            owner += [j] * len(answers)
        with torch.no_grad():
            lps = torch.tensor([float(x.sum()) for x in shared_prefix_logprobs(inference_model(self.model), P, C)], dtype=torch.float64)
        probs, mass = [], []
        for j, s in enumerate(states):
            lp = lps[[i for i, o in enumerate(owner) if o == j]]  # softmax over legal answers, stable
            probs.append(dict(zip(s.legal_actions(), torch.softmax(lp, 0).tolist(), strict=True)))
            mass.append(float(torch.logsumexp(lp, 0).exp()))
        return PolicyTable(probs, mass, None)

    def _tally(self, texts: list[str], state: State) -> tuple[dict[str, int], dict[str, int]]:
        """Parse sampled answers at `state`: (count per valid move, count per invalid reason)."""
        counts: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for text in texts:
            parsed = parse_action(self._as_answer(text), state.legal_actions(), state=state)
            if isinstance(parsed, InvalidMove):
                reasons[parsed.reason] = reasons.get(parsed.reason, 0) + 1
            else:
                counts[parsed] = counts.get(parsed, 0) + 1
        return counts, reasons

    def _sampled(self, state: State, legal: list[str]) -> dict[str, float]:
        prompt = self.prompt(state)
        seed = _stable_seed(self.seed, self.mode, prompt)
        outs = self.sampler.generate([prompt] * self.n_samples, self._params(), seed=seed)
        counts, reasons = self._tally([c.text for c in outs], state)
        n_invalid = sum(reasons.values())
        self.last_stats = SampleStats(
            self.n_samples, counts, n_invalid, reasons, [c.text for c in outs]
        )
        valid = self.n_samples - n_invalid
        if valid == 0:
            if is_free_text(legal):
                return {}
            return {a: 1.0 / len(legal) for a in legal}
        if is_free_text(legal):
            return {a: k / valid for a, k in counts.items()}
        return {a: counts.get(a, 0) / valid for a in legal}
