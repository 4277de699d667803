r"""Self-consuming training with curation: retraining on the curated outputs of the model itself.

Ferbach, Bertrand, Bose, Gidel (2024), "Self-Consuming Generative Models with Curated Data
Provably Optimize Human Preferences", arXiv:2407.09499.

Idea: when a model is retrained on its own samples and someone curates which samples survive
(a user picking one of K images, a filter keeping the ones a reward model likes), the loop is an
optimiser of the curator's reward: with the Luce choice rule below and K → ∞ the next model is
p_{t+1} ∝ p_t · e^{r/τ}, so the expected reward rises every generation — and the distribution
concentrates on the reward's argmax, i.e. diversity collapses, unless real data is mixed in.

Algorithm (one generation t):
  1. Sample K responses y_1..y_K ~ p_t(·|x) for each of `prompts` prompts x.
  2. Curate: keep one response per prompt, y_k with probability
        P(k) = e^{r(x, y_k)/τ} / Σ_j e^{r(x, y_j)/τ}                                    # Eq. (1)
     (the Luce / Bradley–Terry choice rule); r = the curator (`--curator`: "checker" = the share
     of instructions the rule checkers accept; "short" = a style preference, −words/10, that
     ignores the instructions).
  3. Mix: a share `real_fraction` of the fine-tune set is real data (reference responses of fresh
     train prompts, the pretraining distribution: `instructions.reference_response`).
  4. Retrain by maximum likelihood on the kept responses (`verifiable.sft_update`,
     `epochs` optimizer steps):  L(θ) = −(1/Σ|y|) Σ log p_θ(y|x)                          # Eq. (2)
  5. Measure the curator's reward of the samples (it should rise), their diversity — the entropy
     of the distribution of response classes (`spkit.rl.instruct.response_class`: case, title,
     quotes, commas, end phrase, keywords, length bucket) — and the held-out accuracy.

Deviations from the paper:
  1. The paper retrains to convergence on the kept samples (a new model per generation, or a
     fine-tune); here each generation takes `epochs` gradient steps from the current weights.
  2. A 3.3M-parameter model on instruction prompts instead of image generators; the classes
     of step 5 stand in for a density's support.

Metrics: train/reward (curator, all samples), train/kept_reward, train/oracle_pass,
train/class_entropy (bits, all samples), train/classes (distinct classes), train/samples,
losses/sft; eval/prompt_strict, eval/class_entropy (greedy held-out responses).

Commands:
  spkit train self_consuming --steps 12 --threads 1 --out runs/self_consuming
  spkit train self_consuming --curator short --steps 12 --threads 1 --out runs/sc_short
  spkit train self_consuming --real-fraction 0.5 --steps 12 --threads 1 --out runs/sc_real
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spkit.config import param
from spkit.rl import instruct
from spkit.rl.verifiable import sft_update
from spkit.run import History
from spkit.seeding import derive_seed
from spkit.tasks import instructions

PAPER = {
    "title": "Self-Consuming Generative Models with Curated Data Provably Optimize Human Preferences",
    "arxiv": "2407.09499",
    "citation": "Ferbach, Bertrand, Bose, Gidel. NeurIPS 2024, arXiv:2407.09499.",
}

CURATORS = ("checker", "short")


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(instruct.InstructConfig):
    steps: int = param(12, "generations (sample, curate, retrain)", ge=0, identity=False)
    k: int = param(8, "responses per prompt the curator chooses from", ge=1)
    curator: str = param("checker", "checker = share of instructions followed; short = −words/10 (a style "
                         "preference)", choices=CURATORS)
    tau: float = param(0.1, "τ of the Luce choice rule (small = pick the best)", gt=0)
    real_fraction: float = param(0.0, "share of each fine-tune set that is real data (reference responses)",
                                 ge=0, le=1)
    lr: float = param(5e-5, "learning rate (Adam)", gt=0)
    epochs: int = param(2, "optimizer steps over each generation's kept responses", ge=1)
    micro_batch: int = param(64, "responses per forward/backward", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)


# ---- 2. The curator ------------------------------------------------------------------------------
def curator_reward(curator: str, record: dict, text: str) -> float:
    """r(x, y): the checkers' fraction, or a preference for short responses."""
    if curator == "checker":
        v = instruct.checks(record, text)
        return sum(v) / len(v)
    return -len(text.split()) / 10.0


def luce_choice(rewards: list[float], tau: float, g: torch.Generator) -> int:
    """One index drawn with probability softmax(r/τ) (Eq. 1)."""
    p = torch.softmax(torch.tensor(rewards, dtype=torch.float64) / tau, dim=0)
    return int(torch.multinomial(p, 1, generator=g))


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["train/reward", "train/class_entropy", "eval/prompt_strict", "eval/class_entropy"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run the curated self-consuming loop; return every logged row."""
    ctx = instruct.start(cfg, "self_consuming", callback, PLOT_KEYS, lr=cfg.lr)
    eval_recs = instruct.eval_records(cfg)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        recs = instruct.TASK.train_problems(cfg.prompts, derive_seed(cfg.seed, "prompts", t))
        outs = instruct.sample_groups(ctx.sampler, recs, cfg.k, ctx.params, derive_seed(cfg.seed, "sample", t))  # 1
        ctx.counter.samples += len(outs)
        r = [curator_reward(cfg.curator, recs[i // cfg.k], o.text) for i, o in enumerate(outs)]
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, "curate", t))
        kept = [i * cfg.k + luce_choice(r[i * cfg.k:(i + 1) * cfg.k], cfg.tau, g) for i in range(len(recs))]  # 2
        prompt_ids = [outs[i].prompt_ids for i in kept]
        comp_ids = [list(outs[i].token_ids) for i in kept]
        n_real = round(cfg.real_fraction * len(kept) / max(1e-9, 1 - cfg.real_fraction)) if cfg.real_fraction < 1 \
            else len(kept)
        if n_real:  # 3: real data, fresh train prompts with reference responses
            rng = random.Random(derive_seed(cfg.seed, "real", t))
            real = instruct.TASK.train_problems(n_real, derive_seed(cfg.seed, "real_prompts", t))
            if cfg.real_fraction >= 1:
                prompt_ids, comp_ids = [], []
            tok = ctx.tokenizer
            for rec in real:
                prompt_ids.append(ctx.sampler.encode(rec["prompt"]))
                comp_ids.append(tok("\n" + instructions.reference_response(rec, rng) + "\n\n",
                                    add_special_tokens=False)["input_ids"])
        losses = sft_update(ctx.model, ctx.optimizer, prompt_ids, comp_ids, cfg.epochs, cfg.micro_batch,
                            cfg.max_grad_norm)  # 4: Eq. (2)
        texts = [o.text for o in outs]
        return {"train/reward": sum(r) / len(r), "train/kept_reward": sum(r[i] for i in kept) / len(kept),
                "train/oracle_pass": instruct.fractions(recs, texts, cfg.k).eq(1.0).float().mean().item(),
                **instruct.diversity(texts, "train"), "train/samples": float(ctx.counter.samples),
                "train/real": float(n_real), "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    def evaluate(t: int) -> dict[str, float]:  # 5
        m, _, texts = instruct.evaluate(ctx.model, ctx.tokenizer, sampler=ctx.sampler, records=eval_recs)
        return {**m, **instruct.diversity(texts, "eval"), "train/samples": float(ctx.counter.samples)}

    return ctx.run.loop(step, evaluate, instruct.budget(cfg))


def summary(history: History) -> str:
    """The line `spkit train self_consuming` prints at the end."""
    _, ent = history.series("train/class_entropy")
    _, rew = history.series("train/reward")
    tail = (f"; curator reward {rew[0]:.3f} -> {rew[-1]:.3f}, class entropy {ent[0]:.2f} -> {ent[-1]:.2f} bits"
            if ent and rew else "")
    return instruct.summary_line(history) + tail


__all__ = ["PAPER", "CURATORS", "Config", "curator_reward", "luce_choice", "train", "summary"]
