"""The one training loop (`spkit.run`): run identity, crash safety, validation, budget, CLI.

Each test here is a fault a hostile or careless user could trigger before the loop existed
(a second run into an old directory, a crash mid-log, a corrupt newest checkpoint, two writers,
`--lr nan`, a kill -9 during a checkpoint, ...), pinned down so it cannot come back.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from spkit.algos import spiral, sppo
from spkit.cli import main
from spkit.config import param, validate
from spkit.errors import SpkitError
from spkit.run import Run, RunConfig
from spkit.run.metrics import MetricLogger, read_metrics

FAST = dict(family="three_cycle", mode="sampled", tensorboard=False, plot=False)




def _spiral_cfg(tiny_dir: Path, out: Path, **kw) -> spiral.Config:
    base = dict(model=str(tiny_dir), steps=3, episodes=3, eval_every=0, eval_games=0, checkpoint_every=1,
                out=str(out), plot=False, tensorboard=False)
    return spiral.Config(**{**base, **kw})


# ---- run identity ------------------------------------------------------------------------------
def test_a_fresh_run_refuses_a_directory_holding_another_run(tmp_path):
    sppo.train(sppo.Config(steps=20, out=str(tmp_path), **FAST))
    with pytest.raises(SpkitError, match="already holds a run.*--resume.*--overwrite"):
        sppo.train(sppo.Config(steps=8, seed=5, out=str(tmp_path), **FAST))
    h = sppo.train(sppo.Config(steps=8, seed=5, out=str(tmp_path), overwrite=True, **FAST))
    assert h.rows[-1]["step"] == 8 and [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_0000008"]
    assert json.loads((tmp_path / "run.json").read_text())["config"]["seed"] == 5


def test_resume_refuses_a_checkpoint_of_another_config_and_names_the_fields(tmp_path):
    sppo.train(sppo.Config(steps=10, out=str(tmp_path), **FAST))
    with pytest.raises(SpkitError, match=r"differs .* in seed: 0 \(checkpoint\) vs 1 \(now\); eta: 1\.0 \(checkpoint\) vs 0\.5"):
        sppo.train(sppo.Config(steps=20, eta=0.5, seed=1, out=str(tmp_path), resume=True, **FAST))
    with pytest.raises(SpkitError, match="holds a 'sppo' run, not 'nash_mp'"):
        from spkit.algos import nash_mp

        nash_mp.train(nash_mp.Config(steps=20, out=str(tmp_path), resume=True, **FAST))
    h = sppo.train(sppo.Config(steps=20, out=str(tmp_path), resume=True, **FAST))  # steps may change
    assert h.rows[-1]["step"] == 20


# ---- crash safety -------------------------------------------------------------------------------
def test_a_crash_while_logging_loses_at_most_the_line_being_written(tmp_path, monkeypatch):
    log = MetricLogger(tmp_path, tensorboard=False)
    for s in range(3):
        log.log(s, **{"train/loss": 1.0 / (s + 1)})

    def crash(self, row):  # the process dies while writing a row
        raise KeyboardInterrupt

    import csv

    monkeypatch.setattr(csv.DictWriter, "writerow", crash)
    with pytest.raises(KeyboardInterrupt):
        log.log(3, **{"train/loss": 0.25})
    monkeypatch.undo()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.csv")] == [0, 1, 2]
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("3,0.2")  # a line cut off by the crash
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.csv")] == [0, 1, 2]
    resumed = MetricLogger(tmp_path, tensorboard=False, resume_step=2)
    resumed.log(3, **{"train/loss": 0.25})
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.csv")] == [0, 1, 2, 3]


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_complete_one(tiny_dir, tmp_path, capsys):
    straight = spiral.train(_spiral_cfg(tiny_dir, tmp_path / "a"))
    spiral.train(_spiral_cfg(tiny_dir, tmp_path / "b", steps=2))
    (tmp_path / "b" / "checkpoints" / "step_0000002" / "model.safetensors").write_bytes(b"garbage")
    resumed = spiral.train(_spiral_cfg(tiny_dir, tmp_path / "b", resume=True))
    assert "unreadable" in capsys.readouterr().err and (tmp_path / "b" / "checkpoints" / "corrupt_step_0000002").is_dir()
    a = (straight.final_dir / "model.safetensors").read_bytes()
    assert a == (resumed.final_dir / "model.safetensors").read_bytes()  # step 1 -> 3 equals 0 -> 3


def test_two_processes_cannot_write_one_run_directory(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        with pytest.raises(SpkitError, match=r"another process is writing to .* \(pid 4242\)"):
            sppo.train(sppo.Config(steps=5, out=str(tmp_path), **FAST))
    sppo.train(sppo.Config(steps=5, out=str(tmp_path), **FAST))  # released: runs


KILLER = """
import os, signal, sys, torch
from spkit.algos import spiral
from spkit.run import checkpoint
real_save = torch.save
def save(obj, path, *a, **k):  # the optimizer file is written after the model: die in between
    if "step_0000003" in str(path):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, path, *a, **k)
checkpoint.torch.save = save
spiral.train(spiral.Config(model=sys.argv[1], steps=4, episodes=3, eval_every=0, eval_games=0,
                           checkpoint_every=1, out=sys.argv[2], plot=False, tensorboard=False))
"""


def test_a_second_models_weights_round_trip_and_a_bad_directory_is_one_line(tmp_path):
    """`save_tensors` / `load_weights`: how trainers keep a second model (a frozen reference, a
    value model) in their checkpoints."""
    from spkit.run.checkpoint import load_weights, save_tensors

    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    save_tensors(a.state_dict(), tmp_path / "ref" / "model.safetensors")
    load_weights(b, tmp_path / "ref")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    (tmp_path / "empty").mkdir()
    for where, why in (("empty", "no \\*.safetensors file"), ("ref", "do not match the model: size mismatch")):
        other = torch.nn.Linear(4, 2) if where == "ref" else b
        with pytest.raises(SpkitError, match=f"checkpoint .*{where} is unreadable: .*{why}") as e:
            load_weights(other, tmp_path / where)
        assert "\n" not in str(e.value)


def test_sigkill_while_writing_a_checkpoint_resumes_from_the_last_complete_one(tiny_dir, tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(script), str(tiny_dir), str(tmp_path / "b")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    ck = tmp_path / "b" / "checkpoints"
    assert (ck / ".tmp_step_0000003").is_dir() and not (ck / "step_0000003").exists()  # killed mid-write
    resumed = spiral.train(_spiral_cfg(tiny_dir, tmp_path / "b", steps=4, resume=True))
    straight = spiral.train(_spiral_cfg(tiny_dir, tmp_path / "a", steps=4))
    assert (straight.final_dir / "model.safetensors").read_bytes() == (
        resumed.final_dir / "model.safetensors").read_bytes()
    assert [r["step"] for r in resumed.rows] == [0, 1, 2, 3, 4]


# ---- bad numbers and divergence -----------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["--temperature", "nan"], "--temperature must be a finite number"),
    (["--rae-alpha", "1.5"], "--rae-alpha must be <= 1"),
    (["--resume", "--overwrite"], "contradict"),
])
def test_bad_values_are_one_line_errors_before_any_work(flags, message, tmp_path, capsys):
    rc = main(["train", "spiral", "--out", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_validation_reads_the_dataclass():
    from dataclasses import dataclass

    @dataclass
    class C(RunConfig):
        beta: float = param(0.1, "a coefficient", ge=0)
        names: tuple[str, ...] = param(("a",), "some names", choices=("a", "b"))

    validate(C())
    for bad, msg in ((dict(beta=float("nan")), "finite"), (dict(beta=-1.0), ">= 0"), (dict(beta="x"), "float"),
                     (dict(names=("c",)), "one of a, b"), (dict(steps=2.5), "--steps must be int")):
        with pytest.raises(SpkitError, match=msg):
            validate(C(**bad))


def test_a_diverged_run_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 2)
    model.save_pretrained = lambda path, **kw: (Path(path) / "model.safetensors").write_bytes(b"w")

    class Loss:
        def __init__(self):
            self.v = 1.0

        def state_dict(self):
            return {"v": self.v}

        def load_state_dict(self, s):
            self.v = s["v"]

    run = Run(RunConfig(steps=6, checkpoint_every=1, out=str(tmp_path), tensorboard=False), "toy")
    run.track(model=model, loss=Loss())

    def step(t):
        return {"losses/policy": 1.0 if t < 3 else math.nan}

    with pytest.raises(SpkitError, match=r"step 4: losses/policy is nan .* last good checkpoint is .*step_0000003"):
        run.loop(step)
    assert not (tmp_path / "final").exists() and [r["step"] for r in read_metrics(tmp_path / "metrics.csv")] == [
        1, 2, 3]
    with torch.no_grad():
        model.weight.fill_(math.inf)  # finite loss, broken weights: nothing is saved either
    run = Run(RunConfig(steps=6, checkpoint_every=1, out=str(tmp_path / "b"), tensorboard=False), "toy")
    run.track(model=model, loss=Loss())
    with pytest.raises(SpkitError, match="weights hold NaN or inf"):
        run.loop(lambda t: {"losses/policy": 0.5})


def test_ctrl_c_finishes_the_step_checkpoints_it_and_resume_equals_a_straight_run(tmp_path, capsys):
    from spkit.testing import tiny_random_model

    def train(out, resume=False, interrupt_at=None):
        run = Run(RunConfig(steps=6, checkpoint_every=100, out=str(out), tensorboard=False, plot=False,
                            resume=resume), "toy")
        model, tok = tiny_random_model(layers=1, hidden=16)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        run.track(model=model, tokenizer=tok, optimizer=opt)

        def step(t):
            if t == interrupt_at:  # SIGINT arrives in the middle of this step
                os.kill(os.getpid(), signal.SIGINT)
            ids = torch.randint(0, len(tok), (2, 8))  # the RNG is part of the checkpointed state
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            return {"losses/policy": loss.item()}

        return run.loop(step)

    train(tmp_path / "straight")
    with pytest.raises(SpkitError, match=r"interrupted after step 3/6: checkpoint step 3 saved; --resume"):
        train(tmp_path / "cut", interrupt_at=2)
    assert "interrupted; stopping after this step" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    assert not (tmp_path / "cut" / "final").exists()
    train(tmp_path / "cut", resume=True)
    losses = [[r["losses/policy"] for r in read_metrics(tmp_path / d / "metrics.csv")] for d in ("straight", "cut")]
    assert len(losses[0]) == 6 and losses[0] == losses[1]


# ---- budget, progress, help ------------------------------------------------------------------------------
def test_the_progress_bar_counts_the_time_budget_not_the_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPKIT_NO_PROGRESS", "0")
    sppo.train(sppo.Config(steps=100_000, max_minutes=0.02, out=str(tmp_path), **FAST))
    err = capsys.readouterr().err
    assert "sppo (time budget)" in err and "/1 s" in err and "step " in err and "/100000" in err
    assert "100000/100000" not in err  # the budget, not the step count, ended the run


def test_help_is_generated_from_the_config(capsys):
    with pytest.raises(SystemExit):
        main(["train", "sppo", "--help"])
    out = capsys.readouterr().out
    for flag, doc in (("--eta", "step size of the multiplicative-weights update"), ("--max-minutes", "wall-clock"),
                      ("--resume", "newest complete checkpoint"), ("--family", "preference family")):
        assert flag in out and doc in " ".join(out.split())
    assert "(default: runs/sppo)" in " ".join(out.split())


# ---- several processes -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_a_preference_learner_runs_under_torchrun_with_rank0_writing(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import json, os
        from spkit.algos import sppo
        h = sppo.train(sppo.Config(steps=40, family="three_cycle", mode="sampled", out={str(tmp_path / "out")!r},
                                   tensorboard=False))
        json.dump(h.pi_last.tolist(), open({str(tmp_path)!r} + "/pi" + os.environ["RANK"] + ".json", "w"))
    """))
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script)],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    pi0, pi1 = (json.loads((tmp_path / f"pi{k}.json").read_text()) for k in (0, 1))
    assert np.allclose(pi0, pi1)
    rows = read_metrics(tmp_path / "out" / "metrics.csv")
    assert [int(r["step"]) for r in rows].count(40) == 1  # one writer
    assert (tmp_path / "out" / "sppo.png").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_under_torchrun_the_run_loop_averages_gradients_for_any_trainer(tmp_path):
    """A trainer with no distributed code of its own: each rank draws other data, yet the replicas
    end equal, and unlike a one-process run on rank 0's data (the gradients were averaged before
    each step of the tracked optimizer)."""
    script = tmp_path / "toy.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch
        from spkit.run import Run, RunConfig
        from spkit.testing import tiny_random_model
        run = Run(RunConfig(steps=3, tensorboard=False, plot=False), "toy")
        model, tok = tiny_random_model(layers=1, hidden=16)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        run.track(model=model, tokenizer=tok, optimizer=opt)

        def step(t):
            g = torch.Generator().manual_seed(1000 * run.rank + t)  # each rank its own data
            ids = torch.randint(0, len(tok), (2, 8), generator=g)
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            return {{"losses/policy": loss.item()}}

        run.loop(step)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        torch.save(flat, {str(tmp_path)!r} + "/w" + os.environ.get("RANK", "solo") + ".pt")
    """))
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script)],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    solo = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert solo.returncode == 0, solo.stderr[-2000:]
    w0, w1, w_solo = (torch.load(tmp_path / f"w{k}.pt") for k in ("0", "1", "solo"))
    assert torch.equal(w0, w1) and not torch.allclose(w0, w_solo)


# ---- --device / --dtype ---------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["rft", "online_iterative_dpo", "spiral"])
def test_every_trainer_loads_its_model_in_the_runs_dtype(algo, tiny_dir, tmp_path):
    """`--dtype` is a run-loop flag: the trainers load through `spkit.run.model_for`, so a
    bfloat16 run trains and saves bfloat16 weights (one trainer per model-loading path)."""
    import importlib

    from spkit.algos import ALGOS
    from spkit.run import model_for

    mod = importlib.import_module(ALGOS[algo][0])
    cfg = mod.Config(model=str(tiny_dir), steps=0, eval_every=0, out=str(tmp_path / "r"), dtype="bfloat16",
                     plot=False, tensorboard=False)
    model, _ = model_for(cfg)
    assert next(model.parameters()).dtype == torch.bfloat16
    with pytest.raises(SpkitError, match="unknown dtype 'float64'"):
        model_for(mod.Config(model=str(tiny_dir), dtype="float64"))
    if algo != "spiral":  # spiral's bf16 path is the qwen preset's, exercised on GPUs
        mod.train(dataclasses.replace(cfg, eval_limit=2))
        saved = json.loads((tmp_path / "r" / "final" / "config.json").read_text())
        assert saved.get("dtype", saved.get("torch_dtype")) == "bfloat16"
