"""SPC (spkit.algos.spc) and the critic scoring it shares (spkit.rl.critic): known answers,
properties, and a smoke run on a random tiny model."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from spkit.algos import spc
from spkit.rl import critic as C
from spkit.sampling import Completion
from spkit.tasks import steps
from spkit.testing import check_seed_and_resume

# ---- known answers


def test_parse_rewrite_keeps_a_changed_result_only():
    original = (5, "+", 9, 14)
    assert spc.parse_rewrite(original, " 9 = 15") == (5, "+", 9, 15)  # a slip
    assert spc.parse_rewrite(original, " 8 = 13") == (5, "+", 8, 13)  # a miscopied operand
    assert spc.parse_rewrite(original, " 9 = 14") is None  # unchanged: no error
    assert spc.parse_rewrite(original, " 10 = 14") is None  # same result: not a wrong value
    assert spc.parse_rewrite(original, " nine = 15") is None and spc.parse_rewrite(original, "") is None


def test_prompts_hand_written():
    chain = [(5, "+", 9, 14), (14, "/", 2, 7), (7, "+", 14, 21)]
    assert spc.solver_prefix("Q?", chain[:1]) == "Question: Q?\nAnswer: 5 + 9 = 14\n"
    assert spc.sneaky_prompt("Q?", chain, 1) == spc.SNEAKY_ROLE + "Question: Q?\nAnswer: 5 + 9 = 14\n14 /"
    assert spc.sneaky_prompt("Q?", chain, 0) == spc.SNEAKY_ROLE + "Question: Q?\nAnswer: 5 +"


def test_game_record_carries_on_from_the_sneaky_value():
    chain = [(5, "+", 9, 14), (14, "/", 2, 7), (7, "+", 14, 21)]
    rec = spc.game_record("Q?", chain, 0, (5, "+", 9, 15), "x")
    # 15 / 2 does not divide: the carried-on step becomes "+ 2" (steps.carry_on)
    assert rec["steps"] == ["5 + 9 = 15", "15 + 2 = 17", "17 + 14 = 31\n#### 31"]
    assert rec["label"] == 0 and rec["final_answer_correct"] is False
    good = spc.game_record("Q?", chain, None, None, "y")
    assert good["steps"] == ["5 + 9 = 14", "14 / 2 = 7", "7 + 14 = 21\n#### 21"] and good["label"] == -1
    assert steps.first_wrong(chain, steps.replace_step(chain, 1, (14, "/", 2, 8))) == 1


def test_success_rates_hand_worked():
    def out(prompt, text):
        return Completion(prompt, text, [1], [2], [0.0], "stop")

    p1, p2 = "Question: Q?\nAnswer: 5 + 9 = 14\n", "Question: Q?\nAnswer: 5 + 9 = 15\n"
    outs = [out(p1, "14 / 2 = 7\n#### 7"), out(p1, "#### 8"), out(p2, "#### 7"), out(p2, "")]
    assert spc.success_rates(outs, ["... #### 7", "... #### 7"], 2) == [0.5, 0.5]


def test_zero_sum_rewards_hand_worked():
    r_c = spc.critic_rewards([-1, 0, None, 2, 2, 2], [-1, -1, -1, 2, 2, 2])
    assert r_c.tolist() == [1, -1, -1, 1, 1, 1]
    # K = 3: record 0 (correct) has mean -1/3, record 1 (sneaky) mean +1 -> its rewrite earns -1
    r_g = spc.generator_rewards([False, True], [None, 1], r_c, 3)
    assert r_g.tolist() == [-1.0, -1.0]
    r_g = spc.generator_rewards([True], [0], r_c[:3], 3)
    assert r_g.item() == pytest.approx(1 / 3)  # fooled 2 of 3 critiques, caught once


def test_recheck_and_verified_critiques_hand_worked():
    slip = {"steps": ["5 + 9 = 14", "14 / 2 = 8", "8 + 14 = 22\n#### 22"], "label": 1}
    assert steps.recheck_critique(slip) == (" 14 ok, 7 no. \\boxed{1}", 1)
    assert steps.verified_critique(slip) == " 14 ok, 7 no. \\boxed{1}"
    assert steps.verified_critique(slip, numbers=False) == " good, no. \\boxed{1}"
    good = {"steps": ["5 + 9 = 14", "14 * 3 = 42\n#### 42"], "label": -1}
    assert steps.verified_critique(good) == " 14 ok, 42 ok. \\boxed{-1}"
    # a miscopied operand computes correctly: the checker says -1, so the critique is not verified
    operand = {"steps": ["5 + 8 = 13", "13 - 4 = 9\n#### 9"], "label": 0}
    assert steps.recheck_critique(operand)[1] == -1 and steps.verified_critique(operand) is None
    assert steps.recheck_critique({"steps": ["15 / 2 = 7"], "label": 0}) == (" ? no. \\boxed{0}", 0)
    assert steps.recheck_critique({"steps": ["15 / 0 = 7"], "label": 0})[1] == 0


def test_seed_pool_is_verified_train_records_of_every_subset():
    from spkit.tasks import arithmetic

    pool = spc.seed_pool(60, 7)
    assert len(pool) == 60 and pool == spc.seed_pool(60, 7) and pool != spc.seed_pool(60, 8)
    assert all(steps.recheck_critique(r)[1] == r["label"] and c == steps.recheck_critique(r)[0] for r, c in pool)
    verdicts = spc.seed_pool(60, 7, numbers=False)  # the same records, verdicts only
    assert [r for r, _ in verdicts] == [r for r, _ in pool]
    assert all(c == steps.recheck_critique(r, numbers=False)[0] for r, c in verdicts)
    assert {len(r["steps"]) for r, _ in pool} == {2, 3, 4}
    assert 20 <= sum(r["label"] == -1 for r, _ in pool) <= 40  # both classes, correct ones a little more
    held = {r["problem"] for r in C.heldout_records()}
    assert not any(arithmetic.split_of(r["problem"]) != "train" or arithmetic.in_dev(r["problem"])
                   or r["problem"] in held for r, _ in pool)


def test_seed_sft_step_is_one_sft_step_at_seed_lr(tiny_dir):
    """The step's loss is the critiques' token-mean NLL before it; with plain SGD the weights move
    by exactly −seed_lr · gradient, and the games' --lr is back afterwards."""
    from spkit.models import load_model
    from spkit.rl.losses import sft_loss
    from spkit.rl.verifiable import padded_logprobs

    model, tok = load_model(str(tiny_dir))
    prompts, targets = [[5, 6, 7], [8, 9]], [[10, 11], [12]]
    cfg = spc.Config(lr=0.1, seed_lr=0.5, max_grad_norm=0)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    model.zero_grad()
    loss = sft_loss(*padded_logprobs(model, prompts, targets))
    loss.backward()
    w = {n: (p.detach().clone(), p.grad.clone()) for n, p in model.named_parameters()}
    m = spc.seed_sft_step(model, opt, prompts, targets, cfg)
    assert m["losses/seed_sft"] == pytest.approx(loss.item(), rel=1e-5)
    assert all(torch.allclose(p, w[n][0] - 0.5 * w[n][1], atol=1e-6) for n, p in model.named_parameters())
    assert opt.param_groups[0]["lr"] == 0.1


def test_sequence_ppo_loss_hand_worked():
    logp = torch.tensor([[-1.0, -3.0], [-2.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # sequence means -2 and -2
    old = torch.tensor([-2.5, -2.0])  # ratios e^0.5 = 1.649 and 1
    up = spc.sequence_ppo_loss(logp, mask, old, torch.tensor([1.0, 1.0]), 0.2)
    assert up.item() == pytest.approx(-(1.2 + 1.0) / 2)  # the first ratio clipped at 1 + ε
    down = spc.sequence_ppo_loss(logp, mask, old, torch.tensor([-1.0, -1.0]), 0.2)
    assert down.item() == pytest.approx((math.exp(0.5) + 1.0) / 2)  # no clip on the pessimistic side


def test_processbench_scores_and_majority_hand_worked():
    recs = [{"label": y, "subset": s} for y, s in [(1, "a"), (-1, "a"), (0, "b"), (-1, "b")]]
    m = C.scores_by_subset(recs, [1, -1, None, 0])
    assert m["eval/f1/a"] == 1.0 and m["eval/acc_error/b"] == 0.0 and m["eval/acc_correct/b"] == 0.0
    assert m["eval/f1"] == 0.5 and m["eval/unparsable"] == 0.25 and m["eval/says_minus1"] == 0.25
    assert C.majority([2, None, 1, 1, 2]) == 2 and C.majority([None, None]) is None
    assert C.majority([None, 0, -1, -1]) == -1


def test_always_step_0_and_always_minus_1_score_zero_f1():
    recs = C.heldout_records()
    for guess in (0, -1):
        m = C.scores_by_subset(recs, [guess] * len(recs))
        assert m["eval/f1"] == 0.0


def test_heldout_and_dev_records_are_spkit_steps_and_disjoint():
    from spkit.evals import data
    from spkit.tasks import arithmetic

    held = C.heldout_records()
    assert len(held) == 300
    for sub in C.SUBSETS:
        assert [{k: v for k, v in r.items() if k != "subset"} for r in held if r["subset"] == sub] == \
            data.spkit_records("spkit_steps", 100, subset=sub)
    dev = C.dev_records(20)
    assert all(arithmetic.split_of(r["problem"]) == "train" and arithmetic.in_dev(r["problem"]) for r in dev)
    assert not {r["problem"] for r in dev} & {r["problem"] for r in held}
    assert sum(r["label"] == -1 for r in dev) == 30  # half of each subset's 20 is erroneous


def test_training_problems_avoid_dev_and_heldout():
    from spkit.rl import verifiable as V
    from spkit.tasks import arithmetic

    probs = V.ARITH.train_problems(200, 3, spc.LEVELS)
    assert {p["steps"] for p in probs} == {2, 3, 4}
    assert not any(arithmetic.in_dev(p["question"]) or arithmetic.split_of(p["question"]) != "train" for p in probs)


# ---- properties and smoke (a random tiny model)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The random tiny Llama with room for ProcessBench's critic prompt (~660 tokens of its small
    tokenizer; RoPE positions, so only the configured limit changes)."""
    from spkit.testing import tiny_random_model

    path = tmp_path_factory.mktemp("tinyrand_long")
    model, tok = tiny_random_model()
    model.config.max_position_embeddings = 1024
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture()
def always_keep(monkeypatch):
    """A random model writes no parsable rewrite: make every rewrite a +1 slip that the rollout
    check keeps, so the critic's and the generator's update paths both run."""
    monkeypatch.setattr(spc, "parse_rewrite", lambda original, text: (*original[:3], original[3] + 1))
    monkeypatch.setattr(spc, "success_rates", lambda outs, golds, r: [1.0, 0.0] * (len(golds) // 2))


def _cfg(tiny_dir, **kw):
    return spc.Config(model=str(tiny_dir), problems=2, k=2, rollouts=1, max_new_tokens=4, eval_limit=2,
                      eval_every=1, plot=False, tensorboard=False, lr=1e-3, micro_batch=3, **kw)


def test_same_seed_same_numbers_and_resume_equals_straight_run(tiny_dir, always_keep, tmp_path):
    a = check_seed_and_resume(spc.train, _cfg(tiny_dir, ppo_epochs=2), tmp_path)
    assert all(r["train/records"] == 4 and r["train/kept"] == 1.0 for r in a.rows if "train/records" in r)
    assert a.last("train/samples") == 2 * (2 + 2 * 2 + 4 * 2)  # rewrites + rollouts + critiques
    assert a.last("losses/grad_norm") > 0 and a.last("losses/sft") > 0
    assert not math.isnan(a.last("eval/f1"))


def test_seed_stage_then_games_resume_exactly(tiny_dir, always_keep, tmp_path):
    a = check_seed_and_resume(spc.train, _cfg(tiny_dir, seed_steps=1), tmp_path, steps=3)
    seed_row, game_row = a.rows[1], a.rows[-1]  # rows: the start's evaluation, step 1, 2, 3
    assert seed_row["losses/seed_sft"] > 0 and "seed/f1" in seed_row and seed_row["train/samples"] == 0
    assert "train/records" not in seed_row and game_row["train/records"] == 4
    assert game_row["losses/sft"] > 0  # D_0 is now the seed pool's verified critiques


def test_smoke_without_kept_rewrites_and_with_a_fixed_generator(tiny_dir, tmp_path):
    h = spc.train(dataclasses.replace(_cfg(tiny_dir), steps=1, train_generator=False, out=str(tmp_path / "a")))
    row = [r for r in h.rows if "train/records" in r][-1]
    assert row["train/records"] == 2 * row["train/kept"] * 2  # a pair per kept rewrite
    assert "losses/generator" not in row and (h.final_dir / "model.safetensors").exists()


def test_gsm8k_is_refused(tiny_dir):
    from spkit.errors import SpkitError

    with pytest.raises(SpkitError, match="spkit_arith"):
        spc.train(dataclasses.replace(_cfg(tiny_dir), task="gsm8k", steps=1))


@pytest.mark.slow
def test_critic_scores_equal_spkit_eval(tiny_dir):
    """`evaluate_critic` is `spkit eval --tasks spkit_steps`, critique by critique (a random tiny
    model with room for the prompt; the first 4 items of each subset)."""
    from spkit.evals.run import run
    from spkit.models import load_model

    res = run(model=str(tiny_dir), tasks="spkit_steps", limit=4)
    model, tok = load_model(str(tiny_dir))
    recs = C.heldout_records(4)
    preds, texts = C.critic_predictions(model, tok, recs)
    theirs = {s["doc"]["id"]: s["resps"][0][0] for rows in res["samples"].values() for s in rows}
    assert [theirs[r["id"]] for r in recs] == texts
    ours = C.scores_by_subset(recs, preds)
    for sub in C.SUBSETS:
        got = res["results"][f"spkit_steps_{sub}"]
        for k in ("acc_error", "acc_correct", "unparsable"):
            assert ours[f"eval/{k}/{sub}"] == pytest.approx(got[f"{k},none"], nan_ok=True)


def test_cli_trains_a_seed_stage_step(tiny_dir, tmp_path):
    """`spkit train spc` takes the seed-stage flags: one step is one verified-critique SFT step."""
    import json

    from spkit.cli import main
    from spkit.run.metrics import read_metrics

    out = tmp_path / "run"
    main(["train", "spc", "--model", str(tiny_dir), "--steps", "1", "--seed-steps", "1", "--seed-batch", "2",
          "--seed-critique", "verdict", "--eval-limit", "1", "--out", str(out), "--no-tensorboard", "--no-plot"])
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert (cfg["seed_steps"], cfg["seed_batch"], cfg["seed_critique"]) == (1, 2, "verdict")
    rows = read_metrics(out / "metrics.csv")
    assert rows[-1]["losses/seed_sft"] > 0 and rows[-1]["train/samples"] == 0 and "eval/f1" in rows[-1]
    assert (out / "final" / "model.safetensors").exists()
