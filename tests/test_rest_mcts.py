"""ReST-MCTS*: UCT, backup and inferred values on hand-built trees (known answers), the value
model's save/load, same seed → same numbers and resume = straight run (value model included),
and smoke runs of the search, the compute comparison and the tree plot on a random tiny model."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch

from spkit.algos import rest_mcts as R
from spkit.generation import Sampler
from spkit.rl import verifiable as V
from spkit.tasks import arithmetic
from spkit.testing import check_seed_and_resume, tiny_random_model

PROBLEM = {"question": "Mia has 3 apples. She buys 4 more apples. Then she gives away 2 apples. "
                       "How many apples does Mia have now?", "answer": "3 + 4 = 7\n7 - 2 = 5\n#### 5", "steps": 2}


def _child(parent: R.Node, step: str, V: float = 0.0, N: int = 0, complete: bool = False) -> R.Node:
    n = R.Node(step, parent, parent.depth + 1, V=V, N=N, complete=complete)
    parent.children.append(n)
    return n


# ---- known answers


def test_uct_picks_by_hand_computed_scores():
    root = R.Node(N=4)
    a = _child(root, "a", V=0.5, N=1)  # 0.5 + 0.4·√(2 ln 4 / 1) = 1.1660
    b = _child(root, "b", V=0.6, N=3)  # 0.6 + 0.4·√(2 ln 4 / 3) = 0.9845
    assert R.uct(a, 4, 0.4) == pytest.approx(1.16604, abs=1e-4)
    assert R.uct(b, 4, 0.4) == pytest.approx(0.98450, abs=1e-4)
    assert R.best_child(root, 0.4, random.Random(0)) is a
    c = _child(root, "c", V=0.2, N=0)  # unvisited: 0.2 + 1 = 1.2 beats a
    assert R.best_child(root, 0.4, random.Random(0)) is c
    assert R.best_child(root, 0.0, random.Random(0)) is c  # c = 0: exploitation, unvisited still first
    c.N = 1
    assert R.best_child(root, 0.0, random.Random(0)) is b  # then the highest V
    # selection descends through expanded nodes only
    d = _child(c, "d", V=0.9)
    c.V = 2.0
    assert R.select(root, 0.4, random.Random(0)) is d


def test_backup_is_the_visit_weighted_mean_of_the_children():
    root = R.Node()
    a = _child(root, "a", V=0.9, N=2)
    b = _child(root, "b", V=0.3, N=1)
    _child(root, "c", V=1.0, N=0)  # unvisited children do not count
    x = _child(a, "x", V=0.6, N=1)
    _child(a, "y", V=0.0, N=0)
    R.backup(a)
    assert a.N == 3 and pytest.approx(0.6) == a.V  # only x visited
    assert root.N == 1 and pytest.approx((3 * 0.6 + 1 * 0.3) / 4) == root.V
    assert x.N == 1 and b.N == 1


def test_inferred_values_on_a_hand_built_tree():
    """root → a → {b: right answer, c: wrong answer}; root → d: wrong answer.
    m: b 1, a 2, root 3; c takes a's m (2), d the root's (3).
    v_a = 0 + 1/2 = 0.5;  v_b = 0.5 + 0.5/1 = 1;  v_c = max(0, 0.5 − 0.5/2) = 0.25;  v_d = max(0, 0 − 1/3) = 0."""
    tree = R.Tree(PROBLEM)
    a = _child(tree.root, " 3 + 4 = 7")
    b = _child(a, "7 - 2 = 5\n#### 5", complete=True)
    c = _child(a, "7 - 2 = 4\n#### 4", complete=True)
    d = _child(tree.root, "#### 9", complete=True)
    e = _child(d.parent, "3 + 5 = 8")  # not complete, no correct leaf below: no target
    targets = dict(R.infer_values(tree))
    assert (b.correct, c.correct, d.correct) == (True, False, False)
    assert (a.m, b.m, c.m, d.m, tree.root.m) == (2, 1, 2, 3, 3)
    assert (a.target, b.target, c.target, d.target) == (0.5, 1.0, 0.25, 0.0)
    assert e.target is None and len(targets) == 4
    assert targets[tree.context(a).rstrip("\n")] == 0.5
    assert R.verified_traces(tree) == [" 3 + 4 = 7\n7 - 2 = 5\n#### 5"]
    no_correct = R.Tree(PROBLEM)
    _child(no_correct.root, "#### 1", complete=True)
    assert R.infer_values(no_correct) == []  # a tree with no correct leaf gives no targets


def test_majority_vote():
    assert R.majority(["3", None, "4", "4", "3"]) == "3"  # a tie: the first seen
    assert R.majority(["3", "4", "4"]) == "4"
    assert R.majority([None, None]) is None


# ---- the value model


def test_value_model_starts_at_one_half_fits_and_round_trips(tmp_path):
    model, tok = tiny_random_model()
    vm = R.ValueModel.from_policy(model, tok, lr=1e-2)
    texts = ["Question: a\nAnswer: 1 + 1 = 2", "Question: b\nAnswer:", "Question: c\nAnswer: 7"]
    assert vm(texts) == pytest.approx([0.5, 0.5, 0.5])
    before = vm.fit(texts, [1.0, 0.0, 1.0], epochs=1, batch=3, seed=0)
    assert before == pytest.approx(0.25)
    after = vm.fit(texts, [1.0, 0.0, 1.0], epochs=30, batch=3, seed=0)
    assert after < 0.1
    vm.save_pretrained(tmp_path / "value")
    assert not list((tmp_path / "value").glob("*.bin")) and (tmp_path / "value" / "model.safetensors").exists()
    back = R.ValueModel.load(tmp_path / "value")
    assert back(texts) == pytest.approx(vm(texts), abs=1e-6)
    from transformers import AutoModelForSequenceClassification

    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "value", use_safetensors=True)
    assert plain.config.num_labels == 1
    # batching does not change a value (right padding, read at each text's last token)
    assert vm(texts, batch=1) == pytest.approx(vm(texts), abs=1e-5)


# ---- search smoke and properties (random tiny model)


def _cfg(**kw) -> R.Config:
    return R.Config(k=2, iterations=3, lookahead=1, step_tokens=6, max_depth=3, **kw)


def test_search_builds_trees_counts_tokens_and_repeats_with_the_seed():
    model, tok = tiny_random_model()
    vm = R.ValueModel.from_policy(model, tok)
    sampler = Sampler(model, tok)
    problems = arithmetic.generate(3, 0, split="train")
    trees = R.search(sampler, vm, problems, _cfg(), seed=5)
    again = R.search(sampler, vm, problems, _cfg(), seed=5)
    for t, u in zip(trees, again, strict=True):
        assert [n.step for n in t.root.nodes()] == [n.step for n in u.root.nodes()]
        assert t.tokens == u.tokens > 0
        assert t.root.N >= 1
        for n in t.root.nodes():
            assert len({c.step for c in n.children}) == len(n.children) <= 2  # distinct, at most k
            assert n.depth <= 3 and (n.depth < 3 or n.complete or not n.children)
            assert not (n.complete and n.children)  # a complete solution is never expanded
    got = R.final_answers(sampler, trees, V.ARITH, seed=1)
    assert all(text and n >= t.tokens for (text, n), t in zip(got, trees, strict=True))
    assert [t.tokens for t in trees] == [t.tokens for t in again]  # reading the answers changes no tree


@pytest.mark.slow  # ~30 s: every method on 4 problems
def test_accuracy_vs_compute_rows_and_plot_tree(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, tok = tiny_random_model()
    vm = R.ValueModel.from_policy(model, tok)
    problems = arithmetic.generate(4, 0, steps=(3, 4), split="dev")
    rows = R.accuracy_vs_compute(model, tok, vm, problems, ns=(1, 2), iterations=(1, 2), cfg=_cfg(), seed=0)
    assert [(r["method"], r["setting"]) for r in rows] == [
        ("greedy", 1), ("best_of_n_majority", 1), ("best_of_n_value", 1), ("best_of_n_majority", 2),
        ("best_of_n_value", 2), ("mcts_value", 1), ("mcts_value", 2)]
    bon = {r["setting"]: r["tokens"] for r in rows if r["method"] == "best_of_n_majority"}
    assert 0 < bon[1] < bon[2]  # the first N of one sample set: more samples, more tokens
    assert all(0 <= r["accuracy"] <= 1 and {"accuracy/level_3", "accuracy/level_4"} <= set(r) for r in rows)
    tree = R.search(Sampler(model, tok), vm, problems[:1], _cfg(), seed=0)[0]
    R.infer_values(tree)
    fig, ax = plt.subplots()
    R.plot_tree(tree, ax)
    assert len(ax.collections) >= len(tree.root.nodes())
    plt.close(fig)


# ---- the trainer


@pytest.fixture()
def even_is_right(monkeypatch):
    """A random tiny model never answers right: call a solution right when its length is even,
    so trees have correct leaves and both updates run."""
    monkeypatch.setattr(arithmetic, "is_correct", lambda text, gold, mode="strict": len(text) % 2 == 0)


@pytest.mark.slow  # ~30 s: three short training runs
def test_same_seed_same_numbers_and_resume_with_the_value_model(tiny_dir, even_is_right, tmp_path):
    from safetensors.torch import load_file

    cfg = dataclasses.replace(_cfg(), model=str(tiny_dir), problems=2, eval_limit=1, eval_every=1,
                              value_epochs=2, tensorboard=False, plot=False)
    a = check_seed_and_resume(R.train, cfg, tmp_path)
    assert a.last("train/value_targets") > 0 and a.last("train/traces") > 0
    assert a.last("losses/grad_norm") > 0 and not math.isnan(a.last("losses/value"))
    assert a.last("train/tokens") > a.last("train/samples") > 0
    va, vc = (load_file(str(tmp_path / x / "value" / "model.safetensors")) for x in ("a", "c"))
    assert all(torch.equal(va[k], vc[k]) for k in va), "the resumed run's value model differs"
    vb = load_file(str(tmp_path / "b" / "value" / "model.safetensors"))
    start = R.ValueModel.from_policy(*tiny_random_model())
    assert not torch.equal(vb["score.weight"], start.model.score.weight.detach())  # the value model trained
