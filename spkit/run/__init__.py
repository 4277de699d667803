"""The one training loop every spkit trainer uses (CleanRL's loop, made importable).

An algorithm file writes what is particular to its paper — how to set up, one `step`, one
`evaluate` — and hands them to `Run`::

    @dataclass
    class Config(RunConfig):                      # seed, steps, budget, out, resume, ... inherited
        lr: float = param(1e-5, "learning rate", gt=0)

    def train(cfg: Config, callback=None) -> History:
        run = Run(cfg, "myalgo", callback=callback, plot_keys=["eval/score"])
        model, tok = load_model(...)              # after Run(): seeds and threads are set
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        run.track(model=model, tokenizer=tok, optimizer=opt, baseline=baseline)
        return run.loop(step=lambda t: ..., evaluate=lambda t: ...)

`Run` owns everything else, once: threads and seeds (`seed + rank` per process), gradient
averaging across torchrun ranks (before each step of the tracked optimizer), rollouts split
across the ranks (`spkit.parallel.split_rollouts`), ZeRO-1 and FSDP2 (`--fsdp`), the run
directory and its identity (`run.json`; a fresh run refuses a directory holding another run
unless `--overwrite`, a resume refuses a checkpoint whose config differs and says which fields),
a lock against two processes writing one directory, atomic checkpoints and exact `--resume`
(model, optimizer, RNGs, and every `state_dict()`/`load_state_dict()` object given to `track`,
as JSON), the step and `--max-minutes` budget (decided by rank 0 for all ranks), evaluation every
`eval_every` steps, a guard that stops a diverged run (non-finite loss or weights) with one line
and keeps the last good checkpoint, metrics (CSV + TensorBoard), the progress bar, the final plot
and the `final/` model. `step(t)` trains step t (0-based) and returns its metrics; `evaluate(t)`
returns metrics after t steps, t = 0 being the untrained start. Ctrl-C (SIGINT) finishes the step
under way, checkpoints it and stops with one line, so an interrupted run loses nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from spkit import parallel
from spkit.config import as_json, identity_diff, param, validate
from spkit.errors import SpkitError
from spkit.generation import set_default_backend
from spkit.models import add_lora, has_lora, inference_model, load_model, save_adapter, save_merged
from spkit.run import fsdp
from spkit.run.checkpoint import Checkpointer, finite_weights, load_optimizer_state
from spkit.run.distributed import (
    ShardedOptimizerState,
    average_before_step,
    init_distributed,
    rank0_decides,
)
from spkit.run.metrics import MetricLogger, atomic_write_text, plot_metrics, progress, read_metrics
from spkit.seeding import seed_everything
from spkit.vllm_backend import require_vllm

__all__ = ["RunConfig", "Run", "History", "ensure_writable_dir", "lesson_out", "lesson_root", "trained_models", "model_for"]

Metrics = dict[str, float]
RUN_FILES = ("run.json", "metrics.csv", "checkpoints", "final", "tb")  # what --overwrite deletes


@dataclass
class RunConfig:
    """The fields every trainer shares; an algorithm's `Config` subclasses it."""

    seed: int = param(0, "random seed: every random choice of the run derives from it")
    steps: int = param(100, "training steps (updates)", ge=0, identity=False)
    max_minutes: float = param(0.0, "wall-clock budget, loading and evaluations included; 0 = none", ge=0,
                               identity=False)
    eval_every: int = param(10, "evaluate every k steps (and at the start and the end); 0 = start and end only",
                            ge=0, identity=False)
    checkpoint_every: int = param(50, "save a resumable checkpoint every k steps (and at the end)", ge=1,
                                  identity=False)
    keep_checkpoints: int = param(2, "how many of the newest checkpoints to keep", ge=1, identity=False)
    out: str = param("", "run directory (metrics, plots, checkpoints, final/); '' = in memory, no files",
                     identity=False)
    resume: bool = param(False, "continue the run in --out from its newest complete checkpoint", identity=False)
    overwrite: bool = param(False, "start afresh in an --out that holds a run, deleting that run", identity=False)
    threads: int = param(0, "torch CPU threads (0 = torch's default); results depend on it", ge=0,
                         identity=False)
    tensorboard: bool = param(True, "also write TensorBoard events (metrics.csv is always written)",
                              identity=False)
    plot: bool = param(True, "save the run's main curves as OUT/<algorithm>.png at the end", identity=False)
    backend: str = param("hf", "rollout engine of every sampler: hf (spkit's torch sampler) or vllm (follows "
                         "the learner's weights after each update; needs vLLM)", choices=("hf", "vllm"),
                         identity=False)
    lora: int = param(0, "train LoRA adapters of this rank on every linear layer instead of all weights "
                      "(alpha = 2r; needs peft); 0 = full fine-tuning", ge=0, identity=False)
    grad_checkpointing: bool = param(False, "recompute activations in the backward pass (less memory, "
                                     "~30% more compute)", identity=False)
    shard_optimizer: bool = param(False, "torchrun: keep each parameter's optimizer state on one rank only "
                                  "(ZeRO stage 1: Adam's state takes 1/N of the memory per GPU)", identity=False)
    fsdp: bool = param(False, "torchrun: shard weights, gradients and optimizer state across the ranks with "
                       "FSDP2, for models too large for one GPU", identity=False)
    device: str | None = param(None, "cpu | cuda | mps (default: the best available)", identity=False)
    dtype: str | None = param(None, "model dtype: float32 | bfloat16 | float16 (default: float32 on CPU, "
                              "bfloat16 where supported)")


class Stateful(Protocol):
    """Anything `Run.track` saves with a checkpoint: JSON-able state in, the same state out."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# A tracked object may also define `save_files(dir)` / `load_files(dir)` for state that is not
# JSON (a second model and its optimizer, as safetensors): checkpoints hold it in `<ckpt>/<key>/`.


@dataclass
class History:
    """What `train` returns: every logged row (as in metrics.csv) and where the run lives."""

    rows: list[Metrics] = field(default_factory=list)
    out_dir: Path | None = None
    final_dir: Path | None = None

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric, skipping rows where it was not logged."""
        pts = [(int(r["step"]), r[key]) for r in self.rows if key in r and math.isfinite(r[key])]
        return [s for s, _ in pts], [v for _, v in pts]

    def last(self, key: str) -> float:
        vals = self.series(key)[1]
        return vals[-1] if vals else math.nan


def model_for(cfg: RunConfig, name: str | os.PathLike | None = None):
    """(model, tokenizer) of `name` (default: the config's `model`) on the run's `--device` and in its
    `--dtype`: every trainer loads through here, so the two flags mean the same in all of them."""
    return load_model(name or cfg.model, device=cfg.device, dtype=cfg.dtype)


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` or fail with one line (an unwritable --out is a user error, found up front)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".spkit_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise SpkitError(f"output directory {p} is not writable: {e.strerror or e}") from None
    return p


LESSON_OUT_ENV = "SPKIT_LESSON_OUT"
LESSON_OUT_DEFAULT = "runs/lessons"


def lesson_out(lesson: str) -> Path:
    """Where a lesson writes its runs: ``$SPKIT_LESSON_OUT/<lesson>`` (default ``runs/lessons/<lesson>``).

    One layout for every lesson, so a later lesson finds what an earlier one trained (lesson 04
    evaluates the models of lessons 02 and 03 with `trained_models`) and the test suite can point
    all of them at a temporary directory with one variable.
    """
    return lesson_root() / lesson


def lesson_root() -> Path:
    """The root all lessons write under: ``$SPKIT_LESSON_OUT``, else ``runs/lessons``."""
    return Path(os.environ.get(LESSON_OUT_ENV) or LESSON_OUT_DEFAULT)


def trained_models(root: str | os.PathLike | None = None) -> list[Path]:
    """The ``final/`` model of every finished run under ``root`` (default: the lessons' root,
    any depth), the most trained last: ordered by the run's last logged step, then by time.

    A run directory is recognised by its ``run.json``; a ``final/`` without ``config.json`` (a
    run killed while saving) is skipped.
    """
    base = Path(root) if root is not None else lesson_root()
    found = [p for p in base.rglob("final") if (p / "config.json").is_file() and (p.parent / "run.json").is_file()]

    def updates(final: Path) -> float:
        metrics = final.parent / "metrics.csv"
        rows = read_metrics(metrics) if metrics.is_file() else []
        return rows[-1]["step"] if rows else 0.0

    return sorted(found, key=lambda p: (updates(p), p.stat().st_mtime))


def check_fsdp(cfg: RunConfig) -> None:
    """One line, before any model loads, for an --fsdp run that cannot work."""
    for flag, on in (("--lora", cfg.lora), ("--shard-optimizer", cfg.shard_optimizer),
                     ("--backend vllm", cfg.backend == "vllm")):
        if on:
            raise SpkitError(f"--fsdp cannot be combined with {flag}")


class Run:
    """One training run: set up by the constructor, driven by `loop` (see the module docstring)."""

    def __init__(
        self,
        cfg: RunConfig,
        name: str,
        callback: Callable[[int, Metrics], None] | None = None,
        plot_keys: tuple[str, ...] | list[str] = (),
        eval_at: Callable[[int], bool] | None = None,
    ) -> None:
        validate(cfg)
        if cfg.fsdp:
            check_fsdp(cfg)
        if cfg.resume and cfg.overwrite:
            raise SpkitError("--resume and --overwrite contradict each other; pass one")
        if cfg.resume and not cfg.out:
            raise SpkitError("--resume needs --out, the directory of the run to continue")
        self.cfg, self.name, self.callback, self.plot_keys = cfg, name, callback, list(plot_keys)
        self.eval_at = eval_at or (lambda t: cfg.eval_every > 0 and t % cfg.eval_every == 0)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.backend == "vllm":
            require_vllm()  # one line before any model loads
        self._backend_before = set_default_backend(cfg.backend)  # restored when the loop ends
        self.rank, self.world = init_distributed()
        seed_everything(cfg.seed + self.rank)
        self.t_begin = time.perf_counter()
        self.out = Path(cfg.out) if cfg.out else None
        self.writes = self.out is not None and self.rank == 0
        self._lock = self._open_run_dir() if self.writes else None
        self.model: torch.nn.Module | None = None
        self.tokenizer: Any = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.sharding: ShardedOptimizerState | None = None
        self.fsdp: fsdp.Sharded | None = None
        self.state: dict[str, Stateful] = {}
        self.rows: list[Metrics] = []

    # ---- the run directory: identity, lock ----------------------------------------------------
    def _open_run_dir(self):
        out = ensure_writable_dir(self.out)
        lock = open(out / ".lock", "a+")  # noqa: SIM115 - held open for the whole run
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise SpkitError(f"another process is writing to {out} (pid {lock.read().strip() or '?'}); "
                             "wait for it or choose another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        held = [n for n in RUN_FILES if (out / n).exists()]
        if self.cfg.resume:
            self._check_same_algorithm(out)
        elif held and self.cfg.overwrite:
            for n in held:
                shutil.rmtree(out / n) if (out / n).is_dir() else (out / n).unlink()
        elif held:
            raise SpkitError(f"{out} already holds a run ({', '.join(held)}); pass --resume to continue it "
                             "or --overwrite to replace it")
        if not self.cfg.resume:
            atomic_write_text(out / "run.json", json.dumps(
                {"algorithm": self.name, "config": as_json(self.cfg)}, indent=1))
        return lock

    def _check_same_algorithm(self, out: Path) -> None:
        try:
            saved = json.loads((out / "run.json").read_text())
        except (OSError, ValueError):
            raise SpkitError(f"--resume: {out} holds no spkit run (run.json missing or unreadable)") from None
        if saved.get("algorithm") != self.name:
            raise SpkitError(f"--resume: {out} holds a {saved.get('algorithm')!r} run, not {self.name!r}")

    # ---- what a checkpoint holds --------------------------------------------------------------
    def track(self, model: torch.nn.Module | None = None, tokenizer: Any = None,
              optimizer: torch.optim.Optimizer | None = None, **state: Stateful) -> None:
        """Register what checkpoints save and `--resume` restores; `model` is also the final model.

        Here the run's memory options reach every trainer: `--lora r` puts adapters on `model`
        in place (the trainer's samplers and closures see them), freezes its base weights and
        adds the adapters to `optimizer` as a new parameter group (the trainer's settings);
        `--grad-checkpointing` turns on the model's activation checkpointing; under torchrun the
        ranks' gradients are averaged before each step, `--shard-optimizer` spreads the
        optimizer's state over the ranks (`distributed.ShardedOptimizerState`), and `--fsdp`
        shards the model itself with FSDP2 (`spkit.run.fsdp`)."""
        if model is not None and self.cfg.lora and not has_lora(model):
            adapters = add_lora(model, self.cfg.lora)
            if optimizer is not None:
                optimizer.add_param_group({"params": adapters})
        if model is not None and self.cfg.grad_checkpointing:
            if not getattr(model, "supports_gradient_checkpointing", False):
                raise SpkitError(f"--grad-checkpointing: {type(model).__name__} does not support it")
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if model is not None and self.cfg.fsdp:  # FSDP2 reduces the gradients itself
            self.fsdp = fsdp.shard(model, optimizer)
        elif model is not None and optimizer is not None and self.world > 1:
            # torchrun: average the ranks' gradients before every step of the tracked optimizer,
            # so the replicas stay identical in every trainer without a line of its own
            optimizer.register_step_pre_hook(average_before_step(model))
        if optimizer is not None and self.cfg.shard_optimizer and self.world > 1:
            self.sharding = ShardedOptimizerState(optimizer)
        self.model, self.tokenizer, self.optimizer = model, tokenizer, optimizer
        self.state = state

    def _restore(self, ckpt: Checkpointer) -> tuple[int, float]:
        """Load the newest good checkpoint into the tracked objects; (step, wall seconds so far)."""
        if self.fsdp is not None:  # weights into the full copy, then sharded from it
            saved = ckpt.load_latest(self.fsdp.inference, None)
            if saved is not None:
                self.fsdp.load(load_optimizer_state(saved["path"]) if self.optimizer is not None else None)
        else:
            saved = ckpt.load_latest(self.model, self.optimizer)
        if saved is None:
            raise SpkitError(f"--resume: no complete checkpoint under {ckpt.root}")
        diffs = identity_diff(self.cfg, saved.get("config", {}))
        if diffs:
            raise SpkitError("--resume: this config differs from the checkpoint's in " + "; ".join(diffs)
                             + " (use another --out, or --overwrite to start afresh)")
        if self.sharding is not None:
            self.sharding.drop_unowned()
        for key, obj in self.state.items():
            obj.load_state_dict(saved["extra"][key])
            if hasattr(obj, "load_files"):
                obj.load_files(Path(saved["path"]) / key)
        return int(saved["step"]), float(saved["extra"].get("_wall", 0.0))

    def _save(self, ckpt: Checkpointer, step: int, wall: float, optimizer_state: dict | None = None) -> None:
        model = inference_model(self.model) if self.model is not None else None
        if model is not None and not finite_weights(model):
            raise SpkitError(f"step {step}: the weights hold NaN or inf (training diverged: is the "
                             "learning rate too high?); nothing was saved, the last good checkpoint is "
                             f"{ckpt.latest()} (--resume continues from it)")
        extra = {k: v.state_dict() for k, v in self.state.items()} | {"_wall": wall}
        files = {k: v for k, v in self.state.items() if hasattr(v, "save_files")}
        ckpt.save(step, model, self.tokenizer, self.optimizer, extra, as_json(self.cfg), files, optimizer_state)

    # ---- the loop ---------------------------------------------------------------------------------
    def loop(self, step: Callable[[int], Metrics], evaluate: Callable[[int], Metrics] | None = None,
             stop: Callable[[Metrics], bool] | None = None, split_rollouts: bool = True) -> History:
        """Run `step` from the start (or the resumed step) to `cfg.steps`, the time budget, or the
        first step whose metrics satisfy `stop` (an algorithm's own budget, e.g. samples drawn);
        the step that ends the run is evaluated and checkpointed like the last one. Ctrl-C ends
        the run after the step under way, checkpointed, with one line naming the step.

        Under torchrun each step runs inside `spkit.parallel.split_rollouts()`: the ranks hold the
        same batch and every sampler splits its rows across them. A trainer that gives each rank
        its own rows itself (GRPO, RFT, SPIRAL, the LM preference learners) passes
        `split_rollouts=False`."""
        cfg = self.cfg
        if cfg.fsdp and self.fsdp is None:
            raise SpkitError(f"--fsdp: {self.name} tracks no model to shard (a tabular run?)")
        ckpt = Checkpointer(self.out, cfg.keep_checkpoints) if self.out else None
        start, wall0 = self._restore(ckpt) if cfg.resume else (0, 0.0)
        logger = MetricLogger(self.out, cfg.tensorboard, start if cfg.resume else None) if self.writes else None
        self.rows = logger.history if logger else []  # the logger appends to its own history
        evaluate = evaluate or (lambda t: {})
        try:
            with self._stop_on_interrupt() as interrupted:
                return self._steps(self._scoped(step, split_rollouts), evaluate, stop, start, wall0, ckpt,
                                   logger, interrupted)
        finally:
            if logger is not None:
                logger.close()
            if self._lock is not None:
                self._lock.close()
                self._lock = None
            set_default_backend(self._backend_before)

    def _steps(self, step, evaluate, stop, start: int, wall0: float, ckpt: Checkpointer | None,
               logger: MetricLogger | None, interrupted: threading.Event) -> History:
        cfg = self.cfg
        if start > 0 and rank0_decides(stop is not None and bool(self.rows) and stop(self.rows[-1])):
            return self._finish()  # resuming a run that had already met its own budget: nothing to add
        evaluate = self._guarded(evaluate)
        first = evaluate(0) if start == 0 and self.rank == 0 else {}
        if first:  # the untrained start, as the baseline of every curve
            self._log(logger, 0, first)
        bar = self._bar(start)
        for t in range(start, cfg.steps):
            metrics = step(t)
            done = t + 1
            self._guard(done, metrics, ckpt)
            wall = wall0 + time.perf_counter() - self.t_begin
            spent = cfg.max_minutes > 0 and wall > 60 * cfg.max_minutes
            halt = rank0_decides(interrupted.is_set())
            last = done == cfg.steps or halt or rank0_decides(spent or (stop is not None and stop(metrics)))
            if (self.eval_at(done) or last) and self.rank == 0 and not halt:
                metrics = {**metrics, **evaluate(done)}
            if metrics:
                self._log(logger, done, {**metrics, "train/wall_seconds": wall})
            if ckpt is not None and (done % cfg.checkpoint_every == 0 or last):
                gathered = (self.sharding.full_state_dict() if self.sharding is not None  # every rank
                            else self.fsdp.optimizer_state() if self.fsdp is not None and self.optimizer else None)
                if self.rank == 0:
                    self._save(ckpt, done, wall0 + time.perf_counter() - self.t_begin, gathered)
            self._advance(bar, done, wall)
            if halt:
                bar.close()
                kept = f"checkpoint step {done} saved; --resume continues from it" if ckpt else "nothing was saved"
                raise SpkitError(f"interrupted after step {done}/{cfg.steps}: {kept}")
            if last:
                break
        bar.close()
        return self._finish()

    def _guarded(self, evaluate: Callable[[int], Metrics]) -> Callable[[int], Metrics]:
        """Under --fsdp, rank 0 evaluates alone, so a forward of the sharded model (a collective)
        would wait for ranks that never come: it stops with one line instead."""
        if self.fsdp is None:
            return evaluate

        def refuse(module, args, kwargs) -> None:
            raise SpkitError(f"--fsdp: {self.name}'s evaluation ran the sharded model, which needs every rank; "
                             "evaluate on spkit.models.inference_model(model)")

        def guarded(t: int) -> Metrics:
            hook = self.model.register_forward_pre_hook(refuse, with_kwargs=True)
            try:
                return evaluate(t)
            finally:
                hook.remove()

        return guarded

    @staticmethod
    def _scoped(step: Callable[[int], Metrics], split: bool) -> Callable[[int], Metrics]:
        def scoped(t: int) -> Metrics:
            with parallel.split_rollouts(split):
                return step(t)

        return scoped

    @contextlib.contextmanager
    def _stop_on_interrupt(self) -> Iterator[threading.Event]:
        """The first Ctrl-C ends the run after the step under way, checkpointed (a step cut in
        half would leave weights and optimizer out of step with each other); a second aborts."""
        interrupted = threading.Event()
        if threading.current_thread() is not threading.main_thread():
            yield interrupted
            return

        def on_sigint(signum, frame) -> None:
            if interrupted.is_set():
                raise KeyboardInterrupt
            interrupted.set()
            print(f"\n{self.name}: interrupted; stopping after this step (Ctrl-C again aborts)",
                  file=sys.stderr, flush=True)

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield interrupted
        finally:
            signal.signal(signal.SIGINT, previous)

    def _guard(self, step: int, metrics: Metrics, ckpt: Checkpointer | None) -> None:
        """Stop a diverged run with one line before anything of it is saved."""
        bad = {k: v for k, v in metrics.items() if (k.startswith("losses/") or k == "train/loss")
               and not math.isfinite(v)}
        if bad:
            k, v = next(iter(bad.items()))
            where = (f"the last good checkpoint is {ckpt.latest()} (--resume continues from it)"
                     if ckpt is not None and ckpt.latest() else "no checkpoint was written")
            raise SpkitError(f"step {step}: {k} is {v} (training diverged: is the learning rate too high?); "
                             f"stopped, {where}")

    def _log(self, logger: MetricLogger | None, step: int, metrics: Metrics) -> None:
        if self.rank != 0:
            return
        if logger is not None:
            logger.log(step, **metrics)
        else:
            self.rows.append({"step": step, **{k: float(v) for k, v in metrics.items()}})
        if self.callback is not None:
            self.callback(step, dict(metrics))

    def _bar(self, start: int):
        quiet = {"disable": True} if self.rank != 0 or self.out is None else {}  # in-memory runs are quiet
        if self.cfg.max_minutes > 0:  # the budget ends the run: count seconds, show steps beside
            return progress(total=round(60 * self.cfg.max_minutes), unit="s", desc=f"{self.name} (time budget)",
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{postfix}]", **quiet)
        return progress(total=self.cfg.steps, initial=start, desc=self.name, unit="step", **quiet)

    def _advance(self, bar, step: int, wall: float) -> None:
        if self.cfg.max_minutes > 0:  # wall time of the whole run, earlier sessions included
            bar.update(min(wall, bar.total) - bar.n)
            bar.set_postfix_str(f"step {step}/{self.cfg.steps}")
        else:
            bar.update(1)

    def _finish(self) -> History:
        rows = self.rows
        final = None
        if self.writes:
            if self.model is not None:  # written aside, then renamed: never a half-written final/
                final, tmp = self.out / "final", self.out / ".tmp_final"
                shutil.rmtree(tmp, ignore_errors=True)
                save_merged(inference_model(self.model), self.tokenizer, tmp)  # LoRA: merged; FSDP: the full copy
                if has_lora(self.model):
                    save_adapter(self.model, tmp / "adapter")  # and the adapters alone, for peft
                shutil.rmtree(final, ignore_errors=True)
                tmp.rename(final)
            if self.cfg.plot and self.plot_keys and any(k in r for r in rows for k in self.plot_keys):
                plot_metrics(rows, self.plot_keys, self.out / f"{self.name}.png", title=self.name)
        return History(rows, self.out, final)
