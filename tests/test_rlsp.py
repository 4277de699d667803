"""RLSP: the exploration reward by hand, the bound (a wrong answer never out-scores a right one,
and does without it), and the trainer (determinism, exact resume, the command line)."""

from __future__ import annotations

import random

import pytest
import torch

from spkit.algos import rlsp
from spkit.cli import main
from spkit.errors import SpkitError
from spkit.rl import verifiable as V
from spkit.testing import check_seed_and_resume

PROBLEM = {"question": "q", "answer": "3 + 4 = 7\n#### 7"}


def test_distinct_steps_counts_distinct_lines_before_the_answer():
    assert rlsp.distinct_steps(" 3 + 4 = 7\n7 - 2 = 5\n#### 5") == 2
    assert rlsp.distinct_steps(" 3 + 4 = 7\n3 + 4 = 7 \n\n 7 - 2 = 5\n#### 5\n9 + 9 = 18") == 2  # repeats, blanks,
    assert rlsp.distinct_steps(" #### 7") == 0  # and lines after the answer do not count
    assert rlsp.distinct_steps("a\nb\nc") == 3  # no answer line: every line is an intermediate step


def test_exploration_and_shaped_reward_hand_worked():
    assert rlsp.explore_reward([0, 2, 8, 12], cap=8).tolist() == [0.0, 0.25, 1.0, 1.0]
    assert rlsp.explore_reward([0, 2, 8, 12], cap=8, bound=False).tolist() == [0.0, 0.25, 1.0, 1.5]
    r = rlsp.shaped_reward(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.25, 1.0, 0.0]), alpha=0.8)
    assert r.tolist() == pytest.approx([0.8 + 0.2 * 0.25, 0.2, 0.8])


def test_with_the_bound_a_wrong_answer_never_out_scores_a_right_one():
    """Worst case for the bound: a right answer with no steps against a wrong one with any
    number of distinct steps; every α > 1/2 keeps a gap of at least 2α − 1."""
    rng = random.Random(0)
    for alpha in (0.51, 0.6, 0.8, 1.0):
        for _ in range(200):
            n_wrong = rng.randint(0, 500)
            right = rlsp.shaped_reward(torch.tensor(1.0), rlsp.explore_reward(0, cap=8), alpha)
            wrong = rlsp.shaped_reward(torch.tensor(0.0), rlsp.explore_reward(n_wrong, cap=8), alpha)
            assert right - wrong >= 2 * alpha - 1 - 1e-6 > 0
    # end to end through the scorer: a right one-liner beats a long wrong answer
    cfg = rlsp.Config(alpha=0.8, explore_cap=2)
    texts = [" #### 7", "\n".join(f"{i} + 1 = {i + 1}" for i in range(40)) + "\n#### 8"]
    correct = V.score(texts, [PROBLEM], 2)
    r = rlsp.shaped_reward(correct, rlsp.explore_reward([rlsp.distinct_steps(t) for t in texts], 2, cfg.bound), 0.8)
    assert correct.tolist() == [1.0, 0.0] and r[0] > r[1]
    assert rlsp.wrong_beats_right(r, correct, 2) == 0.0


def test_without_the_bound_a_long_wrong_answer_out_scores_a_right_one():
    r = rlsp.shaped_reward(torch.tensor([1.0, 0.0]), rlsp.explore_reward([0, 40], cap=8, bound=False), 0.8)
    assert r[1] > r[0]  # 0.2·5 = 1.0 > 0.8: what --no-bound lets the policy learn
    assert rlsp.wrong_beats_right(r, torch.tensor([1.0, 0.0]), 2) == 1.0


def test_alpha_at_most_half_is_refused_with_the_bound(tmp_path, capsys):
    with pytest.raises(SpkitError, match="alpha"):
        rlsp.check_bound(rlsp.Config(alpha=0.5))
    rlsp.check_bound(rlsp.Config(alpha=0.5, bound=False))  # the ablation may
    assert main(["train", "rlsp", "--alpha", "0.4", "--out", str(tmp_path / "x")]) == 2
    assert "--no-bound" in capsys.readouterr().err


# ---- the trainer


def _cfg(tiny_dir, **kw) -> rlsp.Config:
    return rlsp.Config(model=str(tiny_dir), problems=3, k=3, max_new_tokens=8, eval_limit=1, eval_every=1,
                       plot=False, tensorboard=False, lr=1e-3, micro_batch=4, **kw)



def test_same_seed_same_numbers_and_resume_equals_straight_run(tiny_dir, parity_reward, tmp_path):
    cfg = _cfg(tiny_dir)
    a = check_seed_and_resume(rlsp.train, cfg, tmp_path)
    rows = [r for r in a.rows if "train/explore" in r]
    assert len(rows) == 2 and all(r["train/wrong_beats_right"] == 0.0 for r in rows)
    assert all(r["train/shaped_reward"] != r["train/reward"] for r in rows)  # the shaping is in
    assert any(r.get("losses/grad_norm", 0) > 0 for r in a.rows)


def test_spkit_train_rlsp_no_bound_runs_from_the_command_line(tiny_dir, parity_reward, tmp_path):
    out = tmp_path / "rlsp"
    rc = main(["train", "rlsp", "--model", str(tiny_dir), "--steps", "1", "--problems", "2", "--k", "2",
               "--max-new-tokens", "4", "--eval-limit", "1", "--no-bound", "--alpha", "0.5", "--no-tensorboard",
               "--no-plot", "--out", str(out)])
    assert rc == 0 and (out / "final" / "model.safetensors").exists()
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "train/distinct_steps" in header and "eval/completion_len" in header
