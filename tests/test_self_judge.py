"""Iterative alignment on spkit_ifeval_lite: SPaR, online iterative DPO, Self-Rewarding (and the
temporal variant), the curated self-consuming loop, and their shared plumbing (spkit.rl.instruct,
spkit.rl.pairs, spkit.rl.self_judge).

Known answers (the DPO step's value at the reference, best/worst pairs with ties, judge parsing,
values and accuracy against the checkers, the seed data's balance, the Luce choice, the class
entropy, the win rate), the splits (train prompts never held-out or dev), the evaluation equal
to `spkit eval --tasks spkit_ifeval_lite`, refinements that keep their parent's prefix, and
determinism / exact resume / a smoke run of every trainer on a random tiny model.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from spkit.algos import online_iterative_dpo, self_consuming, self_rewarding, spar
from spkit.errors import SpkitError
from spkit.rl import instruct, pairs
from spkit.rl import self_judge as J
from spkit.rl.losses import dpo_loss, masked_mean, sequence_logps
from spkit.rl.verifiable import padded_logprobs
from spkit.tasks import instructions
from spkit.testing import check_seed_and_resume

ROOT = Path(__file__).resolve().parents[1]
LOWER = {"key": 1, "prompt": "Tell me about rain. Your entire response should be in English, and in all lowercase "
         "letters. No capital letters are allowed.", "instruction_id_list": ["change_case:english_lowercase"],
         "kwargs": [{}]}
TWO = {"key": 2, "prompt": "Tell me about rain. In your entire response, refrain from the use of any commas. "
       "Wrap your entire response with double quotation marks.",
       "instruction_id_list": ["punctuation:no_comma", "startend:quotation"], "kwargs": [{}, {}]}


# ---- known answers


def test_best_worst_takes_first_of_equals_and_drops_ties():
    s = [0.5, 1.0, 0.0, 1.0, 0.3, 0.3, 0.3, 0.3, 0.0, 0.5, 0.5, 0.0]
    assert pairs.best_worst(s, 4) == [(1, 2), None, (9, 8)]


def test_dpo_step_starts_at_log2_and_matches_the_loss_by_hand(random_tiny):
    model, tok = random_tiny
    P = [tok("Write about rain.")["input_ids"], tok("Tell me.")["input_ids"]]
    W = [tok(" it rains", add_special_tokens=False)["input_ids"], tok(" yes", add_special_tokens=False)["input_ids"]]
    L = [tok(" IT RAINS", add_special_tokens=False)["input_ids"], tok(" no no", add_special_tokens=False)["input_ids"]]
    ps = [pairs.Pair(p, w, lo) for p, w, lo in zip(P, W, L, strict=True)]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    # reference = the model itself: h = 0 for every pair, so the DPO loss is log 2
    st = pairs.dpo_update(model, opt, ps, beta=0.1, sft_coef=0.0)
    assert st["dpo"] == pytest.approx(math.log(2), abs=1e-6)
    # a given reference: −log σ(β h) and the SFT term, computed here by hand
    ref = (torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -4.0]))
    st = pairs.dpo_update(model, opt, ps, beta=0.5, sft_coef=0.1, ref=ref, micro_batch=1)
    with torch.no_grad():
        lw, mw = padded_logprobs(model, P, W)
        ll, ml = padded_logprobs(model, P, L)
        cw, cl = sequence_logps(lw, mw), sequence_logps(ll, ml)
        h = (cw + 3.0 - (cl + 2.0)), (cw[1] + 1.0 - (cl[1] + 4.0))
        want = -torch.nn.functional.logsigmoid(0.5 * torch.stack([h[0][0], h[1]])).mean()
        sft = masked_mean(-lw, mw, dim=-1).mean()
    assert st["dpo"] == pytest.approx(want.item(), abs=1e-5)
    assert st["dpo"] == pytest.approx(dpo_loss(cw, cl, *ref, beta=0.5).item(), abs=1e-5)
    assert st["sft"] == pytest.approx(sft.item(), abs=1e-5)


def test_dpo_step_raises_the_chosen_margin(random_tiny):
    model, tok = random_tiny
    p = tok("Write about rain.")["input_ids"]
    ps = [pairs.Pair(p, tok(" it rains", add_special_tokens=False)["input_ids"],
                     tok(" IT RAINS", add_special_tokens=False)["input_ids"])]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    st = pairs.dpo_update(model, opt, ps, beta=0.1, epochs=5)
    assert st["margin"] > 0 and st["pair_acc"] == 1.0 and st["dpo"] < math.log(2)


def test_judge_parse_and_values():
    assert [J.parse("verdict", t) for t in [" Yes", " yes.", " No", " Yesterday", "", " maybe"]] == [1, 1, 0, 0, 0, 0]
    assert J.parse("score", " 2\n") == 2.0 and math.isnan(J.parse("score", " two"))
    v = torch.tensor([[1.0, 1, 0, 0, 1], [0, 0, 0, 0, 1]])
    assert J.values("verdict", v, [LOWER]).tolist() == pytest.approx([0.6, 0.2])
    s = torch.tensor([[2.0, 1.0, float("nan")], [float("nan")] * 3, [1.0, 1.0, 1.0]])
    # TWO has 2 instructions: mean(2, 1) / 2 = 0.75; nothing parsed -> 0; LOWER has 1: 1/1
    assert J.values("score", s, [TWO, TWO, LOWER]).tolist() == [0.75, 0.0, 1.0]


def test_judge_accuracy_against_the_checkers():
    texts = ["the rain is soft today.", "The rain is soft today.", '"The rain is soft today."',
             '"The rain, it is soft today."']
    recs = [LOWER, LOWER, TWO, TWO]
    # checkers: lowercase ok / not; TWO: both followed (2) / the comma breaks one (1)
    assert J.oracle_labels("verdict", recs, texts) == [1, 0, 1, 0]
    assert J.oracle_labels("score", recs, texts) == [1, 0, 2, 1]
    m = J.accuracy("verdict", torch.tensor([0.8, 0.8, 0.2, 0.4]), recs, texts)
    assert m["judge/accuracy"] == 0.5 and m["judge/false_accept"] == 0.5 and m["judge/false_reject"] == 0.5
    m = J.accuracy("score", torch.tensor([1.0, 0.0, 0.5, 0.5]), recs, texts)
    assert m["judge/accuracy"] == 0.75  # round(0.5·2) = 1 ≠ 2 on the third


def test_seed_examples_are_checker_labelled_and_balanced():
    texts = ["The rain is soft today.", "the rain is soft today.", "Rain is cold.", "I like rain."]
    ex = J.seed_examples("verdict", [LOWER], texts, k=4)  # one passes the lowercase check, three fail
    assert [y for _, y in ex] == [" No", " Yes"]  # capped at the rarer label's count, in order
    assert ex[1][0] == J.judge_prompt("verdict", LOWER, "the rain is soft today.")
    assert len(J.seed_examples("verdict", [LOWER], texts, k=4, balance="none")) == 4


def test_digit_verdict_known_answers():
    """verdict01: the same question answered 1 / 0; parsing, targets, labels and values as for Yes / No."""
    assert J.target("verdict01", 1) == " 1" and J.target("verdict01", 0) == " 0"
    assert J.judge_prompt("verdict01", LOWER, " hi ").endswith("\nResponse: hi\nDoes the response follow every "
                                                              "instruction? Verdict (1 = yes, 0 = no):")
    assert [J.parse("verdict01", t) for t in [" 1", " 1.", " 0", " 10", " Yes", ""]] == [1, 1, 0, 0, 0, 0]
    texts = ["The rain is soft today.", "the rain is soft today.", "Rain is cold.", "I like rain."]
    assert [y for _, y in J.seed_examples("verdict01", [LOWER], texts, k=4)] == [" 0", " 1"]
    assert J.values("verdict01", torch.tensor([[1.0, 0, 1]]), [LOWER]).tolist() == pytest.approx([2 / 3])
    m = J.accuracy("verdict01", torch.tensor([0.8, 0.2]), [LOWER, LOWER], texts[:2])  # labels 0, 1: both wrong
    assert m["judge/false_reject"] == 1.0 and m["judge/false_accept"] == 1.0 and m["judge/accuracy"] == 0.0
    with pytest.raises(SpkitError, match="unknown balance"):
        J.seed_examples("verdict", [LOWER], texts, k=4, balance="halve")


def test_yes_is_three_tokens_in_spkit_tiny_and_the_digits_one(tiny):
    """The measured cause of SPaR's all-No judge (assets/results/spar_judge.py): ' Yes' is ' ', 'Y',
    'es' in spkit-tiny's vocabulary while ' No' is one token; ' 1' and ' 0' are one token each."""
    _, tok = tiny
    n = {w: len(tok(J.target(kind, y), add_special_tokens=False)["input_ids"])
         for kind in J.VERDICTS for y, w in ((1, f"{kind}+"), (0, f"{kind}-"))}
    assert n == {"verdict+": 3, "verdict-": 1, "verdict01+": 1, "verdict01-": 1}


def test_luce_choice_and_class_entropy():
    g = torch.Generator().manual_seed(0)
    assert {self_consuming.luce_choice([0.0, 1.0, 0.5], 1e-3, g) for _ in range(20)} == {1}
    picks = [self_consuming.luce_choice([0.0, 0.0], 1.0, g) for _ in range(400)]
    assert 150 < sum(picks) < 250  # equal rewards: a fair coin
    assert instruct.class_entropy(["a b", "c d", "A B", "C D"]) == (1.0, 2)  # two classes, 2 each
    assert instruct.class_entropy(["a", "b"]) == (0.0, 1)
    assert self_consuming.curator_reward("short", LOWER, "one two three") == pytest.approx(-0.3)


def test_win_rate_counts_ties_half():
    assert self_rewarding.win_rate([1.0, 0.5, 0.0, 1.0], [0.5, 0.5, 1.0, 0.0]) == pytest.approx(2.5 / 4)


# ---- splits and the evaluation


def test_train_prompts_are_never_heldout_or_dev():
    held = {r["prompt"] for r in instruct.TASK.heldout_problems()}
    dev = {r["prompt"] for r in instruct.TASK.dev_problems(200)}
    train = {r["prompt"] for s in range(5) for r in instruct.TASK.train_problems(64, s)}
    assert len(held) == 200 and len(dev) == 200 and len(train) > 200
    assert not train & held and not train & dev and not dev & held
    from spkit.evals.data import spkit_records

    assert instruct.TASK.heldout_problems() == spkit_records("spkit_ifeval_lite", 200)


@pytest.mark.slow
def test_heldout_accuracy_equals_spkit_eval():
    """The training curve's number and `spkit eval --tasks spkit_ifeval_lite --limit 12` agree,
    response by response, on spkit-tiny."""
    tiny = ROOT / "assets" / "models" / "spkit-tiny"
    if not (tiny / "config.json").exists():
        pytest.skip("assets/models/spkit-tiny not built")
    from spkit.evals.run import run
    from spkit.models import load_model

    res = run(model=str(tiny), tasks="spkit_ifeval_lite", limit=12, seed=0)
    model, tok = load_model(str(tiny))
    m, fr, texts = instruct.evaluate(model, tok, limit=12)
    rows = {s["doc"]["prompt"]: s for s in res["samples"]["spkit_ifeval_lite"]}
    recs = instruct.TASK.heldout_problems(12)
    assert [rows[r["prompt"]]["resps"][0][0] for r in recs] == texts
    got = res["results"]["spkit_ifeval_lite"]
    assert m["eval/prompt_strict"] == pytest.approx(got["prompt_level_strict_acc,none"], abs=1e-9)
    assert m["eval/inst_strict"] == pytest.approx(got["inst_level_strict_acc,none"], abs=1e-9)
    assert 0 < m["eval/prompt_strict"] < 1


def test_refinements_keep_a_prefix_of_their_parent(random_tiny):
    from spkit.generation import Sampler
    from spkit.sampling import SamplingParams

    model, tok = random_tiny
    sampler = Sampler(model, tok)
    parent = spar.Node(tok(" the sun is warm today", add_special_tokens=False)["input_ids"], " the sun is warm today",
                       0.0)
    kids = spar.refine(sampler, tok, LOWER, [parent], 6, SamplingParams(max_new_tokens=8, stop=("\n\n",)), seed=3)
    assert len(kids) == 6
    for k in kids:
        n = min(len(parent.tokens), len(k.tokens))
        c = next(i for i in range(n + 1) if i == n or k.tokens[i] != parent.tokens[i])
        assert k.text.startswith(tok.decode(parent.tokens[:c]))
        assert len(k.tokens) <= 8 + len(parent.tokens)


# ---- trainers: determinism, resume, smoke (random tiny model, a fake judge)


@pytest.fixture()
def fake_judge(monkeypatch):
    """A random model never answers Yes: judge a response by its text length instead."""
    real = J.parse

    def parse(kind, text):
        return float(len(text) % 2) if kind in J.VERDICTS else float(len(text) % 3)

    monkeypatch.setattr(J, "parse", parse)
    yield
    monkeypatch.setattr(J, "parse", real)


def _cfgs(tiny_dir, out=""):
    common = dict(model=str(tiny_dir), prompts=3, max_new_tokens=6, eval_limit=2, eval_every=1, out=out,
                  plot=False, tensorboard=False, lr=1e-3)
    judged = dict(votes=2, judge_seed_prompts=2, judge_seed_k=2, judge_seed_steps=1)
    return {"spar": spar.Config(**common, **judged, k=3, branch=2, keep=1, depth=2),
            "spar_plain": spar.Config(**common, **judged, k=3, pairs="sampled"),
            "spar_digit": spar.Config(**common, **judged, k=3, branch=2, keep=1, depth=2, judge_kind="verdict01"),
            "online_iterative_dpo": online_iterative_dpo.Config(**common, k=3),
            "self_rewarding": self_rewarding.Config(**common, **judged, k=3),
            "temporal": self_rewarding.Config(**common, **judged, k=3, temporal=True),
            "self_consuming": self_consuming.Config(**common, k=3, real_fraction=0.5)}


MODS = {"spar": spar, "spar_plain": spar, "spar_digit": spar, "online_iterative_dpo": online_iterative_dpo,
        "self_rewarding": self_rewarding, "temporal": self_rewarding, "self_consuming": self_consuming}


@pytest.mark.parametrize("name", list(MODS))
def test_same_seed_same_numbers_and_resume_equals_straight_run(name, tiny_dir, fake_judge, tmp_path):
    h = check_seed_and_resume(MODS[name].train, _cfgs(tiny_dir)[name], tmp_path)
    last = h.rows[-1]
    assert "eval/prompt_strict" in last and last["train/samples"] > 0
    assert (h.final_dir / "config.json").exists()


def test_trainers_draw_train_prompts_only(tiny_dir, fake_judge, monkeypatch):
    from spkit.generation import Sampler

    seen: list[tuple[str, float]] = []
    real = Sampler.generate

    def record(self, prompts, params=None, seed=None, progress=False):
        seen.extend((p, params.temperature) for p in prompts)
        return real(self, prompts, params, seed, progress)

    monkeypatch.setattr(Sampler, "generate", record)
    cfgs = _cfgs(tiny_dir)
    for name in ("spar", "temporal"):
        MODS[name].train(dataclasses.replace(cfgs[name], steps=1))
    held = [r["prompt"] for r in instruct.TASK.heldout_problems()]
    sampled = [p for p, temp in seen if temp > 0]
    greedy = {p for p, temp in seen if temp == 0}
    assert sampled and not any(p == h or p.startswith(h + "\n") for p in sampled for h in held)
    assert all(instructions.split_of(p.split("\nResponse: ")[0]) == "train" for p in sampled
               if "\nResponse: " in p)
    assert greedy == set(held[:2])


def test_spar_finds_pairs_and_counts_refinements(tiny_dir, fake_judge):
    h = spar.train(dataclasses.replace(_cfgs(tiny_dir)["spar"], steps=2, eval_every=0))
    rows = [r for r in h.rows if "train/pairs" in r]
    assert sum(r["train/pairs"] for r in rows) > 0
    # refinements are drawn samples: more than the seed stage and the K per prompt alone
    assert rows[-1]["train/samples"] > 2 * 2 + 2 * 3 * 3


def test_cli_trains_spar_with_the_digit_judge(tiny_dir, fake_judge, tmp_path):
    from spkit.cli import main

    out = tmp_path / "run"
    main(["train", "spar", "--model", str(tiny_dir), "--judge-kind", "verdict01", "--steps", "1", "--prompts", "2",
          "--k", "2", "--votes", "2", "--judge-seed-prompts", "2", "--judge-seed-k", "2", "--judge-seed-steps", "1",
          "--depth", "1", "--max-new-tokens", "4", "--eval-limit", "1", "--out", str(out), "--no-tensorboard",
          "--no-plot"])
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert cfg["judge_kind"] == "verdict01" and (out / "final" / "model.safetensors").exists()
    assert "judge/accuracy" in (out / "metrics.csv").read_text().splitlines()[0]
