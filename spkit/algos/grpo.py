r"""GRPO — group-relative policy optimisation on a verifiable reward, with Dr. GRPO and DAPO as options.

Shao, Wang, Zhu, Xu, Song, Bi, Zhang, Zhang, Li, Wu, Guo (2024), "DeepSeekMath: Pushing the
Limits of Mathematical Reasoning in Open Language Models", arXiv:2402.03300 (GRPO).
Liu, Chen, Li, Pang, Du, Lee, Lin (2025), "Understanding R1-Zero-Like Training: A Critical
Perspective", arXiv:2503.20783 (Dr. GRPO). Yu et al. (2025), "DAPO: An Open-Source LLM
Reinforcement Learning System at Scale", arXiv:2503.14476 (DAPO).

Idea: PPO without a value network. For each problem sample a group of K answers; an answer's
advantage is its reward relative to the group's (mean-centred, in GRPO also divided by the
group's std), the same for every token of the answer; then PPO's clipped surrogate raises the
probability of answers that beat their group. Dr. GRPO removes the two length/difficulty biases
(the std scaling, and the per-sequence length normalisation: divide by a constant instead);
DAPO clips the ratio asymmetrically (a higher upper bound keeps low-probability tokens
explorable), averages over tokens rather than sequences, and refills the batch with groups
that carry a signal (dynamic sampling: all-correct and all-wrong groups have zero advantage).

Algorithm (one step t):
  1. Rollout: K completions y_1..y_K ~ π_old(·|x) for each of `problems` train-split problems.
     `--dynamic-sampling` (DAPO): keep only groups with 0 < Σ r < K, and draw more problems
     (at most `max_rounds` rounds) until `problems` such groups are collected.        # Eq. (DS)
  2. Reward: r_i = 1 if the strict `#### n` answer is right, else 0.
  3. Â_i = (r_i − mean_j r_j) / (std_j r_j + 1e-4)        (--scale-rewards, GRPO)       # Eq. (A)
     Â_i =  r_i − mean_j r_j                               (--no-scale-rewards, Dr. GRPO)
  4. For `ppo_epochs` passes (one optimizer step each) minimise, per token,
        ℓ_{i,t} = −min(ρ_{i,t} Â_i, clip(ρ_{i,t}, 1 − ε_low, 1 + ε_high) Â_i) + β·k3_{i,t},
        ρ_{i,t} = π_θ(y_{i,t} | x, y_{i,<t}) / π_old(y_{i,t} | x, y_{i,<t}),
        both at the rollout temperature T (softmax(logits / T), as TRL computes them),
        k3 = π_ref/π_θ − log(π_ref/π_θ) − 1   (β = `kl_coef`, π_ref = the initial model) # Eq. (PPO)
     aggregated as `aggregation`:
        seq_mean   (1/G) Σ_i (1/|y_i|) Σ_t ℓ_{i,t}       — GRPO
        token_mean (1/Σ_i |y_i|) Σ_i Σ_t ℓ_{i,t}        — DAPO (token-level)
        dr_grpo    (1/(G·L)) Σ_i Σ_t ℓ_{i,t}, L = the completion budget — Dr. GRPO
     (`spkit.rl.losses.grpo_loss`, equal to TRL's `GRPOTrainer` loss on identical inputs).
  5. Every `eval_every` steps: greedy held-out accuracy, the `spkit eval --tasks spkit_arith`
     number, against the completions drawn so far.
The run itself (seeds, budget, checkpoints, resume, logs, plots, final/) is `spkit.run.Run`.

Presets (`--preset`, flags beside it override): grpo (std scaling, seq_mean, β = 0.04 as in
DeepSeekMath), dr_grpo (no std scaling, dr_grpo aggregation, β = 0), dapo (std scaling,
token_mean, ε_low = 0.2, ε_high = 0.28, dynamic sampling, β = 0). The defaults without a preset
are GRPO's advantages and aggregation without the KL term (TRL's default β = 0).

Deviations from the papers:
  1. A 3.3M-parameter model (spkit-tiny) on generated arithmetic problems in GSM8K's format, a
     few hundred steps on a CPU, instead of 7B-32B models on math benchmarks.
  2. One process samples and updates the same weights, so π_old is exactly the sampling policy
     (ratios start at 1); `ppo_epochs` > 1 reuses the batch as GRPO's μ inner iterations.
  3. DAPO's overlong-reward shaping is not used: completions end at the spkit_arith stop
     strings or after `max_new_tokens`, and an unfinished answer simply scores 0.
  4. Dynamic sampling gives up after `max_rounds` rounds and trains on the groups it has
     (logged as train/groups), where DAPO keeps sampling.

Metrics: train/reward (mean over all groups drawn this step), train/solved_all, train/solved_none
(shares of groups), train/groups (groups trained on), train/samples (completions drawn so far),
train/completion_len, train/rollout_seconds; losses/policy, losses/kl, losses/clip_frac,
losses/grad_norm; eval/strict (the headline), eval/flexible, eval/strict/level_<s>.

Commands:
  spkit train grpo --max-minutes 8 --threads 1 --out runs/grpo
  spkit train grpo --preset dr_grpo --max-minutes 8 --out runs/dr_grpo
  spkit train grpo --preset dapo --max-minutes 8 --out runs/dapo
  spkit train grpo --kl-coef 0.04 --ppo-epochs 2 --seed 1 --out runs/grpo_kl
  spkit train grpo --out runs/grpo --steps 400 --resume                     # continue a run
  spkit eval --model runs/grpo/final --tasks spkit_arith                    # the same number
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from spkit.config import param
from spkit.generation import Sampler
from spkit.logprobs import pad_right
from spkit.rl import verifiable as V
from spkit.rl.advantages import grpo_advantages
from spkit.rl.losses import grpo_loss, kl_k3, masked_mean
from spkit.run import History, fsdp
from spkit.run.distributed import clip_grad_norm, global_sum, shard, world
from spkit.sampling import Completion, behaviour_logprobs
from spkit.seeding import derive_seed

PAPER = {
    "title": "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models",
    "arxiv": "2402.03300",
    "citation": "Shao et al. GRPO (DeepSeekMath), arXiv:2402.03300, 2024; Liu et al. Dr. GRPO, "
    "arXiv:2503.20783, 2025; Yu et al. DAPO, arXiv:2503.14476, 2025.",
}
AGGREGATIONS = ("seq_mean", "token_mean", "dr_grpo")


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(V.VerifiableConfig):
    """GRPO settings (model, task, problems, k, temperature ... from `VerifiableConfig`); defaults
    sized for spkit-tiny on a CPU (see the presets for the variants and a real model on GSM8K)."""

    steps: int = param(200, "policy updates (rollout batches)", ge=0, identity=False)
    k: int = param(8, "completions per problem: the group size G", ge=2)
    scale_rewards: bool = param(True, "divide advantages by the group std (GRPO); --no-scale-rewards = Dr. GRPO")
    aggregation: str = param("seq_mean", "token aggregation: seq_mean (GRPO) | token_mean (DAPO) | "
                             "dr_grpo (Σ/(G·L), L = the completion budget)", choices=AGGREGATIONS)
    clip_eps: float = param(0.2, "PPO clip ε (ε_low)", gt=0)
    clip_eps_high: float = param(0.2, "upper clip ε_high (DAPO clip-higher: 0.28)", gt=0)
    dynamic_sampling: bool = param(False, "DAPO: train only on groups with mixed rewards, refilling the batch")
    max_rounds: int = param(4, "dynamic sampling: at most this many rollout rounds per step", ge=1)
    kl_coef: float = param(0.0, "β of the k3 KL penalty to the initial model (GRPO paper: 0.04)", ge=0)
    lr: float = param(2e-5, "learning rate (Adam)", gt=0)
    ppo_epochs: int = param(1, "optimizer steps over each rollout batch (GRPO's μ)", ge=1)
    micro_batch: int = param(64, "completions per forward/backward (gradient accumulation)", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)

    PRESETS = {  # a class constant (no annotation), not a field
        "grpo": lambda: Config(scale_rewards=True, aggregation="seq_mean", kl_coef=0.04),
        "dr_grpo": lambda: Config(scale_rewards=False, aggregation="dr_grpo", kl_coef=0.0),
        "dapo": lambda: Config(scale_rewards=True, aggregation="token_mean", clip_eps=0.2, clip_eps_high=0.28,
                               dynamic_sampling=True, kl_coef=0.0),
        # a real model on GSM8K (DeepSeekMath's GRPO: lr 1e-6, β 0.04; TRL's group of 8):
        # spkit train grpo --preset gsm8k --model PATH --data-dir data/
        "gsm8k": lambda: Config(task="gsm8k", problems=32, k=8, lr=1e-6, kl_coef=0.04, micro_batch=8,
                                eval_every=25),
    }


# ---- 1-2. Rollout and reward (with DAPO's dynamic sampling) ----------------------------------------
@dataclass
class Batch:
    """The groups trained on this step: completions (G·K, grouped) and their rewards (G·K,)."""

    completions: list[Completion]
    rewards: torch.Tensor
    drawn: int  # completions sampled this step (all rounds)
    drawn_rewards: torch.Tensor  # rewards of every group drawn (for train/reward)
    problems: list[dict] = field(default_factory=list)  # (G,) the kept groups' problems, in order


ProblemsFn = Callable[[int, int], list[dict]]  # (n, seed) -> n problems
ScoreFn = Callable[[list[Completion], list[dict], int], torch.Tensor]  # (outs, problems, k) -> (n·k,)


def rollout(sampler: Sampler, cfg: Config, params, seed: int, problems_fn: ProblemsFn | None = None,
            score_fn: ScoreFn | None = None) -> Batch:
    """Steps 1-2: sample and score; with dynamic sampling keep mixed groups (Eq. DS), refilling.

    `cfg` is any config with `problems`, `k`, `dynamic_sampling` and `max_rounds` (NFT, SEC and
    RLSP reuse this). `problems_fn(n, seed)` draws the problems (default: `V.train_problems`,
    all levels; SEC draws them from its curriculum), `score_fn` rewards them (default:
    `V.score`, strict correctness; RLSP adds its exploration bonus).

    Under torchrun `cfg.problems` is per rank: every rank draws the same `problems × world`
    problems and samples its `shard` of them with the whole batch's per-row randomness, so the
    ranks together sample exactly what one process with `problems × world` samples (with dynamic
    sampling each rank refills its own shard until it holds `problems` mixed groups)."""
    problems_fn = problems_fn or V.train_problems
    score_fn = score_fn or V.score
    comps: list[Completion] = []
    rewards: list[torch.Tensor] = []
    kept: list[dict] = []
    drawn: list[torch.Tensor] = []
    for r in range(cfg.max_rounds if cfg.dynamic_sampling else 1):
        every = problems_fn(cfg.problems * world()[1], derive_seed(seed, "problems", r))  # all ranks' batch
        mine = shard(len(every))  # this rank's problems, sampled with the whole batch's row seeds
        problems = every[mine]
        outs = V.sample_groups(sampler, problems, cfg.k, params, derive_seed(seed, "sample", r), mine.start * cfg.k)
        rew = score_fn(outs, problems, cfg.k)  # 2
        drawn.append(rew)
        keep = V.mixed_groups(rew, cfg.k) if cfg.dynamic_sampling else torch.ones(len(problems), dtype=torch.bool)
        for g in keep.nonzero().flatten().tolist():  # Eq. (DS)
            comps += outs[g * cfg.k: (g + 1) * cfg.k]
            rewards.append(rew[g * cfg.k: (g + 1) * cfg.k])
            kept.append(problems[g])
        if len(rewards) >= cfg.problems:
            break
    n = min(len(rewards), cfg.problems)
    return Batch(comps[: n * cfg.k], torch.cat(rewards[:n]) if n else torch.zeros(0),
                 sum(len(d) for d in drawn), torch.cat(drawn), kept[:n])


# ---- 3-4. Advantages and the clipped update ----------------------------------------------------------
def update(model, optimizer, batch: Batch, cfg: Config, ref_model=None,
           max_len: int = V.EVAL_MAX_NEW_TOKENS) -> dict[str, float]:
    """Steps 3-4: Eq. (A), then `ppo_epochs` optimizer steps of Eq. (PPO) over the batch.

    Micro-batches are weighted so their gradients sum to the whole batch's loss exactly:
    token_mean by their share of the tokens, seq_mean and dr_grpo by their share of the rows.
    `max_len` is Dr. GRPO's constant L, the completion budget (`cfg.new_tokens(task)`)."""
    adv = grpo_advantages(batch.rewards, cfg.k, scale=cfg.scale_rewards)  # (G·K,) Eq. (A)
    comps = batch.completions
    P, C = [c.prompt_ids for c in comps], [c.token_ids for c in comps]
    n_rows, n_tok = V.global_batch(len(comps), float(sum(len(c) for c in C)))  # all ranks' counts / world
    ref: dict[int, torch.Tensor] = {}
    if ref_model is not None and cfg.kl_coef > 0:
        with torch.no_grad():
            for sl in V.microbatches(len(comps), cfg.micro_batch):
                ref[sl.start] = V.padded_logprobs(ref_model, P[sl], C[sl], cfg.temperature)[0]
    stats = {"policy": 0.0, "kl": 0.0, "clip_frac": 0.0, "grad_norm": 0.0}
    model.train()
    for _ in range(cfg.ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        for sl in fsdp.lockstep(model, V.microbatches(len(comps), cfg.micro_batch)):
            logp, mask = V.padded_logprobs(model, P[sl], C[sl], cfg.temperature)  # (b, T)
            T = logp.shape[1]
            old = pad_right([behaviour_logprobs(c, cfg.temperature) for c in comps[sl]], T).to(logp.device)  # (b, T)
            a = adv[sl].to(logp.device)  # (b,)
            share = V.microbatch_share(cfg.aggregation, mask, n_rows, n_tok)
            loss = grpo_loss(logp, old, a, mask, cfg.clip_eps, cfg.clip_eps_high, cfg.aggregation,
                             max_len, ref.get(sl.start), cfg.kl_coef) * share  # Eq. (PPO)
            loss.backward()
            with torch.no_grad():
                ratio = torch.exp(logp - old)
                clipped = ((ratio < 1 - cfg.clip_eps) | (ratio > 1 + cfg.clip_eps_high)).float()
                tok_share = float(mask.sum()) / max(n_tok, 1.0)
                stats["clip_frac"] += masked_mean(clipped, mask, None).item() * tok_share / cfg.ppo_epochs
                if sl.start in ref:  # mean KL(π‖π_ref) per token, whatever the aggregation
                    stats["kl"] += masked_mean(kl_k3(logp, ref[sl.start]), mask, None).item() * tok_share / cfg.ppo_epochs
            stats["policy"] += loss.item() / cfg.ppo_epochs
        if cfg.max_grad_norm > 0:
            stats["grad_norm"] = clip_grad_norm(model, cfg.max_grad_norm)
        optimizer.step()
    model.eval()
    return stats


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/strict", "eval/flexible", "train/reward", "train/solved_none", "losses/policy", "losses/kl"]


@dataclass
class Hooks:
    """What a trainer built on GRPO's loop changes (SEC, RLSP): where the problems come from
    (`problems_fn`), how completions are rewarded (`score_fn`), what runs between the rollout
    and the update (`after_rollout(t, batch) -> metrics`: SEC's bandit update, RLSP's logs), and
    the extra objects a checkpoint holds (`state`, each with state_dict/load_state_dict)."""

    problems_fn: ProblemsFn | None = None
    score_fn: ScoreFn | None = None
    after_rollout: Callable[[int, Batch], dict[str, float]] | None = None
    state: dict = field(default_factory=dict)


def rollout_metrics(batch: Batch, k: int, samples: int) -> dict[str, float]:
    """The train/* numbers of one rollout (shared by every trainer on this loop)."""
    groups = batch.drawn_rewards.reshape(-1, k).mean(1)
    n = max(len(batch.completions), 1)
    return {"train/reward": batch.drawn_rewards.mean().item(),
            "train/solved_all": (groups == 1).float().mean().item(),
            "train/solved_none": (groups == 0).float().mean().item(),
            "train/groups": float(len(batch.completions) // k),
            "train/samples": float(samples),
            "train/completion_len": sum(len(c.token_ids) for c in batch.completions) / n}


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None, *, name: str = "grpo",
          hooks: Hooks | None = None, plot_keys: list[str] | None = None) -> History:
    """Run GRPO (or a variant, or a trainer built on it through `hooks`); return every logged
    row. `callback(step, metrics)` per logged step."""
    from spkit.run import model_for

    hooks = hooks or Hooks()
    ctx = V.start(cfg, name, callback, plot_keys or PLOT_KEYS, lr=cfg.lr, **hooks.state)
    task, model, optimizer, counter, sampler, params = (
        ctx.task, ctx.model, ctx.optimizer, ctx.counter, ctx.sampler, ctx.params)
    ref_model = None
    if cfg.kl_coef > 0:
        ref_model, _ = model_for(cfg)
        ref_model.requires_grad_(False)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        batch = rollout(sampler, cfg, params, derive_seed(cfg.seed, "step", t), hooks.problems_fn or task.train_problems,
                        hooks.score_fn)  # 1-2
        counter.samples += int(global_sum(batch.drawn))  # every rank's samples
        t_roll = time.perf_counter() - t0
        extra = hooks.after_rollout(t, batch) if hooks.after_rollout else {}
        losses = (update(model, optimizer, batch, cfg, ref_model, cfg.new_tokens(task))  # 3-4
                  if global_sum(len(batch.completions)) else {})  # every rank steps, or none
        return {**rollout_metrics(batch, cfg.k, counter.samples), **extra,
                "train/rollout_seconds": t_roll, "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    return ctx.run.loop(step, ctx.evaluator(cfg), V.sample_budget(cfg), split_rollouts=False)  # 5


def summary(history: History) -> str:
    """The line `spkit train grpo` prints at the end."""
    return V.summary_line(history)


__all__ = ["PAPER", "Config", "Batch", "Hooks", "rollout", "update", "rollout_metrics", "train", "summary"]
