r"""SELF — language feedback, self-refinement, and training on the improved answers.

Lu, Zhong, Qin, Hu, Chen, Xie, Liu, Shang, Jiang, Liu (2023), "SELF: Self-Evolution with
Language Feedback", arXiv:2310.00533.

Idea: give the model two meta-skills — judging its own answer in words (feedback) and rewriting
the answer in the light of that judgement (refinement) — then let it evolve by itself: it
answers, criticises, refines, keeps the refinements its own feedback accepts, and fine-tunes on
them, so the improved answers become what it says in the first place. Here both meta-skills live
in attempt 2 of the two-attempt task (`spkit.tasks.correction`): after the fixed "review and
correct" instruction the model first writes one feedback line on attempt 1, then the rewritten
solution, so `spkit eval --tasks spkit_arith_correct` scores SELF's answer unchanged:

    Answer: Feedback: the answer 6 is wrong.
    3 + 4 = 7
    #### 7

Algorithm (one step t):
  1. Rollout: K first attempts y1 ~ π_θ(·|x) for each of `problems` train-split problems x, then
     one attempt 2 each, y2 = (f, z) ~ π_θ(·|x, y1, I): feedback line f, refinement z
     (`spkit.rl.correction.sample_attempts`).
  2. Meta-skill corpus (stage I, the first `meta_steps` steps): for every y1 with a right answer
     in its group, the target  f*(y1) ‖ z*  where
        f*(y1) = "Feedback: the answer a(y1) is right|wrong."  (the checker's verdict on y1)
        z*     = y1 if r(y1) = 1, else the first right y1' of the same problem           # Eq. (1)
     i.e. attempt 2 = a right solution of the same problem after a wrong attempt 1, the copied
     answer after a right one.
  3. Self-evolution corpus (stage II, afterwards): the episodes the model's own feedback got right
     and whose refinement is right,
        D_t = {(x, y1, y2) : v(f) = r(y1), r(z) = 1}                                       # Eq. (2)
     (v(f) ∈ {0, 1} the verdict f states; no verdict = not kept), as attempt-2 targets, and the
     refinement z as a direct answer to x (x → z): the improved answer becomes the first answer.
  4. SFT on the step's corpus, prompts masked (`spkit.rl.verifiable.sft_update`):
        L(θ) = −(1/Σ|y|) Σ_{(s, y)} Σ_t log π_θ(y_t | s, y_<t),  s ∈ {(x, y1, I), x}         # Eq. (3)
  5. Every `eval_every` steps: the held-out two-attempt metrics (`spkit.rl.correction`).

Deviations from the paper:
  1. The meta-skill corpus of the paper is written by a stronger model (GPT-4 feedback and
     refinements); here the verifier writes the feedback (a templated verdict line) and the
     refinement is the model's own right answer to the same problem. The evolution rounds
     (stage II) use only the model's own feedback; the verifier checks the refinement (Eq. 2),
     the paper's filter keeps what the model's own feedback accepts.
  2. Feedback is one templated line, not free text: a 3.3M-parameter model can learn a verdict,
     not a critique. It is written inside attempt 2, after the task's fixed instruction, so the
     evaluation is the task's own.
  3. Online: every step samples from the current model and takes `epochs` steps on that step's
     corpus (as `spkit.algos.rft`), instead of a few offline rounds.
  4. Every run starts with the shared warm-up of `spkit.rl.correction` (`--warmup-steps`).

Metrics: train/accuracy_t1 … train/delta_c2i (this step's rollouts), train/feedback_right (share
of attempts 2 whose feedback verdict matches the checker's on y1), train/feedback_written,
train/meta_rows, train/evolve_rows, train/stage, train/samples (completions drawn so far, both
attempts), train/rollout_seconds; losses/sft, losses/grad_norm; eval/accuracy_t1 …
eval/delta_c2i, eval/copied, eval/strict.

Commands:
  spkit train self_refine --max-samples 20000 --threads 1 --out runs/self_refine
  spkit train self_refine --meta-steps 40 --seed 1 --out runs/self_refine_s1
  spkit train self_refine --out runs/self_refine --steps 400 --resume            # continue a run
  spkit eval --model runs/self_refine/final --tasks spkit_arith_correct         # the same numbers
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from spkit.config import param
from spkit.rl import correction as C
from spkit.rl import verifiable as V
from spkit.run import History
from spkit.seeding import derive_seed
from spkit.tasks import arithmetic
from spkit.tasks import correction as T

PAPER = {
    "title": "SELF: Self-Evolution with Language Feedback",
    "arxiv": "2310.00533",
    "citation": "Lu, Zhong, Qin, Hu, Chen, Xie, Liu, Shang, Jiang, Liu. SELF. arXiv:2310.00533, 2023.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(C.CorrectionConfig):
    """SELF settings (model, task, problems, k, temperature, the warm-up ... from `CorrectionConfig`); defaults
    sized for spkit-tiny on a CPU."""

    steps: int = param(200, "rounds (answer, feedback, refine, filter, fine-tune)", ge=0, identity=False)
    k: int = param(4, "first attempts per problem (one attempt 2 each)", ge=1)
    meta_steps: int = param(20, "stage I: steps on the meta-skill corpus (Eq. 1) before self-evolution", ge=0)
    direct: bool = param(True, "stage II also trains x -> refinement (the improved answer as the first answer)")
    lr: float = param(1e-4, "learning rate (Adam)", gt=0)
    epochs: int = param(1, "optimizer steps over each step's corpus", ge=1)


def stage_of(t: int, cfg: Config) -> int:
    """Stage I (meta-skills) for steps 0 .. meta_steps − 1, stage II (self-evolution) afterwards."""
    return 1 if t < cfg.meta_steps else 2


# ---- 2. Feedback -------------------------------------------------------------------------------
FEEDBACK = "Feedback: the answer {answer} is {verdict}."
_VERDICT = re.compile(r"^\s*Feedback: the answer .* is (right|wrong)\.")


def feedback(attempt1: str, right: bool) -> str:
    """f*(y1): the verdict line on attempt 1 (its strict answer, "none" when it gave none)."""
    answer = arithmetic.extract_answer(attempt1, "strict") or "none"
    return FEEDBACK.format(answer=answer, verdict="right" if right else "wrong")


def verdict(attempt2: str) -> float | None:
    """v(f): 1.0 / 0.0 where attempt 2 opens with a "right" / "wrong" feedback line, else None."""
    m = _VERDICT.match(attempt2)
    return None if m is None else float(m.group(1) == "right")


def refinement(attempt2: str) -> str:
    """z: attempt 2 after its feedback line (all of it when there is none)."""
    return attempt2.split("\n", 1)[1] if verdict(attempt2) is not None and "\n" in attempt2 else attempt2


# ---- 2-3. The corpora ------------------------------------------------------------------------------
@dataclass
class Corpus:
    """One step's SFT rows as (prompt, target text); targets are tokenised with the turn's end."""

    prompts: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)

    def add(self, prompt: str, target: str) -> None:
        """Append a row unless the same (prompt, target) is already in (each distinct row once)."""
        if not any(p == prompt and t == target for p, t in zip(self.prompts, self.targets, strict=True)):
            self.prompts.append(prompt)
            self.targets.append(target)


def meta_corpus(eps: C.Episodes) -> Corpus:
    """Eq. (1): for each attempt 1 whose problem has a right attempt 1, verdict ‖ a right solution."""
    out, k = Corpus(), eps.k
    for i, (y1, r1) in enumerate(zip(eps.first, eps.r1.tolist(), strict=True)):
        g = i // k
        right = [j for j in range(g * k, g * k + k) if eps.r1[j] == 1]
        if not right:
            continue
        sol = y1.text if r1 == 1 else eps.first[right[0]].text
        out.add(T.second_prompt(eps.problems[g]["question"], y1.text), f" {feedback(y1.text, r1 == 1)}\n{sol.strip()}")
    return out


def evolve_corpus(eps: C.Episodes, direct: bool) -> Corpus:
    """Eq. (2): episodes whose own feedback matches the checker and whose refinement is right."""
    out, k = Corpus(), eps.k
    for i, (y1, y2) in enumerate(zip(eps.first, eps.second, strict=True)):
        if verdict(y2.text) != eps.r1[i].item() or eps.r2[i] != 1:
            continue
        q = eps.problems[i // k]["question"]
        out.add(T.second_prompt(q, y1.text), y2.text)
        if direct:
            out.add(arithmetic.prompt(q), f" {refinement(y2.text).strip()}")
    return out


def tokenize(sampler, corpus: Corpus) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, target ids): each target ends with the turn separator, where a sample stops."""
    enc = sampler.tokenizer
    return ([sampler.encode(p) for p in corpus.prompts],
            [enc(t + T.TURN_SEPARATOR, add_special_tokens=False)["input_ids"] for t in corpus.targets])


def feedback_stats(eps: C.Episodes) -> dict[str, float]:
    """Share of attempts 2 that wrote a verdict, and that wrote the checker's verdict on y1."""
    v = [verdict(c.text) for c in eps.second]
    n = max(len(v), 1)
    return {"train/feedback_written": sum(x is not None for x in v) / n,
            "train/feedback_right": sum(x == r for x, r in zip(v, eps.r1.tolist(), strict=True)) / n}


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/accuracy_t1", "eval/accuracy_t2", "eval/delta_i2c", "eval/delta_c2i", "train/feedback_right"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run SELF; return every logged row. `callback(step, metrics)` per logged step."""
    ctx = V.start(cfg, "self_refine", callback, PLOT_KEYS, lr=cfg.lr)
    task, model, optimizer, counter, sampler, params = (
        ctx.task, ctx.model, ctx.optimizer, ctx.counter, ctx.sampler, ctx.params)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        problems = task.train_problems(cfg.problems, derive_seed(cfg.seed, "problems", t))
        eps = C.sample_attempts(sampler, problems, cfg.k, params, derive_seed(cfg.seed, "sample", t))  # 1
        counter.samples += len(eps.first) + len(eps.second)
        t_roll = time.perf_counter() - t0
        stage = stage_of(t, cfg)
        meta = meta_corpus(eps) if stage == 1 else Corpus()  # 2
        evolved = evolve_corpus(eps, cfg.direct) if stage == 2 else Corpus()  # 3
        rows = Corpus(meta.prompts + evolved.prompts, meta.targets + evolved.targets)
        prompt_ids, target_ids = tokenize(sampler, rows)
        losses = V.sft_update(model, optimizer, prompt_ids, target_ids, cfg.epochs, cfg.micro_batch,
                              cfg.max_grad_norm) if rows.prompts else {}  # 4: Eq. (3)
        return {"train/stage": float(stage), **eps.metrics("train/"), **feedback_stats(eps),
                "train/meta_rows": float(len(meta.prompts)), "train/evolve_rows": float(len(evolved.prompts)),
                "train/samples": float(counter.samples), "train/rollout_seconds": t_roll,
                "train/seconds_per_step": time.perf_counter() - t0, **{f"losses/{k}": v for k, v in losses.items()}}

    evaluate = ctx.evaluator(cfg, C.evaluate_correction)
    return ctx.run.loop(C.with_warmup(ctx, cfg, step, evaluate), evaluate, V.sample_budget(cfg))  # 5


def summary(history: History) -> str:
    """The line `spkit train self_refine` prints at the end."""
    return C.summary_line(history)


__all__ = ["PAPER", "Config", "stage_of", "FEEDBACK", "feedback", "verdict", "refinement", "Corpus", "meta_corpus",
           "evolve_corpus", "tokenize", "feedback_stats", "train", "summary"]
