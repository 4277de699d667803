r"""Learning from a verifiable reward: sample K answers per problem, score them with the task's
own checker, and measure held-out accuracy exactly as `spkit eval --tasks spkit_arith` does.

Every trainer on the arithmetic task (RFT, GRPO and the methods compared against them) uses
these functions, so the problems, the reward and the evaluation are the same for all:

    problems = train_problems(8, seed=derive_seed(cfg.seed, "problems", t))   # train split only
    outs = sample_groups(sampler, problems, k=8, params=rollout_params(96), seed=s)  # (8·8) grouped
    rewards = score(outs, problems, k=8)              # 1.0 where the strict answer is right
    keep = mixed_groups(rewards, k=8)                 # DAPO's dynamic-sampling filter
    metrics = evaluate_heldout(model, tok)            # the spkit_arith number, greedy

The reward is `spkit.tasks.arithmetic.is_correct(text, gold, "strict")`: the first
``#### <number>`` of the completion, normalised as lm-eval's gsm8k ``exact_match`` does. The
evaluation reproduces the lm-eval task ``spkit_arith`` (``evals/_spkit_arith_template``): the
same held-out problems (levels 1-4, 100 each, generated with seed 0 from the test split), the
zero-shot prompt ``Question: ...\nAnswer:``, the stop strings, 96 new tokens, greedy decoding,
the strict and flexible filters, and the group mean over all problems. The generation is batched
like spkit's lm-eval backend (`spkit.evals.lm.SpkitLM`: longest prompts first, batches of 64),
so both give the same completions (tested against `spkit eval` in tests/test_reasoning.py).

The held-out problems never enter training: `train_problems` draws only from the train split
(`arithmetic.split_of`), and the held-out set is drawn only from the test split. Settings are
chosen on `dev_problems`, a hash bucket of the train split that `train_problems` never draws.

A real model trains on GSM8K the same way: `load_task("gsm8k", data_dir)` is a `Task` whose
problems come from ``DATA_DIR/gsm8k/train.jsonl`` (minus a 10 % dev bucket) and whose held-out
set is ``DATA_DIR/gsm8k/test.jsonl``, scored as `spkit eval --tasks gsm8k --num-fewshot 0
--max-gen-toks N --data-dir DIR` scores it (lm-eval's ``gsm8k`` prompt, stop strings and filters,
zero-shot). Every trainer takes ``--task`` and ``--data-dir``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from spkit.config import param
from spkit.errors import SpkitError
from spkit.generation import Sampler
from spkit.logprobs import pad_right, repeated_prompt_logprobs
from spkit.parallel import global_sum, own_rows, world
from spkit.rl.advantages import _grouped
from spkit.rl.losses import sft_loss
from spkit.run import Run, RunConfig, fsdp
from spkit.run.distributed import clip_grad_norm
from spkit.sampling import Completion, SamplingParams, row_seed
from spkit.tasks import arithmetic, datafiles

__all__ = [
    "EVAL_LEVELS", "EVAL_PER_LEVEL", "EVAL_SEED", "EVAL_STOP", "EVAL_MAX_NEW_TOKENS", "EVAL_BATCH",
    "Task", "TASKS", "load_task", "VerifiableConfig", "task_of", "sample_budget", "Start", "start",
    "train_problems", "dev_problems", "heldout_problems", "rollout_params", "sample_groups", "score", "mixed_groups",
    "heldout_completions", "greedy_as_eval", "evaluate_heldout", "SampleCounter", "microbatches", "global_batch", "microbatch_share",
    "padded_logprobs", "sft_update", "sft_minibatches", "summary_line",
]

# ---- the lm-eval task spkit_arith, as numbers (checked against evals/*.yaml in the tests)
EVAL_LEVELS = (1, 2, 3, 4)  # spkit_arith_1 .. spkit_arith_4
EVAL_PER_LEVEL = 100  # evals/utils.py load_spkit_arith(n=100)
EVAL_SEED = 0  # spkit.evals.data.EVAL_SEED
EVAL_STOP = ("Question:", "\n\n", "</s>", "<|im_end|>")  # generation_kwargs.until
EVAL_MAX_NEW_TOKENS = 96  # generation_kwargs.max_gen_toks
EVAL_BATCH = 64  # `spkit eval --batch-size` default


# ---- problems


def train_problems(n: int, seed: int, steps: int | Sequence[int] = EVAL_LEVELS) -> list[dict]:
    """`n` distinct training problems, levels cycled through `steps`; never a held-out or a dev one."""
    return arithmetic.generate(n, seed, steps=tuple(steps) if not isinstance(steps, int) else steps,
                               split="train", exclude_dev=True)


def dev_problems(per_level: int, seed: int = 0, steps: Sequence[int] = EVAL_LEVELS) -> list[dict]:
    """`per_level` problems of each level from the dev split (part of train, never trained on by
    the RL trainers): where settings are chosen, so the held-out number stays unbiased."""
    out: list[dict] = []
    for level in steps:
        out += arithmetic.generate(per_level, seed, steps=level, split="dev")
    return out


def heldout_problems(limit: int | None = None) -> list[dict]:
    """The problems `spkit_arith` scores, level by level (the first `limit` of each level, as
    lm-eval's ``--limit`` takes them); each record carries its ``steps`` level."""
    out: list[dict] = []
    for level in EVAL_LEVELS:
        recs = arithmetic.generate(EVAL_PER_LEVEL, EVAL_SEED, steps=level, split="test")
        out += recs[:limit] if limit else recs
    return out


# ---- tasks: where problems come from and how `spkit eval` scores them


@dataclass(frozen=True)
class Task:
    """A verifiable task: its problems (train / dev / held-out), its stop strings and token budget,
    and the `spkit eval` command whose number `evaluate_heldout` reproduces. Records have GSM8K's
    schema (``question``, ``answer`` ending in ``#### n``), so prompt and checker are shared."""

    name: str
    train: Callable[[int, int, Sequence[int] | None], list[dict]] = field(repr=False)  # (n, seed, levels)
    dev: Callable[[int, int], list[dict]] = field(repr=False)  # (per_level, seed)
    heldout: Callable[[int | None], list[dict]] = field(repr=False)  # (limit)
    stop: tuple[str, ...] = EVAL_STOP
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS
    levels: tuple[int, ...] = ()  # difficulty categories (arithmetic step counts), if any
    eval_command: str = "spkit eval --tasks spkit_arith"

    def train_problems(self, n: int, seed: int, levels: Sequence[int] | None = None) -> list[dict]:
        return self.train(n, seed, levels)

    def dev_problems(self, per_level: int, seed: int = 0) -> list[dict]:
        return self.dev(per_level, seed)

    def heldout_problems(self, limit: int | None = None) -> list[dict]:
        return self.heldout(limit)


def _in_dev_bucket(question: str) -> bool:
    """The dev bucket of a file-based task: 1 question in 10 by hash, never trained on."""
    return int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[4:8], "big") % 10 == 0


def _gsm8k_task(data_dir: str | None) -> Task:
    """GSM8K from local files (`spkit.tasks.datafiles` layout), zero-shot as the trainers prompt."""
    pool = datafiles.load_split("gsm8k", "train", data_dir)
    test = datafiles.load_split("gsm8k", "test", data_dir)
    train = [r for r in pool if not _in_dev_bucket(r["question"])]
    dev = [r for r in pool if _in_dev_bucket(r["question"])]

    def draw(records: list[dict], what: str, n: int, seed: int) -> list[dict]:
        if n > len(records):
            raise SpkitError(f"gsm8k: {n} {what} problems asked for, the data has {len(records)}")
        return random.Random(seed).sample(records, n)

    root = datafiles.data_dir(data_dir)
    return Task(
        "gsm8k",
        train=lambda n, seed, levels=None: draw(train, "train", n, seed),
        dev=lambda per_level, seed=0: draw(dev, "dev", min(per_level, len(dev)) if dev else 1, seed),
        heldout=lambda limit=None: test[:limit] if limit else list(test),
        stop=("Question:", "</s>", "<|im_end|>"),  # evals/gsm8k_local.yaml `until`
        max_new_tokens=256,  # lm-eval's default max_gen_toks (gsm8k sets none)
        eval_command=f"spkit eval --tasks gsm8k --num-fewshot 0 --max-gen-toks 256 --data-dir {root}",
    )


ARITH = Task("spkit_arith", train=lambda n, seed, levels=None: train_problems(n, seed, levels or EVAL_LEVELS),
             dev=lambda per_level, seed=0: dev_problems(per_level, seed),
             heldout=lambda limit=None: heldout_problems(limit), levels=EVAL_LEVELS)
TASKS = ("spkit_arith", "gsm8k")


def load_task(name: str = "spkit_arith", data_dir: str | None = None) -> Task:
    """The task a trainer's ``--task`` / ``--data-dir`` name; one clear line for a bad name or file."""
    if name == "spkit_arith":
        return ARITH
    if name == "gsm8k":
        return _gsm8k_task(data_dir or None)
    raise SpkitError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")


@dataclass
class VerifiableConfig(RunConfig):
    """The fields every trainer on a verifiable task shares; its `Config` subclasses this."""

    model: str = param("spkit-tiny", "model name, hub id or save_pretrained directory")
    task: str = param("spkit_arith", "verifiable task: spkit_arith (generated) | gsm8k (DATA_DIR/gsm8k/"
                      "{train,test}.jsonl)", choices=TASKS)
    data_dir: str = param("", "benchmark data directory for --task gsm8k (`spkit data check` validates it)")
    problems: int = param(16, "train-split problems per step", ge=1)
    k: int = param(8, "completions sampled per problem", ge=1)
    temperature: float = param(1.0, "rollout sampling temperature", gt=0)
    max_new_tokens: int = param(0, "tokens per completion; 0 = the task's evaluation budget (spkit_arith 96, "
                                "gsm8k 256)", ge=0)
    eval_limit: int = param(0, "held-out problems (per level) per evaluation; 0 = all, the number "
                            "`Task.eval_command` reports", ge=0, identity=False)
    max_samples: int = param(0, "stop once this many completions were drawn (the budget methods are compared "
                             "at); 0 = none", ge=0, identity=False)

    def new_tokens(self, task: Task) -> int:
        """The completion budget: --max-new-tokens, else the task's own."""
        return self.max_new_tokens or task.max_new_tokens


def sample_budget(cfg: VerifiableConfig) -> Callable[[dict], bool] | None:
    """`Run.loop`'s `stop` for --max-samples: the step whose train/samples reaches it is the last."""
    if not cfg.max_samples:
        return None
    return lambda metrics: metrics.get("train/samples", 0.0) >= cfg.max_samples


def task_of(cfg: VerifiableConfig) -> Task:
    """The config's task, its data files read and checked once (before any model loads)."""
    return load_task(cfg.task, cfg.data_dir or None)


# ---- sampling and scoring


def rollout_params(max_new_tokens: int = EVAL_MAX_NEW_TOKENS, temperature: float = 1.0,
                   task: Task | None = None) -> SamplingParams:
    """Training rollouts stop where the evaluation stops (the task's stop strings)."""
    return SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature,
                          stop=task.stop if task else EVAL_STOP)


def sample_groups(sampler: Sampler, problems: Sequence[dict], k: int, params: SamplingParams,
                  seed: int, first_row: int = 0) -> list[Completion]:
    """K completions of each problem's prompt, laid out as consecutive groups: row i·K + j is
    sample j of problem i. Row r draws its randomness from (seed, first_row + r) (see
    `spkit.sampling`): a rank sampling its shard of a batch passes the shard's first row, and
    gets exactly the completions one process sampling the whole batch gets for those rows."""
    if k < 1:
        raise SpkitError(f"k must be >= 1, got {k}")
    prompts = [arithmetic.prompt(p["question"]) for p in problems for _ in range(k)]
    rows = [row_seed(seed, first_row + i) for i in range(len(prompts))]
    return sampler.generate(prompts, params, seed=seed, row_seeds=rows)


def score(completions: Sequence[Completion] | Sequence[str], problems: Sequence[dict], k: int,
          mode: str = "strict") -> Tensor:
    """(len(problems)·K,) rewards: 1.0 where `arithmetic.is_correct` accepts the completion."""
    if len(completions) != len(problems) * k:
        raise SpkitError(f"{len(completions)} completions for {len(problems)} problems × {k} samples")
    texts = [c if isinstance(c, str) else c.text for c in completions]
    golds = [p["answer"] for p in problems for _ in range(k)]
    return torch.tensor([float(arithmetic.is_correct(t, g, mode)) for t, g in zip(texts, golds, strict=True)])


def mixed_groups(rewards: Tensor, k: int) -> Tensor:
    """(G,) bool: groups whose rewards are not all equal — DAPO's dynamic-sampling filter drops
    the all-correct and all-wrong groups, whose group-relative advantages are all zero."""
    r = _grouped(rewards, k)  # (G, K)
    return (r != r[:, :1]).any(dim=1)


class SampleCounter:
    """Completions drawn so far (the x-axis every method is compared on); resumable state."""

    def __init__(self) -> None:
        self.samples = 0

    def state_dict(self) -> dict:
        return {"samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        self.samples = int(state["samples"])


# ---- batches for the update


def microbatches(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` rows covering 0..n-1."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def global_batch(n_rows: int, n_tok: float) -> tuple[float, float]:
    """(rows, tokens) a rank normalises its loss by: the whole batch's counts over all ranks,
    divided by the world size. Averaging the ranks' gradients then gives the gradient of the
    whole batch's loss, as if one process had it all; in one process they are the batch's own."""
    size = world()[1]
    return global_sum(n_rows) / size, global_sum(n_tok) / size


def microbatch_share(aggregation: str, mask: Tensor, n_rows: float, n_tok: float) -> float:
    """The weight of one micro-batch's aggregated loss so the accumulated gradient is the whole
    batch's: its share of the tokens for "token_mean", of the rows for "seq_mean"/"dr_grpo"."""
    if aggregation == "token_mean":
        return float(mask.sum()) / max(n_tok, 1.0)
    return mask.shape[0] / max(n_rows, 1)


def padded_logprobs(model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                    temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Differentiable log π(y_t | x, y_<t) of each completion, right-padded: ((B, T), (B, T) mask).
    Only completion tokens are scored, so a loss on these never sees the prompt; the K samples of
    a problem share one pass over its prompt (`repeated_prompt_logprobs`). At `temperature` ≠ 1
    the policy is softmax(logits / T), the one a rollout at T sampled from (PPO ratios against
    `sampling.behaviour_logprobs`)."""
    lps = repeated_prompt_logprobs(model, [list(p) for p in prompt_ids], [list(c) for c in completion_ids],
                                   temperature)
    logp = pad_right(lps)
    mask = pad_right([[1.0] * len(x) for x in lps], logp.shape[1]).to(logp.device)
    return logp, mask


def sft_update(model, optimizer, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
               epochs: int = 1, micro_batch: int = 64, max_grad_norm: float = 1.0) -> dict[str, float]:
    """`epochs` optimizer steps of prompt-masked maximum likelihood on the given completions:
        L(θ) = −(1/Σ|y|) Σ_(x,y) Σ_t log π_θ(y_t | x, y_<t)
    micro-batched with an exact token mean (the gradient does not depend on `micro_batch`).
    The SFT step of every method that fine-tunes on its own filtered samples (RFT, STaR, B-STaR).
    Returns {"sft": mean loss over the epochs, "grad_norm": the last pre-clip norm}.
    Under torchrun the token mean is over every rank's completions (`global_batch`), so the
    ranks' averaged gradient is one process's on all of them; a rank with none still steps.
    Where the ranks hold the same rows (a step of a trainer whose rollouts the run loop splits,
    `spkit.parallel.split_rollouts`), each rank differentiates its `shard` of them."""
    rows = own_rows(len(completion_ids))
    prompt_ids, completion_ids = prompt_ids[rows], completion_ids[rows]
    n_tok = global_batch(len(completion_ids), float(sum(len(c) for c in completion_ids)))[1]
    stats = {"sft": 0.0, "grad_norm": 0.0}
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        for sl in fsdp.lockstep(model, microbatches(len(prompt_ids), micro_batch)):
            logp, mask = padded_logprobs(model, prompt_ids[sl], completion_ids[sl])  # (b, T)
            share = float(mask.sum()) / max(n_tok, 1.0)  # exact token mean over all micro-batches
            loss = sft_loss(logp, mask) * share
            loss.backward()
            stats["sft"] += loss.item() / epochs
        if max_grad_norm > 0:
            stats["grad_norm"] = clip_grad_norm(model, max_grad_norm)
        optimizer.step()
    model.eval()
    return stats


def sft_minibatches(model, optimizer, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                    n_steps: int, batch_size: int, seed: int, micro_batch: int = 64,
                    max_grad_norm: float = 1.0) -> dict[str, float]:
    """`n_steps` `sft_update` steps on minibatches of `batch_size` rows, drawn without replacement
    from seeded permutations of the rows (a new permutation when one runs out): a fine-tune of a
    fixed step budget (STaR) or of whole epochs (n_steps = epochs · ⌈N / batch_size⌉, B-STaR).
    Returns {"sft": mean loss over the steps, "grad_norm": the last step's}; {} with no rows."""
    n = len(prompt_ids)
    if n == 0 or n_steps == 0:
        return {}
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []
    stats = {"sft": 0.0, "grad_norm": 0.0}
    for _ in range(n_steps):
        if len(order) < min(batch_size, n):
            order += torch.randperm(n, generator=g).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        step = sft_update(model, optimizer, [prompt_ids[i] for i in idx], [completion_ids[i] for i in idx],
                          1, micro_batch, max_grad_norm)
        stats["sft"] += step["sft"] / n_steps
        stats["grad_norm"] = step["grad_norm"]
    return stats


# ---- held-out evaluation


def heldout_completions(model, tokenizer, limit: int | None = None, batch_size: int = EVAL_BATCH,
                        sampler: Sampler | None = None, task: Task | None = None
                        ) -> tuple[list[dict], list[Completion]]:
    """(problems, greedy completions) of the held-out set, generated as `spkit eval` does."""
    task = task or ARITH
    problems = task.heldout_problems(limit)
    sampler = sampler or Sampler(model, tokenizer)
    prompts = [arithmetic.prompt(p["question"]) for p in problems]
    return problems, greedy_as_eval(model, sampler, prompts, task, batch_size)


def greedy_as_eval(model, sampler: Sampler, prompts: Sequence[str], task: Task | None = None,
                   batch_size: int = EVAL_BATCH) -> list[Completion]:
    """Greedy completions of `prompts` batched as spkit's lm-eval backend batches one task's
    requests (`spkit.evals.lm.SpkitLM`: longest prompts first, batches of `batch_size`), so the
    texts equal `spkit eval`'s; the task's stop strings and token budget."""
    task = task or ARITH
    params = SamplingParams(max_new_tokens=task.max_new_tokens, temperature=0.0, stop=task.stop)
    lens = [len(sampler.encode(p)) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lens[i])  # as SpkitLM: longest first
    outs: list[Completion | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    for b in range(0, len(order), batch_size):
        chunk = order[b: b + batch_size]
        for i, c in zip(chunk, sampler.generate([prompts[i] for i in chunk], params, seed=b), strict=True):
            outs[i] = c
    model.train(was_training)
    return outs  # type: ignore[return-value]


def evaluate_heldout(model, tokenizer, limit: int | None = None, batch_size: int = EVAL_BATCH,
                     sampler: Sampler | None = None, task: Task | None = None) -> dict[str, float]:
    """Greedy held-out accuracy on the task (`spkit_arith`: the first `limit` problems of each
    level, all 400 by default), the number its `Task.eval_command` reports.

    Returns "eval/strict" and "eval/flexible" (means over all problems, lm-eval's
    ``weight_by_size`` group score), "eval/strict/level_<s>" per level (tasks with levels), and
    "eval/completion_len" (mean generated tokens)."""
    task = task or ARITH
    problems, outs = heldout_completions(model, tokenizer, limit, batch_size, sampler, task)
    strict = score(outs, problems, 1, "strict")
    flexible = score(outs, problems, 1, "flexible")
    m = {"eval/strict": strict.mean().item(), "eval/flexible": flexible.mean().item(),
         "eval/completion_len": sum(len(c.token_ids) for c in outs) / max(len(outs), 1)}
    if task.levels:
        levels = torch.tensor([p["steps"] for p in problems])
        for level in task.levels:
            m[f"eval/strict/level_{level}"] = strict[levels == level].mean().item()
    return m


# ---- the start every trainer shares


@dataclass
class Start:
    """What every trainer on a verifiable task begins with (`start`); its `step` and `evaluate`
    close over these."""

    task: Task
    run: Run
    model: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer | None
    counter: SampleCounter
    sampler: Sampler
    params: SamplingParams  # rollout sampling at cfg.temperature, the task's stop strings and budget

    def evaluator(self, cfg: VerifiableConfig, evaluate: Callable[..., dict[str, float]] | None = None
                  ) -> Callable[[int], dict[str, float]]:
        """`Run.loop`'s `evaluate`: `evaluate(model, tokenizer, limit, sampler=, task=)` (default
        `evaluate_heldout`, the `spkit eval` number) and the completions drawn so far."""
        fn = evaluate or evaluate_heldout

        def at(step: int) -> dict[str, float]:
            return {**fn(self.model, self.tokenizer, cfg.eval_limit or None, sampler=self.sampler, task=self.task),
                    "train/samples": float(self.counter.samples)}
        return at


def start(cfg: VerifiableConfig, name: str, callback: Callable | None, plot_keys: list[str],
          lr: float | None, **state: Any) -> Start:
    """The start every verifiable-reward trainer shares, in this order: the task (its data files
    checked before any model loads), the run (seeds, directory, lock), the model, Adam at `lr`
    (None: the trainer makes its own), the sample counter, what a checkpoint holds (those, plus
    the trainer's own resumable `state`), a sampler and the rollout parameters."""
    from spkit.run import model_for

    task = task_of(cfg)
    run = Run(cfg, name, callback, plot_keys)
    model, tok = model_for(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr) if lr is not None else None
    counter = SampleCounter()
    run.track(model=model, tokenizer=tok, **({"optimizer": optimizer} if optimizer else {}), counter=counter,
              **state)
    sampler = Sampler(model, tok)
    return Start(task, run, model, tok, optimizer, counter, sampler,
                 rollout_params(cfg.new_tokens(task), cfg.temperature, task))


def summary_line(history) -> str:
    """'held-out strict accuracy: 27.0% -> 31.5% after 12 800 samples' from a run's History."""
    _, acc = history.series("eval/strict")
    _, n = history.series("train/samples")
    if not acc:
        return "no evaluation was logged"
    return (f"held-out strict accuracy (spkit_arith): {100 * acc[0]:.1f}% -> {100 * acc[-1]:.1f}% "
            f"after {int(n[-1]) if n else 0} samples")
