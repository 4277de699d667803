"""SEC: the curriculum bandit by hand (TD(0) for all arms, Boltzmann probabilities, resumable
state), the arm reward, and the SEC trainer (determinism, exact resume, the command line)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from spkit.algos import grpo, sec
from spkit.cli import main
from spkit.errors import SpkitError
from spkit.rl.curriculum import Curriculum, arm_rewards
from spkit.sampling import Completion
from spkit.seeding import derive_seed
from spkit.testing import check_seed_and_resume

# ---- the bandit, by hand


def test_td0_updates_every_arm_and_unsampled_arms_decay():
    cur = Curriculum([1, 2, 3, 4], alpha=0.5, tau=0.4)
    cur.update({1: 0.8, 3: 0.4})  # arms 2 and 4 not drawn: r = 0
    assert cur.q == pytest.approx([0.4, 0.0, 0.2, 0.0])
    cur.update({2: 1.0})
    assert cur.q == pytest.approx([0.2, 0.5, 0.1, 0.0])  # 0.5·0.4, 0.5·0 + 0.5·1, 0.5·0.2, 0
    assert cur.t == 2


def test_boltzmann_probabilities_hand_worked():
    cur = Curriculum(["a", "b"], tau=0.4)
    assert cur.probs() == pytest.approx([0.5, 0.5])  # Q = 0: uniform
    cur.q = [0.4, 0.0]
    e = math.exp(0.4 / 0.4)
    assert cur.probs() == pytest.approx([e / (e + 1), 1 / (e + 1)])  # softmax(Q/τ) = (0.731, 0.269)


def test_sampling_follows_the_probabilities_and_the_seed():
    cur = Curriculum([1, 2, 3], tau=0.1)
    cur.q = [0.0, 0.3, 0.0]  # p(2) = e³/(e³ + 2) ≈ 0.909
    draws = cur.sample(4000, seed=7)
    assert draws == cur.sample(4000, seed=7) and draws != cur.sample(4000, seed=8)
    assert draws.count(2) / 4000 == pytest.approx(math.exp(3) / (math.exp(3) + 2), abs=0.02)
    assert set(draws) <= {1, 2, 3}


def test_baseline_curricula():
    rnd = Curriculum([1, 2, 3, 4], kind="random")
    rnd.q = [5.0, 0.0, 0.0, 0.0]  # ignored: uniform
    assert rnd.probs() == [0.25] * 4
    e2h = Curriculum([1, 2, 3, 4], kind="easy_to_hard", stage_steps=2)
    stages = []
    for _ in range(10):
        stages.append(e2h.sample(3, seed=0))
        e2h.update({})
    assert stages == [[1] * 3] * 2 + [[2] * 3] * 2 + [[3] * 3] * 2 + [[4] * 3] * 4  # then stays at the last


def test_state_dict_resumes_exactly():
    a = Curriculum([1, 2, 3, 4])
    a.update({1: 0.3, 2: 0.9})
    b = Curriculum([1, 2, 3, 4])
    b.load_state_dict(a.state_dict())
    assert b.q == a.q and b.t == a.t and b.sample(50, 3) == a.sample(50, 3)
    with pytest.raises(SpkitError):
        Curriculum([1, 2]).load_state_dict(a.state_dict())


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(SpkitError, match="unknown curriculum"):
        Curriculum([1, 2], kind="hardest_first")
    with pytest.raises(SpkitError, match="distinct arms"):
        Curriculum([1, 1])
    with pytest.raises(SpkitError, match="unknown arms"):
        Curriculum([1, 2]).update({3: 1.0})


def test_arm_reward_is_the_mean_absolute_advantage():
    adv = torch.tensor([0.75, -0.25, -0.25, -0.25, 0.0, 0.0, 0.5, -0.5])
    got = arm_rewards(adv, [1, 1, 1, 1, 2, 2, 1, 1])
    assert got == pytest.approx({1: (0.75 + 3 * 0.25 + 0.5 + 0.5) / 6, 2: 0.0})


# ---- SEC's steps


def test_draw_problems_gives_each_prompt_its_levels_problem():
    cur = Curriculum(sec.LEVELS)
    cur.q = [0.0, 0.0, 2.0, 0.0]  # almost always level 3
    probs = sec.draw_problems(cur, 12, seed=5)
    want = cur.sample(12, derive_seed(5, "arms"))
    assert [p["steps"] for p in probs] == want and want.count(3) >= 10
    assert len({p["question"] for p in probs}) == 12
    assert probs == sec.draw_problems(cur, 12, seed=5)


def test_bandit_step_rewards_the_level_with_mixed_answers():
    probs = [{"steps": 1}, {"steps": 2}]  # level 1 solved by half the group, level 2 by all
    comps = [Completion("p", "t", [1], [2], [0.0], "stop", [0.0])] * 4
    batch = grpo.Batch(comps, torch.tensor([1.0, 0.0, 1.0, 1.0]), 4, torch.zeros(4), probs)
    cfg = sec.Config(k=2, scale_rewards=False)
    cur = Curriculum(sec.LEVELS)
    m = sec.bandit_step(cur, batch, cfg)
    # level 1: advantages ±0.5 -> mean |A| 0.5; level 2: 0; levels 3, 4 not drawn: 0
    assert cur.q == pytest.approx([0.25, 0.0, 0.0, 0.0])
    assert m["curriculum/arm_reward_level_1"] == 0.5 and m["train/reward/level_2"] == 1.0
    sec.bandit_step(cur, dataclasses.replace(batch, rewards=torch.tensor([1.0, 1.0, 0.0, 1.0])),
                    dataclasses.replace(cfg, scale_rewards=True))
    # level 1 now all right (|A| = 0); level 2 = (0, 1): Bessel std √0.5, |A| = 0.5/(√0.5 + 1e-4)
    assert cur.q[0] == pytest.approx(0.125) and cur.q[1] == pytest.approx(0.5 * 0.5 / (math.sqrt(0.5) + 1e-4))


# ---- the trainer


def _cfg(tiny_dir, **kw) -> sec.Config:
    return sec.Config(model=str(tiny_dir), problems=4, k=3, max_new_tokens=6, eval_limit=1, eval_every=1,
                      plot=False, tensorboard=False, lr=1e-3, micro_batch=4, **kw)



def test_same_seed_same_numbers_and_resume_equals_straight_run(tiny_dir, parity_reward, tmp_path):
    cfg = _cfg(tiny_dir)
    a = check_seed_and_resume(sec.train, cfg, tmp_path, steps=3)
    q = [r for r in a.rows if "curriculum/q_level_1" in r]
    assert len(q) == 3 and any(r["curriculum/q_level_1"] != q[0]["curriculum/q_level_2"] for r in q)
    assert all(sum(r[f"curriculum/share_level_{lv}"] for lv in sec.LEVELS) == pytest.approx(1.0) for r in q)


def test_easy_to_hard_trains_on_level_one_first(tiny_dir, parity_reward):
    h = sec.train(dataclasses.replace(_cfg(tiny_dir), steps=2, curriculum="easy_to_hard", stage_steps=1,
                                      eval_every=0))
    shares = [(r["curriculum/share_level_1"], r["curriculum/share_level_2"]) for r in h.rows
              if "curriculum/share_level_1" in r]
    assert shares == [(1.0, 0.0), (0.0, 1.0)]


@pytest.mark.parametrize("curriculum", ["sec", "random"])
def test_spkit_train_sec_runs_from_the_command_line(tiny_dir, parity_reward, tmp_path, curriculum):
    out = tmp_path / curriculum
    rc = main(["train", "sec", "--model", str(tiny_dir), "--steps", "1", "--problems", "2", "--k", "2",
               "--max-new-tokens", "4", "--eval-limit", "1", "--curriculum", curriculum, "--no-tensorboard",
               "--no-plot", "--out", str(out)])
    assert rc == 0 and (out / "final" / "model.safetensors").exists()
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "curriculum/q_level_4" in header and "curriculum/share_level_1" in header


def test_bad_curriculum_is_one_clear_line(tmp_path, capsys):
    assert main(["train", "sec", "--sec-tau", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--sec-tau" in capsys.readouterr().err


def test_arm_rewards_pool_every_ranks_rows_when_given_a_cross_rank_sum():
    """Two ranks' shards, their per-arm counts and sums added as `global_sum` adds them, give the
    arm rewards of the whole batch; each rank asks for every arm in one order, even arms it lacks."""
    adv = torch.tensor([1.0, -3.0, 0.5, 2.0, -1.0, 4.0])
    arms = [1, 2, 1, 3, 2, 2]
    whole = arm_rewards(adv, arms)
    shards = [(adv[:3], arms[:3]), (adv[3:], arms[3:])]
    calls: list[list[float]] = [[], []]
    for r, (a, lab) in enumerate(shards):  # record what each rank would contribute, in call order
        arm_rewards(a, lab, (1, 2, 3), lambda x, r=r: calls[r].append(x) or 1.0)
    pooled = iter([x + y for x, y in zip(*calls, strict=True)])
    assert len(calls[0]) == len(calls[1])  # the same collective calls on both ranks
    both = arm_rewards(shards[0][0], shards[0][1], (1, 2, 3), lambda x: next(pooled))
    assert both == pytest.approx(whole) and set(both) == {1, 2, 3}
