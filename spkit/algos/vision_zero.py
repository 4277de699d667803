r"""Vision-Zero — self-play "Who is the Spy" with Iterative Self-Play Policy Optimization, as text.

Wang et al. (2025), "Vision-Zero: Scalable VLM Self-Improvement via Strategic Gamified
Self-Play", arXiv:2509.25541. Here the text variant: word pairs (``spkit.games.spy``) instead
of images that differ in a few details.

Idea: four copies of one model play Who-is-the-Spy. Three civilians share a word, the spy has
a similar one, nobody knows their role. In the clue phase everyone describes their word; in the
decision phase everyone votes for the spy. The two phases train different skills with
different rewards: clues are scored by the *votes they attract* (a self-play reward — the spy
wants to blend in, a civilian wants the spy found and itself not suspected), votes by whether
they name the spy (a verifiable reward). Iterative-SPO alternates the two kinds of training, so
each phase's skill is trained against the other's current level.

Equations (numbered here). v_j = votes player j receives, averaged over
the G votes each other player samples at the end of the clue phase; C = the n_c = 3 civilians:
  (1) Ψ = v_spy − (1/n_c) Σ_{c∈C} v_c                              — how exposed the spy is
  (2) r_spy = −β Ψ;   r_c = β Ψ / n_c − λ (v_c − v̄_C),  v̄_C = mean_{c∈C} v_c   (β = λ = 0.1)
  (3) A = r − b[role],  b[role] ← α b[role] + (1 − α) r     — role baselines (spy / civilian)
  (4) r_vote = 0.3 (2·fmt − 1) + 1.2·acc + 0.99·Φ,  Φ = 1[acc > 0] — a civilian's vote
      (fmt = 1 if the vote is a legal player index, acc = 1 if it names the spy)
  (5) A_vote = (r − mean_G r) / (std_G r + ε)                — GRPO over one voter's G votes
  (6) L(θ) = −(1/Σ|y|) Σ_turns Σ_t min(ρ_t A, clip(ρ_t, 1 − ε, 1 + ε) A)   — PPO-clip, ε = 0.2

Algorithm (one step t):
  1. Deal `games` games from the *training* word pairs (`split_pairs("train")`).
  2. Clue phase: all four seats are the current model; two rounds of clues (SPIRAL's batched
     rollouts, `spkit.rl.selfplay.play_episodes`, on a game that stops before the vote). An
     invalid clue ends the game with SPIRAL's rule: the offender −1.5, every other player +0.5.
  3. Decision phase: at each finished clue phase every player samples G votes from its own
     vote prompt (votes are secret, so the prompt does not depend on the others' votes).
  4. Stage (Iterative-SPO), one of:
       clue      Eq. (1)–(3) on every clue turn (a game that ended on an invalid clue credits
                 its SPIRAL returns instead), then Eq. (6);
       decision  Eq. (4)–(5) on every civilian vote, then Eq. (6).
     ``--schedule alternate`` (the released code): decision for `switch_every` steps, then clue
     for as many, and so on; ``adaptive`` (the paper's Alg. 1): start in decision; EMAs (ρ) of
     the vote accuracy and of the invalid-vote rate; decision → clue when acc ≥ 0.9 and
     invalid ≤ 0.1, clue → decision when 1 − acc ≥ 0.4 or invalid ≥ 0.5, at least
     `min_dwell` steps in a stage; ``clue`` / ``decision`` train one stage only (the ablation).
  5. Every `eval_every` steps: the same game on the *held-out* word pairs, `eval_votes` votes
     per civilian: spy-identification accuracy (share of civilian votes naming the spy), the
     invalid clue and invalid vote rates.

Deviations from the paper:
  1. Text: one secret word per player (40 pairs of similar words, 10 of them held out) instead
     of a picture whose spy copy differs in a few objects; a 3.3M-parameter model on a CPU.
  2. spkit's Spy game has no "N/A" vote (a vote must name another player), so the paper's
     −0.5 for N/A has nothing to act on; an unparsable vote is the "format" failure of Eq. (4),
     and the adaptive schedule's N/A rate is the invalid-vote rate.
  3. Only civilians' votes train the decision phase: the spy may not vote for itself, so its
     vote has no correct answer.
  4. The k3 KL penalty (0.04 in the paper) is off by default (`--kl-coef`).
  5. An invalid clue ends the game with SPIRAL's penalty (the rule of spkit's rollouts); such a
     game has no vote, so it trains clues only, on that penalty.
  6. The decision phase samples G = `votes` votes per player from the same games the clue phase
     played (one set of rollouts per step, whichever stage trains).

Metrics (`metrics.csv`, TensorBoard, the `callback(step, metrics)` argument of `train`):
  eval/accuracy             held-out: share of civilian votes that name the spy (chance 1/3)
  eval/invalid_vote         held-out: share of civilian votes that are not a legal player index
  eval/invalid_clue         held-out: share of games ended by an invalid clue (no vote)
  train/accuracy, train/invalid_vote, train/invalid_clue   the same on this step's training games
  train/clue_stage          1 if this step trained the clue phase, 0 if the decision phase
  train/turns               turns in the update (non-zero advantage)
  train/baseline/spy, train/baseline/civilian   the role baselines b[role] of Eq. (3)
  train/clue_reward/spy     mean clue reward of the spy (clue stage only)
  losses/policy, losses/clip_frac, losses/grad_norm, ...   from `spkit.algos.spiral.update`

Commands:
  spkit train vision_zero --steps 40 --games 16 --threads 1 --out runs/vz            # alternate
  spkit train vision_zero --schedule clue --steps 40 --out runs/vz_clue               # ablation
  spkit train vision_zero --schedule decision --steps 40 --out runs/vz_decision       # ablation
  spkit train vision_zero --schedule adaptive --steps 80 --out runs/vz_adaptive       # paper Alg. 1
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from spkit.algos.spiral import update
from spkit.config import param
from spkit.games.base import TERMINAL, InvalidMove
from spkit.games.prompts import ANSWER_PREFIX, format_prompt, parse_action
from spkit.games.spy import NUM_PLAYERS, SpyGame, SpyState, word_pairs
from spkit.generation import Sampler
from spkit.rl.advantages import RoleBaseline, grpo_advantages
from spkit.rl.selfplay import Episode, LMAgent, Turn, play_episodes
from spkit.run import History, Run, RunConfig
from spkit.sampling import SamplingParams, behaviour_logprobs
from spkit.seeding import derive_seed

PAPER = {
    "title": "Vision-Zero: Scalable VLM Self-Improvement via Strategic Gamified Self-Play",
    "arxiv": "2509.25541",
    "citation": "Wang et al., 2025",
}
SCHEDULES = ("alternate", "adaptive", "clue", "decision")
HELDOUT_EVERY = 4  # word pair i is held out iff i % 4 == 3: 10 of the 40 shipped pairs


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(RunConfig):
    model: str = param("spkit-tiny", "model name, hub id or save_pretrained directory")
    schedule: str = param("alternate", "alternate (released code) | adaptive (paper Alg. 1) | clue | decision "
                          "(one stage only: the ablation)", choices=SCHEDULES)
    switch_every: int = param(5, "alternate: steps per stage", ge=1)
    steps: int = param(40, "policy updates", ge=0, identity=False)
    games: int = param(16, "games per step", ge=1)
    votes: int = param(8, "G: votes each player samples at the end of the clue phase", ge=2)
    beta: float = param(0.1, "β of the clue reward, Eq. (2)", ge=0)
    lam: float = param(0.1, "λ of the clue reward, Eq. (2)", ge=0)
    rae_alpha: float = param(0.9, "EMA decay α of the role baselines (released code 0.9, paper 0.95)", ge=0, le=0.999)
    ema_rho: float = param(0.95, "adaptive: EMA decay ρ of vote accuracy and invalid-vote rate", ge=0, le=0.999)
    min_dwell: int = param(5, "adaptive: minimum steps in a stage", ge=1)
    lr: float = param(1e-4, "learning rate (paper: 1e-5 for Qwen2.5-VL-7B)", gt=0)
    clip_eps: float = param(0.2, "PPO clip range ε", gt=0)
    ppo_epochs: int = param(1, "passes (optimizer steps) over each batch", ge=1)
    micro_batch: int = param(64, "turns per forward/backward", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)
    temperature: float = param(1.0, "rollout sampling temperature", gt=0)
    max_new_tokens: int = param(12, "tokens per clue (a vote needs 2)", ge=2)
    kl_coef: float = param(0.0, "k3 KL penalty to the initial model (paper 0.04; off here)", ge=0)
    loss_norm: str = param("token_mean", "token_mean | dr_grpo (see spiral)", choices=("token_mean", "dr_grpo"))
    eval_every: int = param(10, "evaluate every k steps (and at the start and the end)", ge=0, identity=False)
    eval_games: int = param(64, "held-out games per evaluation", ge=1, identity=False)
    eval_votes: int = param(4, "votes sampled per civilian in evaluation", ge=1, identity=False)

    def resolved_max_new_tokens(self) -> int:  # what spiral.update's dr_grpo normaliser reads
        return self.max_new_tokens


# ---- 1. Word pairs: a training split and a held-out split ---------------------------------------
def split_pairs(split: str) -> list[int]:
    """Indices into `word_pairs()` of the "train" or "heldout" split (disjoint, fixed)."""
    ids = range(len(word_pairs()))
    if split == "heldout":
        return [i for i in ids if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    return [i for i in ids if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]


class ClueState(SpyState):
    """A Spy position whose game ends when the clue phase does (the vote is sampled separately)."""

    def current_player(self) -> int:
        p = super().current_player()
        return TERMINAL if p >= 0 and len(self.clues) >= self.game.clue_rounds * NUM_PLAYERS else p

    def returns(self) -> list[float]:
        return [0.0] * NUM_PLAYERS  # clue rewards come from the votes, Eq. (1)-(2)


class ClueGame(SpyGame):
    """Who-is-the-Spy dealt from one split of the word pairs, played up to the vote."""

    def __init__(self, split: str = "train", clue_rounds: int = 2) -> None:
        super().__init__(clue_rounds)
        self.pair_ids = split_pairs(split)

    def new_initial_state(self, seed: int | None = None) -> ClueState:
        state = ClueState(self)
        if seed is not None:
            rng = random.Random(seed)
            state.apply_action(f"words {rng.choice(self.pair_ids)} {rng.randrange(2)}")
            state.apply_action(f"spy {rng.randrange(NUM_PLAYERS)}")
        return state


def voter_state(state: SpyState, player: int) -> SpyState:
    """The vote-phase position in which `player` votes: a plain `SpyState` with the clues of
    `state` and `player` placeholder votes before it. Votes are secret (a player's observation
    shows only its own vote), so the prompt is exactly what `player` sees at its real vote."""
    s = SpyState(SpyGame(state.game.clue_rounds))
    s.words, s.spy, s.clues = list(state.words), state.spy, list(state.clues)
    s.votes = [0] * player
    return s


# ---- 2-3. Clue phase and votes -------------------------------------------------------------------
def clue_phase(game: ClueGame, agent: LMAgent, n: int, seed: int) -> list[Episode]:
    """Step 2: `n` games' clue phases, all four seats played by `agent` (self-play)."""
    return play_episodes(game, lambda i: [agent] * NUM_PLAYERS, n, seed)


def reached_vote(ep: Episode) -> bool:
    return not ep.overflow and ep.invalid_by is None


def sample_votes(agent: LMAgent, episodes: list[Episode], G: int, seed: int,
                 voters: Callable[[Episode], list[int]] | None = None) -> list[dict[int, list[Turn]]]:
    """Step 3: for every episode that reached the vote, G sampled votes of each voter (all
    players unless `voters(ep)` says otherwise), as `Turn`s (action None = invalid vote). A
    voter whose prompt does not fit the model's context gets no entry (its votes are missing)."""
    voters = voters or (lambda ep: list(range(NUM_PLAYERS)))
    params = SamplingParams(max_new_tokens=4, temperature=agent.params.temperature, stop=("}",), include_stop=True)
    limit = agent.sampler.context_limit()
    jobs = [(k, p, voter_state(ep.state, p)) for k, ep in enumerate(episodes) if reached_vote(ep)
            for p in voters(ep)]
    jobs = [(k, p, s) for k, p, s in jobs  # a vote prompt past the model's positions is not sampled
            if limit is None or len(agent.sampler.encode(format_prompt(s, p, "direct"))) + 4 <= limit]
    prompts = [format_prompt(s, p, "direct") for _, p, s in jobs for _ in range(G)]
    outs = agent.sampler.generate(prompts, params, seed=seed) if prompts else []
    result: list[dict[int, list[Turn]]] = [{} for _ in episodes]
    for j, (k, p, s) in enumerate(jobs):
        for out in outs[j * G: (j + 1) * G]:
            a = parse_action(ANSWER_PREFIX + out.text, s.legal_actions(), s)
            result[k].setdefault(p, []).append(Turn(
                "spy", p, list(out.prompt_ids), list(out.token_ids), behaviour_logprobs(out, params.temperature),
                out.text, None if isinstance(a, InvalidMove) else a, agent.learner))
    return result


def vote_shares(votes: dict[int, list[Turn]]) -> list[float]:
    """v_j: votes player j receives, each voter's G votes averaged (invalid votes name nobody)."""
    v = [0.0] * NUM_PLAYERS
    for turns in votes.values():
        for t in turns:
            if t.action is not None:
                v[int(t.action)] += 1.0 / len(turns)
    return v


# ---- 4a. Clue stage: rewards from votes, role baselines ------------------------------------------
def clue_rewards(v: list[float], spy: int, beta: float = 0.1, lam: float = 0.1) -> list[float]:
    """Eq. (1)-(2): each player's clue-phase reward from the vote shares `v`."""
    civ = [c for c in range(len(v)) if c != spy]
    v_bar = sum(v[c] for c in civ) / len(civ)
    psi = v[spy] - v_bar  # Eq. (1)
    return [-beta * psi if p == spy else beta * psi / len(civ) - lam * (v[p] - v_bar) for p in range(len(v))]


def clue_advantages(episodes: list[Episode], votes: list[dict[int, list[Turn]]], baseline: RoleBaseline,
                    beta: float, lam: float) -> tuple[list[tuple[Turn, float]], list[list[float]]]:
    """Eq. (3) per (episode, player) in order, keyed by role (spy / civilian): (clue turn, A)
    pairs and each episode's rewards. A game that ended on an invalid clue credits its SPIRAL
    returns (offender −1.5, others +0.5); an overflowed game has no outcome and is skipped."""
    pairs, rewards = [], []
    for ep, vt in zip(episodes, votes, strict=True):
        if ep.overflow:
            rewards.append([0.0] * NUM_PLAYERS)
            continue
        r = clue_rewards(vote_shares(vt), ep.state.spy, beta, lam) if reached_vote(ep) else list(ep.returns)
        rewards.append(r)
        for p in range(NUM_PLAYERS):
            A = baseline.update(("spy", "spy" if p == ep.state.spy else "civilian"), r[p])  # Eq. (3)
            pairs += [(t, A) for t in ep.turns if t.role == p]
    return pairs, rewards


# ---- 4b. Decision stage: verifiable vote reward, GRPO --------------------------------------------
def vote_reward(action: str | None, spy: int) -> float:
    """Eq. (4) for one civilian vote (`action` None = unparsable / illegal)."""
    fmt = float(action is not None)
    acc = float(action is not None and int(action) == spy)
    return 0.3 * (2 * fmt - 1) + 1.2 * acc + 0.99 * float(acc > 0)


def civilians(ep: Episode) -> list[int]:
    return [p for p in range(NUM_PLAYERS) if p != ep.state.spy]


def decision_advantages(episodes: list[Episode], votes: list[dict[int, list[Turn]]]) -> list[tuple[Turn, float]]:
    """Eq. (4)-(5): (vote turn, A) for every civilian's G votes, normalised within the G."""
    pairs = []
    for ep, vt in zip(episodes, votes, strict=True):
        for p in civilians(ep) if reached_vote(ep) else ():
            turns = vt.get(p, [])
            if not turns:
                continue
            r = torch.tensor([vote_reward(t.action, ep.state.spy) for t in turns])
            pairs += list(zip(turns, grpo_advantages(r, len(turns)).tolist(), strict=True))  # Eq. (5)
    return pairs


def vote_accuracy(episodes: list[Episode], votes: list[dict[int, list[Turn]]]) -> dict[str, float]:
    """Share of civilian votes that name the spy, and of civilian votes that are invalid, over
    the games that reached the vote; and the share of games ended by an invalid clue."""
    cv = [t for ep, vt in zip(episodes, votes, strict=True) if reached_vote(ep) for p in civilians(ep)
          for t in vt.get(p, [])]
    spies = [ep.state.spy for ep, vt in zip(episodes, votes, strict=True) if reached_vote(ep)
             for p in civilians(ep) for _ in vt.get(p, [])]
    n = max(len(cv), 1)
    return {"accuracy": sum(t.action is not None and int(t.action) == s for t, s in zip(cv, spies, strict=True)) / n,
            "invalid_vote": sum(t.action is None for t in cv) / n,
            "invalid_clue": float(np.mean([ep.invalid_by is not None for ep in episodes])) if episodes else 0.0}


# ---- 4c. Iterative-SPO: which stage trains -------------------------------------------------------
@dataclass
class StageSwitch:
    """The stage of step t. `alternate`, `clue`, `decision` depend on t alone; `adaptive`
    (paper Alg. 1) on EMAs of the decision phase's accuracy and invalid-vote rate (resumable)."""

    schedule: str = "alternate"
    switch_every: int = 5
    rho: float = 0.95
    min_dwell: int = 5
    stage: str = "decision"
    dwell: int = 0
    ema_acc: float | None = None
    ema_invalid: float | None = None

    def current(self, t: int) -> str:
        if self.schedule in ("clue", "decision"):
            return self.schedule
        if self.schedule == "alternate":
            return "decision" if (t // self.switch_every) % 2 == 0 else "clue"
        return self.stage

    def observe(self, acc: float, invalid: float) -> None:
        """After a step: move the EMAs and (adaptive) switch the stage for the next step."""
        r = self.rho
        self.ema_acc = acc if self.ema_acc is None else r * self.ema_acc + (1 - r) * acc
        self.ema_invalid = invalid if self.ema_invalid is None else r * self.ema_invalid + (1 - r) * invalid
        if self.schedule != "adaptive":
            return
        self.dwell += 1
        if self.dwell < self.min_dwell:
            return
        if self.stage == "decision" and self.ema_acc >= 0.9 and self.ema_invalid <= 0.1:
            self.stage, self.dwell = "clue", 0
        elif self.stage == "clue" and (1 - self.ema_acc >= 0.4 or self.ema_invalid >= 0.5):
            self.stage, self.dwell = "decision", 0

    def state_dict(self) -> dict:
        return {"stage": self.stage, "dwell": self.dwell, "ema_acc": self.ema_acc, "ema_invalid": self.ema_invalid}

    def load_state_dict(self, state: dict) -> None:
        self.stage, self.dwell = state["stage"], int(state["dwell"])
        self.ema_acc, self.ema_invalid = state["ema_acc"], state["ema_invalid"]


# ---- 5. Evaluation on held-out word pairs --------------------------------------------------------
def evaluate(agent: LMAgent, cfg: Config, step: int) -> dict[str, float]:
    """Spy-identification accuracy on `eval_games` games dealt from the held-out pairs."""
    seed = derive_seed(cfg.seed, "eval", step)
    eps = clue_phase(ClueGame("heldout"), agent, cfg.eval_games, derive_seed(seed, "clues"))
    votes = sample_votes(agent, eps, cfg.eval_votes, derive_seed(seed, "votes"), civilians)
    return {f"eval/{k}": v for k, v in vote_accuracy(eps, votes).items()}


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/accuracy", "eval/invalid_vote", "eval/invalid_clue", "train/accuracy", "train/clue_stage",
             "train/baseline/spy", "train/baseline/civilian"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run Iterative-SPO on text Who-is-the-Spy; return every logged row."""
    from spkit.run import model_for

    run = Run(cfg, "vision_zero", callback, PLOT_KEYS)
    model, tok = model_for(cfg)
    ref_model = None
    if cfg.kl_coef > 0:
        ref_model, _ = model_for(cfg)
        ref_model.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    baseline = RoleBaseline(cfg.rae_alpha)
    stages = StageSwitch(cfg.schedule, cfg.switch_every, cfg.ema_rho, cfg.min_dwell)
    run.track(model=model, tokenizer=tok, optimizer=optimizer, baseline=baseline, stages=stages)
    agent = LMAgent(Sampler(model, tok), "direct",
                    SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature), learner=True)
    game = ClueGame("train")

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        stage = stages.current(t)
        eps = clue_phase(game, agent, cfg.games, derive_seed(cfg.seed, "clues", t))  # 1-2
        votes = sample_votes(agent, eps, cfg.votes, derive_seed(cfg.seed, "votes", t))  # 3
        t_roll = time.perf_counter() - t0
        acc = vote_accuracy(eps, votes)
        if stage == "clue":  # 4a
            pairs, rewards = clue_advantages(eps, votes, baseline, cfg.beta, cfg.lam)
        else:  # 4b
            pairs, rewards = decision_advantages(eps, votes), []
        batch = [(turn, a) for turn, a in pairs if a != 0.0 and turn.completion_ids]
        losses = update(model, optimizer, batch, cfg, ref_model) if batch else {}  # Eq. (6)
        stages.observe(acc["accuracy"], acc["invalid_vote"])
        m = {f"train/{k}": v for k, v in acc.items()}
        m |= {"train/clue_stage": float(stage == "clue"), "train/turns": float(len(batch)),
              "train/baseline/spy": baseline.value(("spy", "spy")),
              "train/baseline/civilian": baseline.value(("spy", "civilian")),
              "train/rollout_seconds": t_roll, "train/seconds_per_step": time.perf_counter() - t0}
        if rewards:
            m["train/clue_reward/spy"] = float(np.mean([r[ep.state.spy] for ep, r in zip(eps, rewards, strict=True)]))
        return m | {f"losses/{k}": v for k, v in losses.items()}

    return run.loop(step, lambda t: evaluate(agent, cfg, t))


def summary(history: History) -> str:
    """The line `spkit train vision_zero` prints at the end."""
    acc = history.series("eval/accuracy")[1] or [float("nan")]
    return f"held-out spy-identification accuracy: {acc[0]:.3f} -> {acc[-1]:.3f} (chance 1/3)"
