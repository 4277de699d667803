"""Notebook widget: watch a bargaining round and the critic's feedback, round by round.

    from spkit.algos import negotiation_feedback as nf
    chains, _ = nf.unroll(agent, "scripted", games=8, rounds=5, seed=0)
    NegotiationRounds(chains)                 # or NegotiationRounds.play("runs/negfb/final", "model")

Pick a chain (one unrolling of up to five rounds) and a round: the messages of that round, its
deal price, what the seller had in its context (earlier prices and the suggestions so far) and
the suggestions the critic wrote after it. Every string a model or a critic produced is
HTML-escaped before it reaches the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as W

from spkit.algos.negotiation_feedback import Chain
from spkit.widgets.boards import esc

__all__ = ["NegotiationRounds", "round_html"]


def round_html(chain: Chain, r: int) -> str:
    """Round `r` (0-based) of `chain` as HTML: context, messages, outcome, feedback (escaped)."""
    rec = chain.rounds[r]
    st = rec.state
    earlier = ", ".join("no deal" if p is None else f"${p}" for p in st.past) or "none"
    given = "; ".join(st.feedback) or "none"
    msgs = "".join(f"<li>{esc(line)}</li>" for line in st.transcript())
    if rec.invalid:
        outcome, colour = "ended by an invalid move (no deal)", "#cf222e"
    elif rec.price is None:
        outcome, colour = "no deal", "#cf222e"
    else:
        outcome, colour = f"deal at ${rec.price} (seller's return ${rec.price - 8})", "#1a7f37"
    after = "".join(f"<li>{esc(line)}</li>" for line in rec.feedback) or "<li><i>none</i></li>"
    return (f"<div><b>Seller's context:</b> earlier rounds {esc(earlier)}; feedback so far: {esc(given)}</div>"
            f"<ol style='margin:4px 0'>{msgs}</ol>"
            f"<div style='color:{colour};font-weight:bold'>{esc(outcome)}</div>"
            f"<div><b>Critic's suggestions after this round:</b><ul style='margin:2px 0'>{after}</ul></div>")


class NegotiationRounds(W.VBox):
    """Chain and round selectors over the result of `negotiation_feedback.unroll`."""

    def __init__(self, chains: Sequence[Chain], title: str = "") -> None:
        if not chains:
            raise ValueError("no chains to show")
        self.chains = list(chains)
        self.chain = W.BoundedIntText(value=0, min=0, max=len(self.chains) - 1, description="chain")
        self.round = W.IntSlider(value=1, min=1, max=max(len(self.chains[0].rounds), 1), description="round")
        self.prices = W.HTML()
        self.view = W.HTML()
        self.chain.observe(lambda _: self._chain_changed(), names="value")
        self.round.observe(lambda _: self.show(), names="value")
        head = [W.HTML(f"<b>{esc(title)}</b>")] if title else []
        super().__init__([*head, W.HBox([self.chain, self.round]), self.prices, self.view])
        self._chain_changed()

    def _chain_changed(self) -> None:
        c = self.chains[self.chain.value]
        self.round.max = max(len(c.rounds), 1)
        self.round.value = min(self.round.value, self.round.max)
        self.prices.value = "prices by round: " + esc(", ".join(
            "invalid" if rec.invalid else "no deal" if rec.price is None else f"${rec.price}" for rec in c.rounds))
        self.show()

    def show(self) -> str:
        """Render the selected round; returns the HTML (what tests read)."""
        c = self.chains[self.chain.value]
        self.view.value = round_html(c, self.round.value - 1) if c.rounds else "<i>no rounds played</i>"
        return self.view.value

    @classmethod
    def play(cls, model: Any = "spkit-tiny", critic: str = "scripted", games: int = 8, rounds: int = 5,
             seed: int = 0, temperature: float = 1.0) -> NegotiationRounds:
        """Load `model` (a name/path or a (model, tokenizer) pair), unroll `games` chains with
        `critic`, and show them."""
        from spkit.algos.negotiation_feedback import unroll
        from spkit.generation import Sampler
        from spkit.models import load_model
        from spkit.rl.selfplay import LMAgent
        from spkit.sampling import SamplingParams

        m, tok = load_model(model) if isinstance(model, str) else model
        agent = LMAgent(Sampler(m, tok), "direct", SamplingParams(max_new_tokens=6, temperature=temperature),
                        learner=False)
        chains, _ = unroll(agent, critic, games, rounds, seed)
        return cls(chains, title=f"critic: {critic}")
