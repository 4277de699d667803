"""The language-model preference game (spkit.rl.lm_preference) and the learners' `--mode lm`.

Known answers: classes of hand-written completions, the class game's winner, exploitability of
hand-picked class counts, the Nash-MD loss by hand, Nash-MP's proximal step in closed form.
Properties: judges are antisymmetric, the learned judge recovers the cycle, the mixture sampler
at c = 1 is the reference model, same seed same numbers, resume = straight run.
Smoke: every learner's LM step for two steps on a random tiny model.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from spkit.algos import inpo, nash_md, nash_mp, online_dpo, rlhf_bt, spo, sppo
from spkit.errors import SpkitError
from spkit.rl import lm_preference as lmp
from spkit.rl import preference_games as pg
from spkit.rl.losses import nash_md_loss
from spkit.solvers.matrix import exploitability, regularized_exploitability, von_neumann_winner
from spkit.testing import check_seed_and_resume

# ---- known answers


def test_classes_of_hand_written_completions():
    assert lmp.classify("The sea looks small today.") == 0
    assert lmp.classify('"A CAT IS BIG TODAY.') == 0
    assert lmp.classify("It makes me happy.") == 1
    assert lmp.classify('"People love to see it. More text') == 1
    assert lmp.classify("The day ends well.") == 2
    assert lmp.classify("X 2 players antes 1") == 3
    assert lmp.classify("The sea looks small.") == 3  # no "today": not the describe template
    assert lmp.classify("") == 3


def test_class_game_winner_and_exploitability_by_hand():
    P = lmp.class_matrix(0.2, 0.3, 0.4)
    # 3-cycle with margins x, y, z: winner ∝ (y, z, x); "other" loses to everything
    np.testing.assert_allclose(von_neumann_winner(P), [3 / 9, 4 / 9, 2 / 9, 0.0], atol=1e-6)
    # all mass on "describe": "routine" beats it by ½ + z
    assert exploitability(P, np.array([1.0, 0, 0, 0])) == pytest.approx(0.4)
    # all mass on "other": every class beats it by ½ + 0.4
    assert exploitability(P, np.array([0, 0, 0, 1.0])) == pytest.approx(0.4)


def test_exploitability_interval_on_known_counts():
    P = lmp.class_matrix()
    rng = np.random.default_rng(0)
    # two prompts at the exact winner (9 samples: 3, 4, 2, 0): exploitability 0, interval from 0 up
    e, lo, hi = lmp.exploitability_interval(np.array([[3, 4, 2, 0], [6, 8, 4, 0]]), P, rng)
    assert e == pytest.approx(0.0, abs=1e-12) and lo >= -1e-12 and hi > 0
    # a deterministic prompt (all "describe", 0.4) and one at the winner (0): mean 0.2, no spread
    # from the first, so the interval's lower end is at least 0.2
    e, lo, hi = lmp.exploitability_interval(np.array([[50, 0, 0, 0], [300, 400, 200, 0]]), P, rng)
    assert e == pytest.approx(0.2) and lo >= 0.2 - 1e-12 and e <= hi < 0.25  # lo > e: the upward bias
    with pytest.raises(Exception, match="at least one sample"):
        lmp.exploitability_interval(np.array([[0, 0, 0, 0]]), P, rng)


def test_nash_md_loss_pinned_values():
    """TRL's Nash-MD loss, mean(β·kl − (p − ½)·Σ_t log π) with kl = Σ_t sg(log π − log π_ref)·log π,
    worked by hand on two completions (β = 0.1):
      row 1: log π = (−1, −2), log π_ref = (−1.5, −1.0), mask (1, 1), p = 0.8
             Σ log π = −3; (p − ½)·Σ = 0.3·(−3) = −0.9; kl = 0.5·(−1) + (−1.0)·(−2) = 1.5
             loss = 0.1·1.5 − (−0.9) = 1.05
      row 2: log π = (−0.5, −3), log π_ref = (−0.25, 0), mask (1, 0), p = 0.2
             Σ log π = −0.5; (p − ½)·Σ = (−0.3)(−0.5) = 0.15; kl = (−0.25)(−0.5) = 0.125
             loss = 0.0125 − 0.15 = −0.1375
      mean = (1.05 − 0.1375)/2 = 0.45625.
    Gradient wrt log π (mean over 2 rows): row 1 token t: (β·(log π − log π_ref)_t − (p − ½))/2
      = (0.05 − 0.3)/2 = −0.125 and (−0.1 − 0.3)/2 = −0.2; row 2: (−0.025 + 0.3)/2 = 0.1375 and 0 (masked)."""
    lp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0], [-0.25, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    p = torch.tensor([0.8, 0.2])
    per = nash_md_loss(lp, ref, mask, p, beta=0.1, reduction="none")
    torch.testing.assert_close(per, torch.tensor([1.05, -0.1375]))
    loss = nash_md_loss(lp, ref, mask, p, beta=0.1)
    assert loss.item() == pytest.approx(0.45625)
    loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-0.125, -0.2], [0.1375, 0.0]]))


def test_nash_mp_takes_the_proximal_step():
    """One exact step equals [π_t π_ref^{ητ} exp(η P π_{t+½})]^{1/(1+ητ)} (normalised), with
    π_{t+½} the same proximal step against π_t; and at ητ = 3 it converges to π*_τ (the
    linearised weights 1 − ητ = −2 would not)."""
    P = lmp.class_matrix()
    ref = np.full(4, 0.25)
    theta = np.array([0.5, -0.2, 0.1, 0.0])
    cfg = nash_mp.Config(eta=3.0, tau=1.0)

    def prox(log_pi, payoff):
        return pg.log_softmax((log_pi + cfg.eta * cfg.tau * np.log(ref) + cfg.eta * payoff) / (1 + cfg.eta * cfg.tau))

    log_pi = pg.log_softmax(theta)
    half = prox(log_pi, P @ np.exp(log_pi))
    want = prox(log_pi, P @ np.exp(half))
    np.testing.assert_allclose(nash_mp.exact_step(theta, P, np.log(ref), cfg), want, atol=1e-12)
    th = theta
    for _ in range(300):
        th = nash_mp.exact_step(th, P, np.log(ref), cfg)
    assert regularized_exploitability(P, pg.softmax(th), ref, cfg.tau) < 1e-8


def test_nash_md_mixture_coefficient():
    assert nash_md.mixture_coef(nash_md.Config(eta=0.5, tau=0.01)) == pytest.approx(0.005)  # the paper's ητ
    assert nash_md.mixture_coef(nash_md.Config(eta=0.5, tau=0.01, mixture=0.5)) == 0.5  # TRL's


# ---- properties


def test_group_oracle_draws_follow_the_class_matrix():
    P = lmp.class_matrix()
    o = lmp.GroupOracle(np.array([0, 1, 2, 3]), np.random.default_rng(0), P=P)
    i, j = np.zeros(20000, int), np.full(20000, 2)
    assert o(i, j).mean() == pytest.approx(P[0, 2], abs=0.015)  # describe vs routine: 0.1
    assert o.calls == 20000


def test_learned_judge_recovers_the_cycle():
    texts = {0: "The sea looks small today.", 1: "It makes me happy.", 2: "We go there every week.",
             3: "X 2 players antes."}
    P = lmp.class_matrix()
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 3000), rng.integers(0, 4, 3000)
    wins = rng.random(3000) < P[a, b]
    judge = lmp.LearnedJudge(seed=0)
    judge.fit([texts[k] for k in a], [texts[k] for k in b], wins)
    t = [texts[k] for k in range(4)]
    Q = np.array([[judge.prob([t[i]], [t[j]])[0] for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(Q + Q.T, 1.0, atol=1e-12)  # antisymmetric by construction
    assert np.abs(Q - P).max() < 0.08  # the cycle a scalar reward cannot hold
    assert Q[0, 1] > 0.5 and Q[1, 2] > 0.5 and Q[2, 0] > 0.5


def test_mixture_sampler_at_c1_is_the_reference(random_tiny):
    from spkit.testing import tiny_random_model

    model, tok = random_tiny
    other, _ = tiny_random_model(seed=1)
    ids = [tok("Tell me about the sea.\n")["input_ids"]] * 3
    a = lmp.mixture_generate(model, other, ids, 1.0, 5, set(), seed=7)
    b = lmp.mixture_generate(other, model, ids, 0.0, 5, set(), seed=7)
    assert a == b and all(len(x) == 5 for x in a)
    c = lmp.mixture_generate(model, other, ids, 0.0, 5, set(), seed=7)
    assert c != a  # the two models do differ


# ---- smoke and reproducibility on a random tiny model

LM_ALGOS = [spo, sppo, inpo, nash_md, nash_mp, online_dpo, rlhf_bt]


def _lm_cfg(mod, tiny_dir, **kw):
    extra = {"K": 3} | ({"n_pairs": 20} if mod is rlhf_bt else {})
    return mod.Config(mode="lm", model=str(tiny_dir), topics=2, max_new_tokens=4, eval_samples=4, eval_every=1,
                      threads=1, lm_lr=1e-3, **extra, **kw)


@pytest.mark.parametrize("mod", LM_ALGOS, ids=lambda m: m.__name__.split(".")[-1])
def test_every_learner_runs_on_a_language_model(mod, tiny_dir):
    h = mod.train(dataclasses.replace(_lm_cfg(mod, tiny_dir), steps=2))
    last = h.rows[-1]
    assert last["step"] == 2 and last["train/oracle_calls"] > 0
    assert 0.0 <= last["eval/exploitability_last_lo"] <= last["eval/exploitability_last"] + 1e-12
    assert sum(last[k] for k in ("eval/class_describe", "eval/class_feeling", "eval/class_routine",
                                 "eval/class_other")) == pytest.approx(1.0)
    assert all(math.isfinite(v) for k, v in last.items() if k.startswith("losses/"))


def test_learned_judge_run(tiny_dir):
    h = sppo.train(dataclasses.replace(_lm_cfg(sppo, tiny_dir), steps=1, judge="learned", judge_pairs=30))
    assert h.rows[-1]["train/oracle_calls"] > 0


@pytest.mark.parametrize("mod", [sppo, pytest.param(nash_mp, marks=pytest.mark.slow)], ids=["sppo", "nash_mp"])
def test_lm_seed_and_resume(mod, tiny_dir, tmp_path):
    a = check_seed_and_resume(mod.train, _lm_cfg(mod, tiny_dir), tmp_path)
    assert a.rows[-1]["train/oracle_calls"] > 0


# ---- the explorer's LM mode --------------------------------------------------------------------------------
def test_lm_explorer_reads_each_prompts_classes_across_iterations(tiny_dir, tmp_path):
    from spkit.algos.preference_game import topic_key
    from spkit.widgets.preference import LMPreferenceExplorer

    h = sppo.train(dataclasses.replace(_lm_cfg(sppo, tiny_dir), steps=2, out=str(tmp_path / "run"), plot=False,
                                       tensorboard=False))
    for ex in (LMPreferenceExplorer(h.rows), LMPreferenceExplorer.from_run(tmp_path / "run")):
        assert ex.topics() == list(lmp.TOPICS[:2])
        steps, q = ex.distribution(1)
        assert steps.tolist() == [0, 1, 2] and q.shape == (3, len(lmp.CLASSES))
        assert np.allclose(q.sum(1), 1.0)
        assert all(v * 4 == round(v * 4) for v in q.flatten())  # shares of eval_samples = 4 answers
        ex.topic = 1
        ex.plot()
        assert ex.table_html().count("<tr>") == 1 + 1 + 3  # header, winner, t = 0, 1, 2
    last = h.rows[-1]  # the per-prompt shares average to the logged overall shares
    for c, name in enumerate(lmp.CLASSES):
        assert np.mean([last[topic_key(g, c)] for g in range(2)]) == pytest.approx(last[f"eval/class_{name}"])


def test_lm_explorer_known_answers_and_errors(tmp_path):
    from spkit.algos.preference_game import topic_key
    from spkit.widgets.preference import LMPreferenceExplorer

    shares = [[1.0, 0.0, 0.0, 0.0], [0.25, 0.5, 0.25, 0.0]]
    rows = [{"step": t, **{topic_key(0, c): s for c, s in enumerate(q)}} for t, q in enumerate(shares)]
    rows.append({"step": 2, "losses/policy": 0.1})  # a training row: no evaluation
    ex = LMPreferenceExplorer(rows)
    assert ex.topics() == [lmp.TOPICS[0]]
    steps, q = ex.distribution()
    assert steps.tolist() == [0, 1] and np.array_equal(q, np.array(shares))
    P = lmp.class_matrix()
    # all "describe": the best response is "routine", which beats it with probability ½ + z = 0.9
    assert ex.exploitabilities()[0] == pytest.approx(0.4)
    assert ex.exploitabilities()[1] == pytest.approx(exploitability(P, np.array(shares[1])))
    with pytest.raises(SpkitError, match="topic 3 was not evaluated"):
        ex.distribution(3)
    with pytest.raises(SpkitError, match="no metrics.csv"):
        LMPreferenceExplorer.from_run(tmp_path)
    with pytest.raises(SpkitError, match="unknown learner"):
        ex.train("PPO")
