r"""SPC — Self-Play Critic: a sneaky generator and a step critic in a zero-sum game.

Chen, Wang, Xu, Liu, Chen, Zhou, Tao, Zhao (2025), "SPC: Evolving Self-Play Critic via
Adversarial Games for LLM Reasoning", arXiv:2504.19162 (code: chen-judge/SPC).

Idea: step-level labels are expensive, but a model can make its own. One role, the *sneaky
generator*, rewrites one correct step of a solution into a subtly wrong one; a rewrite counts only
if it really hurts, i.e. solutions continued from it succeed less often than from the original
step (checked by rollouts). The other role, the *critic*, reads the solution and names the
earliest wrong step (or −1 when every step is right). The game is zero-sum: the critic wins (+1)
when it is right and the generator then loses (−1), and vice versa, so a better critic forces
subtler errors and subtler errors train a sharper critic. Both roles are the same model with
role prompts (as in SPIRAL); the critic's prompt is ProcessBench's, the one `spkit_steps` scores.

Algorithm (one step t = one round: play with the current model, then learn from the games):
  0. Seed stage (`--seed-steps` > 0, before any game; the paper's initial critic, not self-play):
     the paper SFTs its first critic on step-by-step critiques distilled from a stronger model,
     keeping only those whose verdict agrees with PRM800K's human label. spkit has no stronger
     model, so a checker writes the critiques: on train-split `spkit_steps`-style records (dev
     bucket excluded) it redoes each step's arithmetic and compares it with the written result,
        " 27 ok, 11 ok, 33 no. \boxed{2}"            (`steps.recheck_critique`)
     or, with `--seed-critique verdict`, only the verdicts " good, good, no. \boxed{2}",
     and a critique is kept only if its verdict is the record's label (`steps.verified_critique`:
     a miscopied operand computes correctly, so the checker misses it and that record is
     dropped). `--seed-batch` fresh critiques per step, token-mean NLL at `--seed-lr`. These
     verified critiques are then D_0 of the SFT term in Eq. (4).
  1. Solutions: `problems` train-split arithmetic problems of 2-4 steps (the `spkit_steps`
     subsets; dev and held-out problems never appear), their reference chains s_0..s_{n-1}.
  2. Sneaky rewrite: for each problem a step i ~ U{0..n-1}; the generator, prompted with the
     question, the steps before i and the start "a op" of s_i, writes the rest " b' = c'" of
     the step at temperature T; unparsable rewrites and those with the original result are void.
  3. Rollout check: `rollouts` solver continuations (the same model on the arithmetic prompt)
     from s_0..s_{i-1}, s_i and from s_0..s_{i-1}, s'_i; the rewrite is kept iff
        succ(s'_i) < succ(s_i),   succ = share of continuations with the right final answer   # Eq. (1)
     A kept rewrite becomes a ProcessBench record: the chain carried on correctly from c'
     (`steps.replace_step`), label i; its original chain joins as a correct record, label −1,
     so the critic plays as many correct as erroneous records (always "−1" wins half).
  4. Critic: K critiques per record at temperature T; pred = int of the last \boxed{}.
        r_c = +1 if pred = label else −1;    r_g = −mean_K r_c  (kept), −1 (void or not kept)   # Eq. (2)
  5. Update, `ppo_epochs` passes over the round's games, both roles, with the sequence ratio
        ρ = exp(mean_t log π_θ(y_t|x,y_<t) − mean_t log π_old(y_t|x,y_<t))                   # Eq. (3)
        L = −E[min(ρ A, clip(ρ, 1−ε, 1+ε) A)] + λ_SFT · L_SFT(D_0),   A = r, ε = 0.2, λ_SFT = 0.15   # Eq. (4)
     (`--advantage group`: the critic's A = r − mean of its record's K rewards, GRPO's baseline;
     `spkit.rl.losses.ppo_clip_loss` on per-sequence log-probabilities), π_old the model that
     played the round, D_0 the seed stage's verified critiques or, without a seed stage, the
     round-0 records with their game labels as boxed answers.
     The records are balanced (step 3), so with A = ±1 a constant answer earns 0 in expectation
     (−1 on one class, +1 on the other) and any better-than-chance critic earns more: the
     paper's balance is built in. It does not stop a model that starts at "always −1" from
     staying there (it rarely samples the right index, so it rarely sees a +1 on an error).
  6. Every `eval_every` steps: greedy F1 on the held-out `spkit_steps` items, the number
     `spkit eval --tasks spkit_steps` reports (`spkit.rl.critic.evaluate_critic`), with the
     accuracy on erroneous and on correct items and the unparsable share.

Deviations from the paper:
  1. Arithmetic chains with known reference steps replace LLM-generated math solutions, and the
     generator keeps the first operand and operator of the step it rewrites (a 3.3M-parameter
     model cannot be asked to "rewrite this step subtly" in prose; it writes " b' = c'").
  2. The critic sees the whole chain and names the earliest wrong step (ProcessBench's task)
     instead of judging one step given its predecessors; the steps after a sneaky one continue
     correctly from its wrong value, as `spkit_steps`' erroneous items do.
  3. One model plays both roles and one round is one optimiser pass over freshly played games
     (online); the paper fine-tunes two copies offline on a round's games. A void rewrite costs
     the generator −1 (the paper discards it), so the generator learns the format.
  4. The seed critiques come from an arithmetic checker instead of a stronger LLM, and are short
     (ProcessBench's 24 new tokens in `spkit_steps`). The paper always has a seed stage; its
     size (`--seed-steps` × `--seed-batch`) and `--seed-lr` here are spkit's choices, off by
     default so that a plain `spkit train spc` is the game alone. Seed steps count in `--steps`
     and draw no samples. Without a seed stage, D_0 is the round-0 game records labelled by the
     game itself.

Metrics: losses/seed_sft (seed stage), seed/f1, seed/acc_error ... (the critic at the end of the
seed stage, scored like eval/), train/kept (share of rewrites kept), train/void (share void),
train/records (games the critic played), train/critic_win (critic reward > 0, over all
critiques), train/critic_win_error and train/critic_win_correct (on sneaky and on correct records), train/generator_reward, train/succ_correct and train/succ_sneaky (Eq. 1),
train/samples (completions drawn: rewrites, rollouts and critiques), losses/critic,
losses/generator, losses/sft, losses/grad_norm; eval/f1, eval/acc_error, eval/acc_correct,
eval/unparsable, eval/says_minus1, each also per subset (eval/f1/arith_2 ...).

Commands:
  spkit train spc --max-minutes 20 --threads 1 --out runs/spc
  spkit train spc --steps 150 --eval-every 25 --seed 1 --out runs/spc_s1
  spkit train spc --seed-steps 60 --max-samples 1024 --out runs/spc_seeded  # seed stage, then games
  spkit train spc --out runs/spc --steps 300 --resume                   # continue a run
  spkit eval --model runs/spc/final --tasks spkit_steps                 # the same F1
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from spkit.config import param
from spkit.errors import SpkitError
from spkit.rl import critic as C
from spkit.rl import verifiable as V
from spkit.rl.advantages import grpo_advantages
from spkit.rl.losses import masked_mean, ppo_clip_loss, sft_loss
from spkit.run import History
from spkit.run.distributed import clip_grad_norm
from spkit.sampling import Completion, SamplingParams
from spkit.seeding import derive_seed
from spkit.tasks import arithmetic, steps

PAPER = {
    "title": "SPC: Evolving Self-Play Critic via Adversarial Games for LLM Reasoning",
    "arxiv": "2504.19162",
    "citation": "Chen, Wang, Xu, Liu, Chen, Zhou, Tao, Zhao. SPC. arXiv:2504.19162, 2025.",
}

LEVELS = tuple(steps.SUBSETS.values())  # 2, 3, 4 steps: the spkit_steps subsets
SNEAKY_ROLE = "[Sneaky generator] Rewrite the last step so that it looks right but is wrong.\n"


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(V.VerifiableConfig):
    """SPC settings (model, problems, k, temperature ... from `VerifiableConfig`); defaults sized
    for spkit-tiny on a CPU."""

    steps: int = param(150, "rounds (play the games, then update both roles)", ge=0, identity=False)
    problems: int = param(16, "solutions per round (each: one sneaky rewrite, one correct record)", ge=1)
    k: int = param(4, "critiques sampled per record", ge=1)
    rollouts: int = param(4, "solver continuations per checked step (Eq. 1)", ge=1)
    lr: float = param(1e-4, "learning rate (Adam)", gt=0)
    clip_eps: float = param(0.2, "PPO clip ε on the sequence ratio (the paper: 0.8-1.2)", gt=0)
    sft_coef: float = param(0.15, "weight λ_SFT of the SFT term on the round-0 records (the paper: 0.15)", ge=0)
    sft_rounds: int = param(1, "first rounds whose records form D_0 (the paper: round 0 only)", ge=1)
    ppo_epochs: int = param(1, "optimiser passes over each round's games", ge=1)
    seed_steps: int = param(0, "seed stage: SFT steps of the critic on verified critiques of train-split records "
                            "before the first game (the paper's initial critic; not self-play; 0 = off)", ge=0)
    seed_batch: int = param(16, "verified critiques per seed-stage step (each seen once)", ge=1)
    seed_critique: str = param("recheck", "seed critiques: recheck (each step's result redone, then ok/no) | verdict "
                               "(good/no per step only)", choices=("recheck", "verdict"))
    seed_lr: float = param(3e-4, "learning rate of the seed stage (Adam; the games use --lr)", gt=0)
    advantage: str = param("reward", "critic advantage: reward (A = ±1, the paper) | group (reward minus the mean "
                           "of the record's K critiques)", choices=("reward", "group"))
    train_generator: bool = param(True, "also update the sneaky generator (off: a fixed generator)")
    micro_batch: int = param(32, "rows per forward/backward (gradient accumulation)", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)
    eval_split: str = param("heldout", "what --eval-every scores: heldout (the spkit_steps items) | dev (100 "
                            "dev-split records per subset, where settings are chosen)", choices=("heldout", "dev"),
                            identity=False)


# ---- 2. Sneaky rewrite ---------------------------------------------------------------------------
Step = tuple[int, str, int, int]
_REWRITE = re.compile(r"^\s*(\d+)\s*=\s*(\d+)\s*$")


def solver_prefix(question: str, chain: Sequence[Step]) -> str:
    """The arithmetic prompt followed by the steps so far, each on its own line (as the model
    writes answers: `arithmetic.document`)."""
    return arithmetic.prompt(question) + " " + "".join(f"{a} {op} {b} = {c}\n" for a, op, b, c in chain)


def sneaky_prompt(question: str, chain: Sequence[Step], at: int) -> str:
    """The generator's role prompt: the question, the steps before `at`, then the start "a op"
    of step `at`; the generator writes " b' = c'"."""
    a, op, _, _ = chain[at]
    return SNEAKY_ROLE + solver_prefix(question, chain[:at]) + f"{a} {op}"


def parse_rewrite(original: Step, text: str) -> Step | None:
    """The rewritten step from the generator's " b' = c'", or None (void) when unparsable or when
    its result equals the original's (an unchanged or equivalent step is no error)."""
    m = _REWRITE.match(text)
    if not m:
        return None
    a, op, _, c = original
    b2, c2 = int(m[1]), int(m[2])
    return None if c2 == c else (a, op, b2, c2)


# ---- 3. Rollout check ----------------------------------------------------------------------------
def success_rates(outs: Sequence[Completion], golds: Sequence[str], rollouts: int) -> list[float]:
    """Eq. (1)'s succ per checked prefix: the share of its `rollouts` consecutive continuations
    whose strict final answer (prefix + continuation) is right."""
    ok = [float(arithmetic.is_correct(o.prompt.split("\nAnswer:", 1)[1] + o.text, g))
          for o, g in zip(outs, [g for g in golds for _ in range(rollouts)], strict=True)]
    return [sum(ok[i:i + rollouts]) / rollouts for i in range(0, len(ok), rollouts)]


def game_record(question: str, chain: Sequence[Step], at: int | None, step: Step | None, rid: str) -> dict:
    """A ProcessBench record: the correct chain (label −1) or, with a kept rewrite at `at`, the
    chain carried on from it (label `at`)."""
    lines = list(chain) if at is None else steps.replace_step(list(chain), at, step)
    return {"id": rid, "generator": "spc-sneaky", "problem": question, "steps": steps.render_steps(lines),
            "final_answer_correct": lines[-1][3] == chain[-1][3], "label": -1 if at is None else at}


# ---- 4. Rewards ----------------------------------------------------------------------------------
def critic_rewards(preds: Sequence[int | None], labels: Sequence[int]) -> torch.Tensor:
    """Eq. (2): +1 where the critic named the label, −1 otherwise (unparsable included)."""
    return torch.tensor([1.0 if p == y else -1.0 for p, y in zip(preds, labels, strict=True)])


def generator_rewards(kept: Sequence[bool], record_of: Sequence[int | None], r_critic: torch.Tensor,
                      k: int) -> torch.Tensor:
    """Eq. (2), zero-sum: a kept rewrite earns −(mean critic reward on its record's K critiques);
    a void or not-kept rewrite −1. `record_of[i]` is rewrite i's record index (None if not kept)."""
    r = r_critic.view(-1, k).mean(dim=1) if r_critic.numel() else r_critic  # (records,)
    return torch.tensor([-r[j].item() if ok and j is not None else -1.0
                         for ok, j in zip(kept, record_of, strict=True)])


# ---- 2-4. One round of the game ------------------------------------------------------------------
@dataclass
class Games:
    """One round: per problem the rewritten step `at`, the rewrite (None = void), Eq. (1)'s
    success rates and whether it was kept; the balanced records and the critiques of each (K
    consecutive rows per record) with both roles' rewards (Eq. 2)."""

    problems: list[dict]
    at: list[int]
    rewrites: list[Completion]  # the generator's completions, one per problem
    steps: list[Step | None]
    succ_correct: list[float | None]  # None: void rewrite, nothing checked
    succ_sneaky: list[float | None]
    kept: list[bool]
    rollouts: list[Completion]
    records: list[dict]
    critiques: list[Completion]
    preds: list[int | None]
    critic_rewards: torch.Tensor  # (records · K,)
    generator_rewards: torch.Tensor  # (problems,)

    def metrics(self, k: int) -> dict[str, float]:
        err = torch.tensor([r["label"] != -1 for r in self.records for _ in range(k)], dtype=torch.bool)
        co = [x for x in self.succ_correct if x is not None]
        sn = [x for x in self.succ_sneaky if x is not None]
        r_c = self.critic_rewards
        return {"train/kept": sum(self.kept) / len(self.kept), "train/void": sum(s is None for s in self.steps)
                / len(self.steps), "train/records": float(len(self.records)),
                "train/critic_win": _share(r_c > 0), "train/critic_win_error": _share(r_c[err] > 0),
                "train/critic_win_correct": _share(r_c[~err] > 0),
                "train/generator_reward": self.generator_rewards.mean().item(),
                "train/succ_correct": sum(co) / len(co) if co else float("nan"),
                "train/succ_sneaky": sum(sn) / len(sn) if sn else float("nan")}


def play_round(sampler, problems: Sequence[dict], cfg: Config, seed: int, tag: str = "") -> Games:
    """Steps 2-4 on `problems` with the sampler's current model: rewrite, check, critique, reward."""
    chains = [steps.parse_steps(p["answer"]) for p in problems]
    rng = random.Random(derive_seed(seed, "where"))
    at = [rng.randrange(len(c)) for c in chains]
    gen_params = SamplingParams(max_new_tokens=12, temperature=cfg.temperature, stop=("\n",))
    gens = sampler.generate([sneaky_prompt(p["question"], c, i) for p, c, i in zip(problems, chains, at, strict=True)],
                            gen_params, seed=derive_seed(seed, "sneaky"))  # 2
    rewrites = [parse_rewrite(c[i], g.text) for c, i, g in zip(chains, at, gens, strict=True)]
    live = [j for j, s in enumerate(rewrites) if s is not None]
    prefixes = [solver_prefix(problems[j]["question"], [*chains[j][:at[j]], s])
                for j in live for s in (chains[j][at[j]], rewrites[j])]
    golds = [problems[j]["answer"] for j in live for _ in range(2)]
    solve_params = SamplingParams(max_new_tokens=cfg.max_new_tokens or V.EVAL_MAX_NEW_TOKENS, temperature=1.0,
                                  stop=V.EVAL_STOP)  # the solver: spkit_arith's budget and stop strings
    outs = sampler.generate([p for p in prefixes for _ in range(cfg.rollouts)], solve_params,
                            seed=derive_seed(seed, "rollouts"))  # 3
    succ = success_rates(outs, golds, cfg.rollouts)
    s_cor: list[float | None] = [None] * len(problems)
    s_sn: list[float | None] = [None] * len(problems)
    for n, j in enumerate(live):
        s_cor[j], s_sn[j] = succ[2 * n], succ[2 * n + 1]
    kept = [s_sn[j] is not None and s_sn[j] < s_cor[j] for j in range(len(problems))]  # Eq. (1)
    records, record_of = [], [None] * len(problems)
    for j in (j for j in range(len(problems)) if kept[j]):  # balanced: each kept rewrite and its original
        q = problems[j]["question"]
        records.append(game_record(q, chains[j], None, None, f"{tag}-{j}-correct"))
        record_of[j] = len(records)
        records.append(game_record(q, chains[j], at[j], rewrites[j], f"{tag}-{j}-sneaky"))
    crit_params = SamplingParams(max_new_tokens=C.MAX_NEW_TOKENS, temperature=cfg.temperature, stop=C.STOP)
    crit = sampler.generate([steps.critic_prompt(r) for r in records for _ in range(cfg.k)], crit_params,
                            seed=derive_seed(seed, "critic"))  # 4
    preds = [steps.extract_index(o.text) for o in crit]
    r_c = critic_rewards(preds, [r["label"] for r in records for _ in range(cfg.k)]) if crit else torch.zeros(0)
    r_g = generator_rewards(kept, record_of, r_c, cfg.k)
    return Games(list(problems), at, gens, rewrites, s_cor, s_sn, kept, outs, records, crit, preds, r_c, r_g)


# ---- 0. Seed stage (the paper's initial critic, before any game) --------------------------------
def seed_pool(n: int, seed: int, numbers: bool = True) -> list[tuple[dict, str]]:
    """The seed stage's data (and D_0 when it runs): `n` records of train-split problems (the dev
    bucket excluded, the `spkit_steps` subsets in turn, half erroneous) paired with their
    verified critiques (`steps.verified_critique`: the checker's verdict equals the label; the
    rest are dropped, as the paper keeps only critiques that agree with the human label);
    `numbers` False: verdict-only critiques."""
    per, pairs = n // len(LEVELS) + 8, []
    while len(pairs) < n:
        by_subset = []
        for sub in steps.SUBSETS:
            recs = steps.generate(per, seed, subset=sub, split="train", exclude_dev=True)
            by_subset.append([(r, c) for r in recs if (c := steps.verified_critique(r, numbers)) is not None])
        pairs = [p for group in zip(*by_subset, strict=False) for p in group]
        per *= 2
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def encode_pool(pool: Sequence[tuple[dict, str]], encode: Callable[[str], list[int]], tok
                ) -> tuple[list[list[int]], list[list[int]]]:
    """(critic prompt ids, critique ids + end of text) of each seed pair: the SFT rows."""
    return ([encode(steps.critic_prompt(r)) for r, _ in pool],
            [tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for _, c in pool])


def seed_sft_step(model, optimizer, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                  cfg: Config) -> dict[str, float]:
    """One optimiser step of the seed stage: `V.sft_update` (token-mean NLL of the critiques) at
    --seed-lr, the optimiser's rate set back to --lr for the games afterwards."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.seed_lr
    m = V.sft_update(model, optimizer, prompts, targets, micro_batch=cfg.micro_batch, max_grad_norm=cfg.max_grad_norm)
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr
    return {"losses/seed_sft": m["sft"], "losses/grad_norm": m["grad_norm"]}


# ---- 5. Update -----------------------------------------------------------------------------------
def sequence_ppo_loss(logp: torch.Tensor, mask: torch.Tensor, old_seq_logp: torch.Tensor, adv: torch.Tensor,
                      clip_eps: float) -> torch.Tensor:
    """Eqs. (3)-(4) without the SFT term: PPO-clip on ρ = exp(mean_t log π − mean_t log π_old),
    one ratio per sequence; `logp`, `mask` (B, T), `old_seq_logp` and `adv` (B,)."""
    seq = masked_mean(logp, mask, dim=-1)  # (B,)
    return ppo_clip_loss(seq.unsqueeze(1), old_seq_logp.unsqueeze(1), adv, torch.ones_like(seq).unsqueeze(1),
                         clip_eps=clip_eps)


class SFTData:
    """D_0: (prompt ids, target ids) of the first rounds' records; resumable state."""

    def __init__(self) -> None:
        self.prompts: list[list[int]] = []
        self.targets: list[list[int]] = []

    def state_dict(self) -> dict:
        return {"prompts": self.prompts, "targets": self.targets}

    def load_state_dict(self, state: dict) -> None:
        self.prompts, self.targets = [list(x) for x in state["prompts"]], [list(x) for x in state["targets"]]


def _share(x: torch.Tensor) -> float:
    return x.float().mean().item() if x.numel() else float("nan")


def _mean_old(outs: Sequence[Completion]) -> torch.Tensor:
    return torch.tensor([sum(o.logprobs) / max(len(o.logprobs), 1) for o in outs])


def _update(model, optimizer, rows: list[tuple[Sequence[Completion], torch.Tensor, str]],
            d0: tuple[list[list[int]], list[list[int]]], cfg: Config, seed: int) -> dict[str, float]:
    """`ppo_epochs` optimiser steps of Eq. (4): each role's PPO-clip (mean over its rows, micro-
    batched) plus λ_SFT times the token-mean NLL of D_0 = (prompt ids, target ids)."""
    stats = {f"losses/{name}": 0.0 for _, _, name in rows} | {"losses/sft": 0.0, "losses/grad_norm": 0.0}
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(cfg.ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        for outs, adv, name in rows:
            old = _mean_old(outs)
            for sl in V.microbatches(len(outs), cfg.micro_batch):
                logp, mask = V.padded_logprobs(model, [o.prompt_ids for o in outs[sl]],
                                               [o.token_ids for o in outs[sl]])
                loss = sequence_ppo_loss(logp, mask, old[sl], adv[sl], cfg.clip_eps) * (
                    (sl.stop - sl.start) / len(outs))
                loss.backward()
                stats[f"losses/{name}"] += loss.item() / cfg.ppo_epochs
        if cfg.sft_coef > 0 and d0[0]:
            idx = torch.randperm(len(d0[0]), generator=g)[:cfg.micro_batch].tolist()
            logp, mask = V.padded_logprobs(model, [d0[0][i] for i in idx], [d0[1][i] for i in idx])
            loss = sft_loss(logp, mask)
            (cfg.sft_coef * loss).backward()
            stats["losses/sft"] += loss.item() / cfg.ppo_epochs
        if cfg.max_grad_norm > 0:
            stats["losses/grad_norm"] = clip_grad_norm(model, cfg.max_grad_norm)
        optimizer.step()
    model.eval()
    return stats


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/f1", "eval/acc_error", "eval/acc_correct", "train/critic_win", "train/kept",
             "train/generator_reward"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run SPC; return every logged row. `callback(step, metrics)` after each logged step."""
    if cfg.task != "spkit_arith":
        raise SpkitError("spc rewrites parsed arithmetic steps: use --task spkit_arith")
    sft = SFTData()
    ctx = V.start(cfg, "spc", callback, PLOT_KEYS, lr=cfg.lr, sft_data=sft)
    task, model, tok, optimizer, counter, sampler = (
        ctx.task, ctx.model, ctx.tokenizer, ctx.optimizer, ctx.counter, ctx.sampler)
    pool = encode_pool(seed_pool(cfg.seed_steps * cfg.seed_batch, derive_seed(cfg.seed, "seed pool"),
                                 cfg.seed_critique == "recheck"),
                       sampler.encode, tok) if cfg.seed_steps else ([], [])
    dev = C.dev_records(cfg.eval_limit or C.PER_SUBSET) if cfg.eval_split == "dev" else None

    def evaluate(model, tokenizer, limit, sampler=None, task=None) -> dict[str, float]:  # 6
        return C.evaluate_critic(model, tokenizer, dev, limit=limit, sampler=sampler)

    def seed_step(t: int) -> dict[str, float]:  # 0: rows t·B .. (t+1)·B of the pool, each seen once
        rows = slice(t * cfg.seed_batch, (t + 1) * cfg.seed_batch)
        m = seed_sft_step(model, optimizer, pool[0][rows], pool[1][rows], cfg)
        if t == cfg.seed_steps - 1 and cfg.steps > cfg.seed_steps and ctx.run.rank == 0:
            m |= {f"seed/{k.split('/', 1)[1]}": v for k, v in  # the seed critic, before any game
                  evaluate(model, tok, cfg.eval_limit or None, sampler=sampler).items()}
        return {**m, "train/samples": float(counter.samples)}

    def step(t: int) -> dict[str, float]:
        if t < cfg.seed_steps:
            return seed_step(t)
        t0 = time.perf_counter()
        problems = task.train_problems(cfg.problems, derive_seed(cfg.seed, "problems", t), LEVELS)  # 1
        g = play_round(sampler, problems, cfg, derive_seed(cfg.seed, "round", t), f"{t}")  # 2-4
        counter.samples += len(g.rewrites) + len(g.rollouts) + len(g.critiques)
        t_roll = time.perf_counter() - t0
        if t - cfg.seed_steps < cfg.sft_rounds and not cfg.seed_steps:  # D_0: the first rounds' records,
            # the game's label as the answer (with a seed stage, D_0 is its verified critiques)
            for r in g.records:
                sft.prompts.append(sampler.encode(steps.critic_prompt(r)))
                sft.targets.append(tok(steps.reference_critique(r), add_special_tokens=False)["input_ids"])
        crit, r_c = g.critiques, g.critic_rewards
        a_c = grpo_advantages(r_c, cfg.k, scale=False) if cfg.advantage == "group" and crit else r_c
        rows = ([(crit, a_c, "critic")] if crit else []) + (
            [(g.rewrites, g.generator_rewards, "generator")] if cfg.train_generator else [])
        d0 = pool if cfg.seed_steps else (sft.prompts, sft.targets)
        losses = _update(model, optimizer, rows, d0, cfg, derive_seed(cfg.seed, "sft", t))  # 5
        return {**g.metrics(cfg.k), "train/samples": float(counter.samples), "train/rollout_seconds": t_roll,
                "train/seconds_per_step": time.perf_counter() - t0, **losses}

    return ctx.run.loop(step, ctx.evaluator(cfg, evaluate), V.sample_budget(cfg))


def summary(history: History) -> str:
    """The line `spkit train spc` prints at the end."""
    _, f1 = history.series("eval/f1")
    if not f1:
        return "no evaluation was logged"
    last = history.rows[-1] if history.rows else {}
    ev = [r for r in history.rows if "eval/f1" in r][-1]
    return (f"held-out spkit_steps F1: {100 * f1[0]:.1f}% -> {100 * f1[-1]:.1f}% (erroneous items "
            f"{100 * ev['eval/acc_error']:.1f}%, correct items {100 * ev['eval/acc_correct']:.1f}%) after "
            f"{int(last.get('train/samples', 0))} samples")


__all__ = ["PAPER", "Config", "LEVELS", "solver_prefix", "sneaky_prompt", "parse_rewrite", "success_rates",
           "game_record", "Games", "play_round", "seed_pool", "encode_pool", "seed_sft_step", "critic_rewards", "generator_rewards", "sequence_ppo_loss", "SFTData", "train", "summary"]
