"""STaR and B-STaR (spkit.algos.star / b_star) and the exact step checker they lean on.

Known answers (the balance score, the step checker, the selection rule, the prompts), the
restart from the base weights, the held-out and dev problems never reaching training, and
determinism / exact resume of both trainers on a random tiny model.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from spkit.algos import b_star, star
from spkit.rl import verifiable as V
from spkit.sampling import Completion
from spkit.tasks import arithmetic, steps
from spkit.testing import check_seed_and_resume

Q = ("Mia has 3 apples. She buys 4 more apples. Then she gives away 2 apples. "
     "How many apples does Mia have now?")


# ---- the step checker (the process reward B-STaR uses)


def test_parse_question_inverts_the_generator():
    assert arithmetic.parse_question(Q) == (3, [("+", 4), ("-", 2)])
    q = ("Leo has 12 coins. He splits them into 3 equal groups and keeps one group. Then he ends up with "
         "2 times as many coins. How many coins does Leo have now?")
    assert arithmetic.parse_question(q) == (12, [("/", 3), ("*", 2)])
    for p in arithmetic.generate(200, 3, split="train"):
        start, ops = arithmetic.parse_question(p["question"])
        chain = [ln.split(" ") for ln in p["answer"].split("\n")[:-1]]
        assert start == int(chain[0][0]) and ops == [(c[1], int(c[2])) for c in chain]
    with pytest.raises(ValueError, match="not a generated"):
        arithmetic.parse_question("What is 2 + 2?")


@pytest.mark.parametrize(("completion", "want"), [
    (" 3 + 4 = 7\n7 - 2 = 5\n#### 5", [True, True]),  # the gold solution
    ("3 + 4 = 8\n8 - 2 = 6\n#### 6", [False, True]),  # a slip, then carried on correctly
    ("3 + 4 = 7\n7 - 3 = 4\n#### 4", [True, False]),  # a number miscopied from the question
    ("4 + 3 = 7\n7 - 2 = 5\n#### 5", [False, True]),  # not the question's first operation
    ("3 + 4 = 7\n7 - 2 = 5\n#### 6", [True, False]),  # the final line contradicts the last step
    ("3 + 4 = 7\n#### 7", [False]),  # stopped before the question's last operation
    ("3 + 4 = 7\n7 - 2 = 5", [True, False]),  # never concluded with #### n
    ("3 + 4 = 7\n7 - 2 = 5\n5 + 1 = 6\n#### 6", [True, True, False]),  # an operation too many
    ("3 + 4 = 7\nso 7 - 2 = 5\n#### 5", [True, False]),  # not a step line
    ("#### 5", [False]), ("", [False]),  # the right number with no reasoning is one wrong step
    ("3 + 4 = 7\n7 - 2 = 5\n#### 5\n9 + 9 = 1", [True, True]),  # after the answer: ignored
])
def test_check_steps_known_answers(completion, want):
    assert arithmetic.check_steps(Q, completion) == want


def test_check_steps_finds_processbenchs_first_wrong_step():
    """On `spkit.tasks.steps` records (errors injected at known steps) the first step the checker
    rejects is the record's label, and no step is rejected in a clean record."""
    n = 0
    for subset in steps.SUBSETS:
        for rec in steps.generate(60, 1, subset):
            ok = arithmetic.check_steps(rec["problem"], "\n".join(rec["steps"]))
            assert next((i for i, x in enumerate(ok) if not x), -1) == rec["label"]
            n += rec["label"] >= 0
    assert n >= 80  # about half the records carry an error


# ---- B-STaR: score, selection, balance score


def test_balance_score_hand_worked():
    # query 1: 8 right of 10 -> min(8/8, 1)·0.8 = 0.8; query 2: 2 of 4 -> (2/8)·(1/2) = 0.125;
    # query 3: 0 of 3 -> 0; query 4 selects nothing and is left out of the mean
    assert b_star.balance_score([8, 2, 0, 0], [10, 4, 3, 0], 8) == pytest.approx((0.8 + 0.125 + 0) / 3)
    assert b_star.balance_score([12], [12], 8) == 1.0  # enough right ones, all right
    assert b_star.balance_score([3], [3], 4) == pytest.approx(0.75)
    assert b_star.balance_score([0], [0], 8) == 0.0


def test_sample_score_is_prm_weight_times_min_step_plus_outcome():
    probs = [{"question": Q, "answer": "3 + 4 = 7\n7 - 2 = 5\n#### 5"}]
    texts = [" 3 + 4 = 7\n7 - 2 = 5\n#### 5", "3 + 4 = 8\n8 - 3 = 5\n#### 5", "3 + 4 = 7\n#### 7", "#### 5"]
    scores, right, steps_ok = b_star.sample_scores(texts, probs, 4, prm_weight=0.2)
    assert scores == pytest.approx([1.2, 1.0, 0.0, 1.0])
    assert right == [True, True, False, True] and steps_ok == [True, False, False, False]


def test_selection_threshold_cap_dedup_and_gold():
    scores = [1.2, 0.0, 1.0, 1.2, 1.0]  # the last entry is the gold (score 1.0)
    texts = ["a", "b", "c", "a", "g"]
    # sorted: 0 (1.2), 3 (1.2), 2 (1.0), 4 (1.0), 1 (0.0); ties keep pool order
    assert b_star.select(scores, texts, 0.5, 3) == [0, 2]  # top 3 = [0, 3, 2], then "a" once
    assert b_star.select(scores, texts, 0.5, 4) == [0, 2, 4]  # the gold joins
    assert b_star.select(scores, texts, 1.0, 8) == [0]  # strictly above θ: 1.0 is out, gold too
    assert b_star.select(scores, texts, -0.5, 8) == [0, 2, 4, 1]  # everything, wrong ones last
    assert b_star.select(scores, texts, 1.5, 8) == []
    pool = b_star.pools(["x", "y"], [0.0, 1.2], [False, True], [{"answer": "1 + 1 = 2\n#### 2"}], 2)
    assert pool == [(["x", "y", " 1 + 1 = 2\n#### 2"], [0.0, 1.2, b_star.GOLD_SCORE], [False, True, True])]


def test_grid_stats_hand_worked():
    probs = [{"question": Q, "answer": "#### 5"}, {"question": Q, "answer": "#### 7"}]
    texts = ["#### 5", "#### 5", "#### 4", "#### 7", "#### 1", "#### 2"]  # K = 3 per query
    scores, right, _ = b_star.sample_scores(texts, probs, 3, 0.2)
    st = b_star.grid_stats(texts, scores, right, probs, 3, theta=0.5, m=8, n_star=2)
    # query 1: selected {"#### 5", gold} (the repeat dropped): n = n' = 2 -> 1.0
    # query 2: selected {"#### 7", gold}: n = n' = 2 -> 1.0; distinct right samples: 1 and 1
    assert st == {"balance": 1.0, "exploration": 1.0, "exploitation": 1.0}
    st = b_star.grid_stats(texts, scores, right, probs, 3, theta=-0.5, m=8, n_star=2)
    # query 1: {5, 4, gold} -> n' 2 of 3 -> 1·2/3; query 2: {7, 1, 2, gold} -> 2 of 4 -> 1·1/2
    assert st["balance"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert st["exploitation"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_selected_rows_add_the_gold_with_the_plain_prompt(random_tiny):
    from spkit.generation import Sampler

    model, tok = random_tiny
    sampler = Sampler(model, tok)
    probs = [{"question": Q, "answer": "3 + 4 = 7\n7 - 2 = 5\n#### 5"}]
    pids = sampler.encode(arithmetic.prompt(Q))
    outs = [Completion("p", t, pids, [5 + i], [0.0], "eos") for i, t in enumerate(["#### 4", "#### 5"])]
    cfg = b_star.Config(k=2, m=8)
    scores, right, _ = b_star.sample_scores([o.text for o in outs], probs, 2, 0.2)
    prompts, C, n_gold = b_star.selected_rows(outs, probs, cfg, 0.5, scores, right, sampler)
    assert n_gold == 1 and prompts == [pids, pids]
    assert C[0] == [6]  # the right sample, then the gold ending in EOS
    assert C[1][-1] == tok.eos_token_id and tok.decode(C[1][:-1]) == " 3 + 4 = 7\n7 - 2 = 5\n#### 5"


# ---- STaR: prompts, rationalisation, restart from the base


class _ScriptedSampler:
    """Answers a hinted prompt with its hint's number and a plain one with 0 (every pool problem
    has an answer > 0 here), so the first attempt fails and the rationalisation succeeds."""

    def __init__(self, tok) -> None:
        self.tokenizer, self.prompts = tok, []

    def encode(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt)["input_ids"])

    def generate(self, prompts, params=None, seed=None, progress=False):
        self.prompts.append(list(prompts))
        outs = []
        for p in prompts:
            hint = re.findall(r"\(The answer is (\d+)\.\)\nAnswer:$", p)
            text = f" #### {hint[0] if hint else 0}"
            outs.append(Completion(p, text, self.encode(p), self.tokenizer(text, add_special_tokens=False)[
                "input_ids"], [0.0], "eos"))
        return outs


def test_rationalisation_prompt_has_the_hint_and_the_training_prompt_does_not(random_tiny):
    _, tok = random_tiny
    cfg = star.Config(problems=4, shots=2)
    pool, shots = star.pool_and_shots(cfg)
    pool = [p for p in pool if arithmetic.target(p) != "0"][:3]
    sampler = _ScriptedSampler(tok)
    data, info = star.collect(sampler, pool, shots, cfg, seed=0)
    plain, hinted = sampler.prompts
    assert info == {"samples": 6, "reward": 0.0}  # 3 attempts + 3 rationalisations, counted
    for p, fs, hp in zip(pool, plain, hinted, strict=True):
        assert fs == star.fewshot_prompt(shots, p["question"]) and "The answer is" not in fs
        assert fs.count("Question:") == 3 and fs.endswith(arithmetic.prompt(p["question"]))
        assert hp.endswith(arithmetic.prompt(f"{p['question']} (The answer is {arithmetic.target(p)}.)"))
        assert hp.count("(The answer is") == 3  # the shots carry their hints too
    assert data.rationalized == [True, True, True]
    assert [tok.decode(ids) for ids in data.prompt_ids] == [arithmetic.prompt(p["question"]) for p in pool]
    assert [tok.decode(c) for c in data.completion_ids] == [f" #### {arithmetic.target(p)}" for p in pool]
    sampler = _ScriptedSampler(tok)
    data, info = star.collect(sampler, pool, shots, dataclasses.replace(cfg, rationalize=False), seed=0)
    assert len(sampler.prompts) == 1 and len(data) == 0 and info["samples"] == 3  # the ablation


def test_shots_and_pool_are_disjoint_train_problems():
    pool, shots = star.pool_and_shots(star.Config(problems=50, shots=3))
    assert len(pool) == 50 and len(shots) == 3
    assert not {p["question"] for p in pool} & {s["question"] for s in shots}
    assert all(arithmetic.split_of(p["question"]) == "train" and not arithmetic.in_dev(p["question"])
               for p in pool + shots)
    assert star.pool_and_shots(star.Config(problems=50, shots=0))[1] == []


def test_step_budget_grows_by_a_fifth():
    cfg = star.Config(sft_steps=40)
    assert [star.step_budget(cfg, n) for n in range(4)] == [40, 48, 58, 70]  # 40·1.2^n, rounded up


def test_finetune_starts_from_the_base_whatever_the_current_weights(random_tiny):
    model, tok = random_tiny
    base = {k: v.clone() for k, v in model.state_dict().items()}
    data = star.Dataset()
    data.prompt_ids = [tok(arithmetic.prompt(Q))["input_ids"]] * 3
    data.completion_ids = [tok(" 3 + 4 = 7\n7 - 2 = 5\n#### 5", add_special_tokens=False)["input_ids"]] * 3
    data.rationalized = [False] * 3
    cfg = star.Config(lr=1e-2, batch_size=2)
    star.finetune_from_base(model, base, data, 3, cfg, seed=1)
    first = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(not torch.equal(first[k], base[k]) for k in base)  # it trained
    star.finetune_from_base(model, base, data, 3, cfg, seed=1)  # from `first`, were it continuing
    assert all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    star.finetune_from_base(model, base, star.Dataset(), 3, cfg, seed=1)  # nothing kept: the base
    assert all(torch.equal(base[k], v) for k, v in model.state_dict().items())


# ---- the trainers end to end on a random tiny model


@pytest.fixture()
def fake_reward(monkeypatch):
    """A random tiny model never answers right; reward a text by its length's parity instead,
    so both trainers keep something and their update paths run."""
    real = V.score

    def score(completions, problems, k, mode="strict"):
        real(completions, problems, k, mode)
        texts = [c if isinstance(c, str) else c.text for c in completions]
        return torch.tensor([float(len(t) % 2 == 0) for t in texts])

    monkeypatch.setattr(V, "score", score)


def _cfgs(tiny_dir, out=""):
    common = dict(model=str(tiny_dir), max_new_tokens=6, eval_limit=1, eval_every=1, out=out, plot=False,
                  tensorboard=False, lr=1e-3)
    return {"star": star.Config(**common, problems=6, shots=1, sft_steps=2, batch_size=2, temperature=0.7),
            "b_star": b_star.Config(**common, problems=3, k=3, dev_per_level=1, dev_k=2, temperatures=(0.5, 1.0),
                                    thetas=(-0.5, 0.5), m=2, batch_size=2)}



@pytest.mark.parametrize("name", ["star", "b_star"])
def test_same_seed_same_numbers_and_resume_equals_straight_run(name, tiny_dir, fake_reward, tmp_path):
    mod = {"star": star, "b_star": b_star}[name]
    cfg = _cfgs(tiny_dir)[name]
    a = check_seed_and_resume(mod.train, cfg, tmp_path)
    assert any(r.get("losses/grad_norm", 0) > 0 for r in a.rows)  # the update ran
    if name == "star":  # 6 attempts per iteration + one rationalisation per failure
        assert a.last("train/samples") == pytest.approx(sum(6 + 6 * (1 - r["train/reward"]) for r in a.rows
                                                            if "train/kept" in r))
        assert a.last("train/sft_steps") == 3  # ceil(2 · 1.2)
    else:  # per iteration: 4 dev problems × 2 samples × 2 temperatures + 3 × 3 train samples
        assert a.last("train/samples") == 2 * (16 + 9)
        assert {r["train/theta"] for r in a.rows if "train/theta" in r} <= {-0.5, 0.5}


def test_star_fine_tunes_the_base_weights_every_iteration(tiny_dir, fake_reward, monkeypatch):
    """Each iteration's fine-tune starts from the loaded model's weights, not the last iterate."""
    from spkit.models import load_model

    base, _ = load_model(str(tiny_dir))
    want = base.state_dict()
    starts: list[bool] = []
    real = V.sft_minibatches

    def record(model, *args, **kw):
        starts.append(all(torch.equal(v, want[k]) for k, v in model.state_dict().items()))
        return real(model, *args, **kw)

    monkeypatch.setattr(V, "sft_minibatches", record)
    hist = star.train(dataclasses.replace(_cfgs(tiny_dir)["star"], steps=3))
    assert len(starts) == 3 and all(starts)
    assert all(r["losses/grad_norm"] > 0 for r in hist.rows if "losses/grad_norm" in r)


def _question(prompt: str) -> str:
    q = prompt.rsplit("Question: ", 1)[-1].removesuffix("\nAnswer:")
    return re.sub(r" \(The answer is \d+\.\)$", "", q)


@pytest.mark.parametrize("name", ["star", "b_star"])
def test_heldout_and_dev_problems_never_enter_training(name, tiny_dir, fake_reward, monkeypatch):
    from spkit.generation import Sampler

    sampled: list[str] = []
    trained: list[str] = []
    real_gen, real_sft = Sampler.generate, V.sft_minibatches

    def gen(self, prompts, params=None, seed=None, progress=False, row_seeds=None):
        sampled.extend(_question(p) for p in prompts)
        return real_gen(self, prompts, params, seed, progress, row_seeds)

    def sft(model, optimizer, prompt_ids, *args, **kw):
        trained.extend(_question(tok.decode(p)) for p in prompt_ids)
        return real_sft(model, optimizer, prompt_ids, *args, **kw)

    from spkit.models import load_model

    _, tok = load_model(str(tiny_dir))
    monkeypatch.setattr(Sampler, "generate", gen)
    monkeypatch.setattr(V, "sft_minibatches", sft)
    mod = {"star": star, "b_star": b_star}[name]
    mod.train(dataclasses.replace(_cfgs(tiny_dir)[name], steps=2))
    held = {p["question"] for p in V.heldout_problems()}
    assert trained and all(arithmetic.split_of(q) == "train" and not arithmetic.in_dev(q) for q in trained)
    assert not set(trained) & held
    assert held & set(sampled)  # the evaluation ran on held-out problems (and only there)
    if name == "b_star":
        dev = [q for q in sampled if arithmetic.in_dev(q)]
        assert len(dev) == 2 * 2 * 4 * 2  # the search sampled dev problems, and never trained on them


def test_cli_runs_star_and_b_star_one_step(tiny_dir, tmp_path, capsys):
    from spkit.cli import main

    common = ["--model", str(tiny_dir), "--steps", "1", "--max-new-tokens", "4", "--eval-limit", "1",
              "--no-tensorboard", "--no-plot", "--threads", "1"]
    assert main(["train", "star", *common, "--problems", "3", "--shots", "1", "--sft-steps", "1",
                 "--no-rationalize", "--out", str(tmp_path / "s")]) == 0
    assert main(["train", "b_star", *common, "--problems", "2", "--k", "2", "--dev-per-level", "1",
                 "--dev-k", "2", "--temperatures", "0.7", "--thetas", "0.5", "--out", str(tmp_path / "b")]) == 0
    assert "held-out strict accuracy" in capsys.readouterr().out
    assert (tmp_path / "s" / "final").is_dir() and (tmp_path / "b" / "metrics.csv").is_file()


def test_plot_balance_draws_the_papers_figure_from_the_csv(tmp_path):
    from spkit.run.metrics import MetricLogger

    log = MetricLogger(tmp_path, tensorboard=False)
    for t in range(1, 4):
        log.log(t, **{"dev/balance": 0.1 * t, "dev/exploration": t, "dev/exploitation": 1.0,
                      "train/temperature": 0.5 + 0.2 * t, "train/theta": 0.5, "eval/strict": 0.3})
    log.close()
    fig = b_star.plot_balance(tmp_path / "metrics.csv", title="B-STaR")
    axes = fig.get_axes()
    assert len(axes) == 4 and len(axes[3].get_lines()) == 2
    assert list(axes[0].get_lines()[0].get_ydata()) == pytest.approx([0.1, 0.2, 0.3])
    from spkit.errors import SpkitError

    with pytest.raises(SpkitError, match="nothing to plot"):
        b_star.plot_balance([{"step": 1, "eval/strict": 0.3}])
