r"""`spkit card`: measure what a model can do on spkit's tasks and write its model card.

Every number on the card of the embedded model is produced here, so it can be re-measured:

    spkit card --model assets/models/spkit-tiny --write      # rewrites README.md + card.json

Measured (fixed evaluation seeds, independent of the training seed):
- legal-move rate per game at temperature 1, in reasoning mode (short reasoning then
  `\boxed{move}`) and direct mode (the prompt ends in `\boxed{`), on decision states reached by
  the corpus's demonstration policies;
- Kuhn Poker NashConv of the model's direct-mode policy (exact; 11/12 is uniform random, 0 is
  Nash);
- accuracy on held-out arithmetic (GSM8K format, `#### answer`, greedy) by number of steps;
- prompt-level accuracy on held-out IFEval-format instructions (greedy).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from spkit import corpus
from spkit.games import load_game
from spkit.games.prompts import ANSWER_PREFIX, format_prompt, parse_action
from spkit.generation import Sampler
from spkit.sampling import SamplingParams
from spkit.tasks import arithmetic, instructions

GAMES = ("kuhn_poker", "tictactoe", "negotiation", "spy")
EVAL_SEED = 12345  # evaluation states and problems are the same for every model


def decision_states(game_name: str, n: int, seed: int) -> list:
    """`n` decision states, reached by playing the corpus demonstrators from fresh deals."""
    rng = random.Random(f"card-{game_name}-{seed}")
    game, states = load_game(game_name), []
    while len(states) < n:
        state = game.new_initial_state(seed=rng.randrange(2**31))
        for _ in range(rng.randrange(12)):  # stop at a random depth
            if state.is_terminal():
                break
            move, _ = corpus.DEMONSTRATORS[game_name](state, state.current_player(), rng)
            state.apply_action(move)
        if not state.is_terminal():
            states.append(state)
    return states


def legal_move_rates(sampler: Sampler, game_name: str, n: int, seed: int) -> dict[str, float]:
    """Share of temperature-1 samples that parse to a legal move, per prompt mode."""
    states = decision_states(game_name, n, seed)
    out: dict[str, float] = {}
    for mode, params in (
        ("reasoning", SamplingParams(max_new_tokens=48, temperature=1.0)),
        ("direct", SamplingParams(max_new_tokens=12, temperature=1.0, stop=("}",))),
    ):
        prompts = [format_prompt(s, s.current_player(), mode) for s in states]
        comps = sampler.generate(prompts, params, seed=seed)
        ok = 0
        for s, c in zip(states, comps, strict=True):
            text = c.text if mode == "reasoning" else ANSWER_PREFIX + c.text + "}"
            ok += bool(parse_action(text, s.legal_actions(), s))
        out[mode] = ok / len(states)
        if mode == "reasoning":
            out["reasoning_tokens"] = sum(len(c.token_ids) for c in comps) / len(comps)
    return out


def arithmetic_accuracy(sampler: Sampler, n_per_level: int, levels=(1, 2, 3, 4)) -> dict[int, float]:
    """Greedy strict-match accuracy on held-out problems, by number of steps."""
    acc = {}
    for k in levels:
        recs = arithmetic.generate(n_per_level, seed=EVAL_SEED, steps=k, split="test")
        comps = sampler.generate(
            [arithmetic.prompt(r["question"]) for r in recs],
            SamplingParams(max_new_tokens=24 * k + 16, temperature=0.0, stop=tuple(arithmetic.STOP)),
        )
        acc[k] = sum(arithmetic.is_correct(c.text, r["answer"]) for c, r in zip(comps, recs, strict=True)) / len(recs)
    return acc


def instruction_accuracy(sampler: Sampler, n: int) -> float:
    """Prompt-level strict accuracy (all instructions followed) on held-out records."""
    recs = instructions.generate(n, seed=EVAL_SEED, split="test")
    comps = sampler.generate(
        [r["prompt"] + "\n" for r in recs], SamplingParams(max_new_tokens=96, temperature=0.0)
    )
    return sum(all(instructions.check(r, c.text)) for r, c in zip(recs, comps, strict=True)) / n


def kuhn_nash_conv(model, tokenizer) -> float:
    """Exact NashConv of the model's direct-mode Kuhn Poker policy."""
    from spkit.lm_policy import LLMPolicy
    from spkit.solvers.exploitability import nash_conv

    return nash_conv(load_game("kuhn_poker"), LLMPolicy(model, tokenizer, mode="direct"))


def measure(model, tokenizer, n_states: int = 100, n_arith: int = 50, n_instr: int = 60) -> dict:
    """All card numbers for one model (a few minutes on CPU for spkit-tiny)."""
    sampler = Sampler(model, tokenizer)
    return {
        "legal_move_rate": {g: legal_move_rates(sampler, g, n_states, EVAL_SEED) for g in GAMES},
        "kuhn_nash_conv_direct": kuhn_nash_conv(model, tokenizer),
        "arithmetic_accuracy_by_steps": arithmetic_accuracy(sampler, n_arith),
        "instruction_prompt_accuracy": instruction_accuracy(sampler, n_instr),
        "eval_sizes": {"states_per_game": n_states, "arith_per_level": n_arith, "instructions": n_instr},
    }


def render(name: str, abilities: dict, pretrain: dict | None, vocab: int | None = None) -> str:
    """The model card as markdown. `vocab`: the tokenizer's real size (BPE may learn fewer
    merges than the `vocab_size` it was asked for)."""
    lines = [f"# {name}", "", CARD_INTRO, ""]
    if pretrain:
        c = pretrain["config"]
        lines += [
            "## Training", "",
            f"- Architecture: Llama, {pretrain['params'] / 1e6:.2f}M parameters "
            f"({c['layers']} layers, width {c['hidden']}, {c['heads']} heads, "
            f"vocab {vocab or c['vocab_size']}, context {c['context']}).",
            f"- Corpus: {pretrain['corpus_docs']:,} synthetic documents "
            f"({pretrain['corpus_tokens']:,} tokens) — " + ", ".join(
                f"{k} {v:,}" for k, v in pretrain["corpus_mix"].items()) + ".",
            f"- Steps: {c['steps']} × {c['batch']} rows × {c['seq_len']} tokens "
            f"({pretrain['tokens_seen']:,} tokens seen), AdamW lr {c['lr']} (warmup + cosine), "
            f"seed {c['seed']}; {pretrain['seconds'] / 60:.1f} min wall time with "
            f"{c['threads'] or 'all'} torch thread(s) on the machine that built it.",
            f"- Final training loss (mean of the last 20 steps): {pretrain['final_loss']:.3f}. "
            "Curve: `loss.png`, values: `loss.csv`.", "",
        ]
    lm = abilities["legal_move_rate"]
    lines += [
        "## Measured abilities", "",
        "Legal-move rate at temperature 1 (share of samples that parse to a legal move):", "",
        "| game | reasoning mode | direct mode | mean reasoning tokens |", "|---|---|---|---|",
        *[f"| {g} | {r['reasoning']:.2f} | {r['direct']:.2f} | {r['reasoning_tokens']:.1f} |" for g, r in lm.items()],
        "",
        f"Kuhn Poker NashConv of the direct-mode policy: **{abilities['kuhn_nash_conv_direct']:.3f}** "
        "(uniform random 0.917, Nash equilibrium 0).", "",
        "Held-out arithmetic (GSM8K format, greedy, strict `####` match) by number of steps:", "",
        "| steps | " + " | ".join(str(k) for k in abilities["arithmetic_accuracy_by_steps"]) + " |",
        "|---" * (1 + len(abilities["arithmetic_accuracy_by_steps"])) + "|",
        "| accuracy | " + " | ".join(f"{v:.2f}" for v in abilities["arithmetic_accuracy_by_steps"].values()) + " |",
        "",
        f"Held-out IFEval-format instructions, prompt-level strict accuracy: "
        f"{abilities['instruction_prompt_accuracy']:.2f}.", "",
        f"Sizes: {abilities['eval_sizes']}. Re-measure with `spkit card --model <dir>`.", "",
        CARD_LIMITS,
    ]
    return "\n".join(lines) + "\n"


CARD_INTRO = """\
The embedded default model of spkit: a tiny Llama-architecture causal LM with its own byte-level
BPE tokenizer, small enough to ship in git and to train on a laptop CPU. It knows the *formats*
of spkit's games and tasks (it was pretrained on them) but plays and reasons poorly, so the
lessons can show it learn. Load it without spkit:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("assets/models/spkit-tiny")
tok = AutoTokenizer.from_pretrained("assets/models/spkit-tiny")
```

Regenerate it with `spkit pretrain --seed 0 --export assets/models/spkit-tiny` and re-measure it
with `spkit card --model assets/models/spkit-tiny --write`."""

CARD_LIMITS = """\
## Limitations
A toy for teaching and testing: it has seen only synthetic text in a handful of formats, has
no general language ability, and its game moves imitate a deliberately weak demonstrator."""


# ---- CLI -------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    from spkit.config import add_common_arguments

    add_common_arguments(p)
    p.add_argument("--states", type=int, default=100, help="decision states per game")
    p.add_argument("--arith", type=int, default=50, help="held-out problems per step level")
    p.add_argument("--instructions", type=int, default=60, help="held-out instruction prompts")
    p.add_argument("--write", action="store_true", help="write README.md + card.json into the model dir")


def main(args: argparse.Namespace) -> int:
    from spkit.models import load_model, resolve_model_path

    model, tok = load_model(args.model)
    abilities = measure(model, tok, args.states, args.arith, args.instructions)
    path = Path(resolve_model_path(args.model))
    pre = path / "pretrain.json"
    card = render(path.name, abilities, json.loads(pre.read_text()) if pre.exists() else None,
                  vocab=model.config.vocab_size)
    print(card)
    if args.write:
        (path / "card.json").write_text(json.dumps(abilities, indent=2))
        (path / "README.md").write_text(card)
        print(f"wrote {path / 'README.md'}")
    return 0
