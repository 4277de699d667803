"""Two-attempt self-correction: the prompt, SCoRe's metrics, the lm-eval task, the trainers'
evaluation equal to `spkit eval --tasks spkit_arith_correct`, and the correction trainers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spkit.errors import SpkitError
from spkit.rl import correction as C
from spkit.rl import verifiable as V
from spkit.tasks import arithmetic
from spkit.tasks import correction as T
from spkit.testing import check_seed_and_resume

ROOT = Path(__file__).resolve().parents[1]
GOLD = "3 + 4 = 7\n#### 7"


# ---- metrics, with known answers


def test_pair_metrics_by_hand():
    assert T.pair_metrics(0.0, 1.0) == {"accuracy_t1": 0.0, "accuracy_t2": 1.0, "delta_t1_t2": 1.0,
                                        "delta_i2c": 1.0, "delta_c2i": 0.0}
    assert T.pair_metrics(1.0, 0.0) == {"accuracy_t1": 1.0, "accuracy_t2": 0.0, "delta_t1_t2": -1.0,
                                        "delta_i2c": 0.0, "delta_c2i": 1.0}
    assert T.pair_metrics(1.0, 1.0)["delta_t1_t2"] == T.pair_metrics(0.0, 0.0)["delta_t1_t2"] == 0.0
    with pytest.raises(SpkitError, match="0 or 1"):
        T.pair_metrics(0.5, 1.0)


def test_correction_metrics_on_hand_made_attempt_pairs():
    pairs = [  # (attempt 1, attempt 2): wrong->right, right->wrong, right->right, wrong->wrong x2, no answer->right
        (" 3 + 4 = 6\n#### 6", " 3 + 4 = 7\n#### 7"),
        (" 3 + 4 = 7\n#### 7", " 3 + 4 = 8\n#### 8"),
        (" 3 + 4 = 7\n#### 7", " 3 + 4 = 7\n#### 7"),
        (" #### 5", " #### 5"),
        (" #### 5", " the answer is 7"),  # strict: no '#### 7' is wrong
        (" 3 + 4 =", " #### 7."),  # lm-eval's normalisation drops the trailing '.'
    ]
    r = [T.outcomes(a, b, GOLD) for a, b in pairs]
    assert r == [(0, 1), (1, 0), (1, 1), (0, 0), (0, 0), (0, 1)]
    m = T.correction_metrics([a for a, _ in r], [b for _, b in r])
    assert m == pytest.approx({"accuracy_t1": 2 / 6, "accuracy_t2": 3 / 6, "delta_t1_t2": 1 / 6,
                               "delta_i2c": 2 / 6, "delta_c2i": 1 / 6})
    assert m["delta_t1_t2"] == pytest.approx(m["delta_i2c"] - m["delta_c2i"])
    with pytest.raises(SpkitError, match="aligned"):
        T.correction_metrics([1.0], [])


def test_second_prompt_holds_the_problem_the_attempt_and_the_instruction():
    q = "Mia has 3 apples. She buys 4 more apples. How many apples does Mia have now?"
    p = T.second_prompt(q, " 3 + 4 = 6\n#### 6")
    assert p == (f"Question: {q}\nAnswer: 3 + 4 = 6\n#### 6\n\n"
                 "There might be an error in the solution above. Please correct the error, if any, "
                 "and rewrite the solution.\nAnswer:")
    assert p.startswith(arithmetic.prompt(q)) and T.TURN_SEPARATOR in V.EVAL_STOP  # no attempt holds one


# ---- the lm-eval task


def _yaml(path: Path) -> dict:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix}:{node.value}")
    return yaml.load(path.read_text(), Loader=Loader)


def test_yaml_tasks_generate_as_spkit_arith_and_report_the_five_metrics():
    tmpl = _yaml(ROOT / "evals" / "_spkit_arith_correct_template")
    arith = _yaml(ROOT / "evals" / "_spkit_arith_template")
    assert tmpl["generation_kwargs"] == arith["generation_kwargs"]
    assert tuple(tmpl["generation_kwargs"]["until"]) == V.EVAL_STOP
    assert [m["metric"] for m in tmpl["metric_list"]] == list(T.METRICS)
    group = _yaml(ROOT / "evals" / "spkit_arith_correct.yaml")
    assert group["task"] == [f"spkit_arith_correct_{s}" for s in V.EVAL_LEVELS]
    assert [m["metric"] for m in group["aggregate_metric_list"]] == list(T.METRICS)
    for s in V.EVAL_LEVELS:
        level = _yaml(ROOT / "evals" / f"spkit_arith_correct_{s}.yaml")
        assert level["dataset_kwargs"] == {"steps": s} and level["include"] == "_spkit_arith_correct_template"


def _write_samples(path: Path, problems: list[dict], texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for p, t in zip(problems, texts, strict=True):
            f.write(json.dumps({"doc": p, "resps": [[t]], "filtered_resps": [t]}) + "\n")


def test_loader_reads_attempts_from_spkit_eval_and_lm_eval_layouts(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "evals"))
    try:
        import utils
    finally:
        sys.path.remove(str(ROOT / "evals"))
    probs = V.heldout_problems(3)[:3]  # level 1, the first three
    _write_samples(tmp_path / "a" / "samples" / "spkit_arith_1.jsonl", probs, ["x", "y", "z"])
    _write_samples(tmp_path / "b" / "m" / "samples_spkit_arith_1_2026-01-01.jsonl", probs[:2], ["x", "w"])
    ds = utils.load_spkit_arith_correct(steps=1, attempts=str(tmp_path / "a"), version=1.0)["test"]
    assert [r["attempt1"] for r in ds] == ["x", "y", "z"] and ds[0]["question"] == probs[0]["question"]
    ds = utils.load_spkit_arith_correct(steps=1, attempts=str(tmp_path / "b"))["test"]
    assert len(ds) == 2  # an attempt-1 run with --limit 2 covers the first two problems
    doc = {**probs[0], "attempt1": " #### 0"}
    assert utils.correct_doc_to_text(doc) == T.second_prompt(probs[0]["question"], " #### 0")
    gold = arithmetic.target(probs[0])
    assert utils.correct_process_results(doc, [f" #### {gold}"]) == T.pair_metrics(0.0, 1.0)
    with pytest.raises(SpkitError, match="needs attempt 1"):
        utils.load_spkit_arith_correct(steps=1)
    with pytest.raises(SpkitError, match="two different attempts"):
        T.read_attempts(tmp_path)  # a and b disagree on problem 1
    _write_samples(tmp_path / "c" / "samples" / "spkit_arith_1.jsonl", probs[1:], ["y", "z"])
    with pytest.raises(SpkitError, match="not a --limit prefix"):
        T.attempt_records(probs, T.read_attempts(tmp_path / "c"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpkitError, match="no spkit_arith sample files"):
        T.read_attempts(tmp_path / "empty")


# ---- the trainers' evaluation is `spkit eval --tasks spkit_arith_correct`


def test_evaluate_correction_equals_spkit_eval(tmp_path):
    """Both passes agree completion by completion on spkit-tiny, and so do all five metrics."""
    tiny = ROOT / "assets" / "models" / "spkit-tiny"
    if not (tiny / "config.json").exists():
        pytest.skip("assets/models/spkit-tiny not built")
    from spkit.evals.run import run
    from spkit.models import load_model

    res = run(model=str(tiny), tasks="spkit_arith_correct", limit=3, seed=0, out=tmp_path / "ev")
    model, tok = load_model(str(tiny))
    problems, first, second = C.heldout_attempts(model, tok, limit=3)
    theirs = {s["doc"]["question"]: (s["doc"]["attempt1"], s["resps"][0][0])
              for rows in res["samples"].values() for s in rows}
    assert len(theirs) == len(problems) == 12
    assert [theirs[p["question"]] for p in problems] == [(a.text, b.text) for a, b in zip(first, second, strict=True)]
    ours = C.evaluate_correction(model, tok, limit=3)
    group = res["results"]["spkit_arith_correct"]
    for m in T.METRICS:
        assert ours[f"eval/{m}"] == pytest.approx(group[f"{m},none"], abs=1e-9), m
    assert ours["eval/accuracy_t1"] == V.evaluate_heldout(model, tok, limit=3)["eval/strict"]
    assert (tmp_path / "ev" / "attempt1" / "samples" / "spkit_arith_1.jsonl").exists()
    # a second run reads the first pass from --attempts and gives the same numbers
    again = run(model=str(tiny), tasks="spkit_arith_correct_1", limit=3, seed=0,
                attempts=str(tmp_path / "ev" / "attempt1"))
    assert again["results"]["spkit_arith_correct_1"]["accuracy_t2,none"] == pytest.approx(
        res["results"]["spkit_arith_correct_1"]["accuracy_t2,none"])


def test_bad_attempts_directory_is_one_line(tmp_path):
    from spkit.evals.run import run

    with pytest.raises(SpkitError, match="not found"):
        run(model="spkit-tiny", tasks="spkit_arith_correct", attempts=str(tmp_path / "nope"))


# ---- the correction trainers (SFT baseline, SCoRe)

import copy  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402

import torch  # noqa: E402

from spkit.algos import evolve, rise, score, self_refine, sft_corrections  # noqa: E402
from spkit.sampling import Completion  # noqa: E402


def _comp(text: str, prompt: str = "p") -> Completion:
    return Completion(prompt, text, [1], [2], [0.0], "stop", [0.0])


def _episodes(r1: list[float], r2: list[float], k: int, texts2: list[str] | None = None) -> C.Episodes:
    n = len(r1) // k
    return C.Episodes([{"question": f"q{i}", "answer": "#### 1"} for i in range(n)],
                      [_comp(f"a{i}") for i in range(len(r1))],
                      [_comp(t) for t in (texts2 or [f"b{i}" for i in range(len(r1))])],
                      torch.tensor(r1), torch.tensor(r2))


def test_stage_targets_by_hand():
    cfg = score.Config(alpha=10.0, beta1=0.01, beta2=0.1, stage1_steps=3)
    assert [score.stage_of(t, cfg) for t in range(5)] == [1, 1, 1, 2, 2]
    r1, r2 = torch.tensor([1.0, 0, 0, 1]), torch.tensor([1.0, 1, 0, 0])  # one group of K = 4
    one = score.stage_targets(r1, r2, 4, 1, cfg)
    assert one.adv1.tolist() == [0, 0, 0, 0] and one.adv2.tolist() == [0.5, 0.5, -0.5, -0.5]
    assert (one.kl1, one.kl2) == (0.1, 0.0)  # stage I: only attempt 1 is pinned (β2)
    two = score.stage_targets(r1, r2, 4, 2, cfg)
    # r̂2 = r2 + 10·(r2 − r1) = [1, 11, 0, −10], mean 0.5; r̂1 = r1, mean 0.5
    assert two.adv2.tolist() == [0.5, 10.5, -0.5, -10.5] and two.adv1.tolist() == [0.5, -0.5, -0.5, 0.5]
    assert (two.kl1, two.kl2) == (0.01, 0.01)


def test_sft_baseline_keeps_wrong_to_right_episodes():
    eps = _episodes([0, 0, 1, 0, 0, 0], [1, 1, 1, 0, 1, 1], 3, ["x", "x", "y", "z", "w", "v"])
    assert eps.metrics() == pytest.approx({"accuracy_t1": 1 / 6, "accuracy_t2": 5 / 6, "delta_t1_t2": 4 / 6,
                                           "delta_i2c": 4 / 6, "delta_c2i": 0.0})
    assert sft_corrections.kept_episodes(eps, True, False) == [0, 1, 4, 5]
    assert sft_corrections.kept_episodes(eps, False, False) == [0, 1, 2, 4, 5]  # right -> right too
    eps.first[1] = _comp("a0")  # episode 1 now repeats episode 0 exactly: kept once with --dedup
    assert sft_corrections.kept_episodes(eps, True, True) == [0, 4, 5]


def test_score_update_does_not_depend_on_the_micro_batch_size(random_tiny):
    from spkit.generation import Sampler
    from spkit.testing import tiny_random_model

    model, tok = random_tiny
    ref, _ = tiny_random_model(seed=1)
    probs = V.train_problems(2, 0)
    eps = C.sample_attempts(Sampler(model, tok), probs, 3, V.rollout_params(5), seed=1)
    r1, r2 = torch.tensor([1.0, 0, 0, 1, 1, 0]), torch.tensor([1.0, 1, 0, 0, 1, 1])
    grads = []
    for mb in (2, 64):
        cfg = score.Config(k=3, micro_batch=mb, max_grad_norm=0, beta1=0.3)
        score.update(model, torch.optim.SGD(model.parameters(), lr=0.0), eps,
                     score.stage_targets(r1, r2, 3, 2, cfg), cfg, ref)
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert grads[0] and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))


def test_attempt_two_continues_attempt_one(random_tiny, monkeypatch):
    from spkit.generation import Sampler

    model, tok = random_tiny
    seen: list[str] = []
    real = Sampler.generate
    monkeypatch.setattr(Sampler, "generate", lambda self, prompts, params=None, seed=None, progress=False, row_seeds=None: (
        seen.extend(prompts) or real(self, prompts, params, seed, progress, row_seeds)))
    probs = V.train_problems(2, 0)
    eps = C.sample_attempts(Sampler(model, tok), probs, 2, V.rollout_params(4), seed=3)
    assert seen[:4] == [arithmetic.prompt(p["question"]) for p in probs for _ in range(2)]
    assert seen[4:] == [T.second_prompt(probs[i // 2]["question"], eps.first[i].text) for i in range(4)]
    assert [c.prompt for c in eps.second] == seen[4:]


@pytest.fixture()
def fake_reward(monkeypatch):
    """A random tiny model never answers right; reward a text by its length's parity instead."""
    real = V.score

    def fake(completions, problems, k, mode="strict"):
        real(completions, problems, k, mode)
        return torch.tensor([float(len(c if isinstance(c, str) else c.text) % 2 == 0) for c in completions])

    monkeypatch.setattr(V, "score", fake)
    monkeypatch.setattr(rise, "rise_reward", lambda text, gold: float(len(text) % 2 == 0))
    # the random model's 512 positions cannot hold an attempt-2 prompt after 96 random tokens
    monkeypatch.setattr(V, "task_of", lambda cfg: dataclasses.replace(V.ARITH, max_new_tokens=6))


def _cfgs(tiny_dir):
    common = dict(model=str(tiny_dir), problems=2, k=2, max_new_tokens=6, eval_limit=1, eval_every=1,
                  plot=False, tensorboard=False, lr=1e-3, warmup_steps=0)
    return {"sft_corrections": sft_corrections.Config(**common, epochs=2, micro_batch=2, only_corrections=False),
            "score": score.Config(**common, stage1_steps=1, micro_batch=3),
            "rise": rise.Config(**common, epochs=2, micro_batch=3),
            "self_refine": self_refine.Config(**common, meta_steps=1, micro_batch=3),
            "evolve": evolve.Config(**common, epochs=2, micro_batch=1)}



TRAINERS = {"sft_corrections": sft_corrections, "score": score, "rise": rise, "self_refine": self_refine,
            "evolve": evolve}


@pytest.mark.parametrize("name", list(TRAINERS))
def test_same_seed_same_numbers_and_resume_equals_straight_run(name, tiny_dir, fake_reward, tmp_path):
    mod = TRAINERS[name]
    cfg = _cfgs(tiny_dir)[name]
    a = check_seed_and_resume(mod.train, cfg, tmp_path)
    assert any(r.get("losses/grad_norm", 0) > 0 for r in a.rows)  # the update ran
    # 2 steps × 2 problems × K = 2 × two attempts (RISE: K candidates in each of the two states;
    # EVOLVE: N = 2 refinements of each first attempt)
    assert a.last("train/samples") == 2 * 2 * 2 * (3 if name == "evolve" else 2)
    assert not math.isnan(a.last("eval/accuracy_t2"))
    if name == "score":
        assert [r["train/stage"] for r in a.rows if "train/stage" in r] == [1.0, 2.0]
        assert a.rows[1]["losses/kl2"] == 0.0 and a.rows[2]["losses/kl2"] > 0  # stage II pins attempt 2 too


@pytest.mark.parametrize("name", list(TRAINERS))
def test_cli_trains_with_the_shared_flags(name, tiny_dir, fake_reward, tmp_path):
    from spkit.cli import main

    out = tmp_path / "run"
    main(["train", name, "--model", str(tiny_dir), "--steps", "5", "--problems", "2", "--k", "2",
          "--max-new-tokens", "4", "--eval-limit", "1", "--max-samples", "16", "--out", str(out),
          "--no-tensorboard", "--no-plot", "--warmup-steps", "0"])
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert cfg["max_samples"] == 16 and (out / "final" / "model.safetensors").exists()
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[-1].startswith("2,")  # 8 samples per step: the budget ends the run at step 2


# ---- the shared warm-up


def _sample(text: str, ids: list[int]) -> Completion:
    return Completion("", text, [], ids, [], "stop", [])


def test_warmup_fits_attempt_two_to_the_next_sample_of_the_same_problem():
    assert C.warmup_pairs(6, 3) == [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)]
    probs = [{"question": "Q one", "answer": "#### 1"}, {"question": "Q two", "answer": "#### 2"}]
    first = [_sample(" a", [1]), _sample(" b", [2, 9]), _sample(" c", [3]), _sample(" d", [4]),
             _sample(" e", [5]), _sample(" f", [6])]
    prompts, targets = C.warmup_corpus(probs, first, 3)
    assert prompts == [T.second_prompt("Q one", t) for t in (" a", " b", " c")] + [
        T.second_prompt("Q two", t) for t in (" d", " e", " f")]
    assert targets == [[2, 9], [3], [1], [5], [6], [4]]
    # no checker: the corpus is the same whatever the gold answers are
    assert C.warmup_corpus([dict(p, answer="#### 7") for p in probs], first, 3) == (prompts, targets)


def test_warmup_is_the_same_for_every_method_and_counts_in_the_budget(tiny_dir, fake_reward, tmp_path):
    from safetensors.torch import load_file

    finals = {}
    for name in ("sft_corrections", "rise"):
        cfg = dataclasses.replace(_cfgs(tiny_dir)[name], warmup_steps=2, warmup_k=2, steps=2, micro_batch=2,
                                  out=str(tmp_path / name))
        h = TRAINERS[name].train(cfg)
        assert [r.get("train/warmup") for r in h.rows[1:]] == [1.0, 1.0]
        assert h.last("train/samples") == 2 * 2 * 2  # 2 steps × 2 problems × K = 2 attempts 1
        assert "eval/copied" in h.rows[-1] and "warmup/copied" not in h.rows[-1]  # a warm-up-only run: one eval
        assert h.rows[-1]["losses/warmup_grad_norm"] > 0
        finals[name] = load_file(str(h.final_dir / "model.safetensors"))
    a, b = finals.values()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_method_after_a_warmup_only_run_equals_the_warmup_inside_its_run(tiny_dir, fake_reward, tmp_path):
    # what assets/results/correction.py relies on to run the warm-up once per seed
    from safetensors.torch import load_file

    cfg = dataclasses.replace(_cfgs(tiny_dir)["sft_corrections"], warmup_steps=1, warmup_k=2, eval_every=0)
    inside = sft_corrections.train(dataclasses.replace(cfg, steps=2, out=str(tmp_path / "inside")))
    warm = sft_corrections.train(dataclasses.replace(cfg, steps=1, out=str(tmp_path / "warm")))
    after = sft_corrections.train(dataclasses.replace(cfg, model=str(warm.final_dir), warmup_steps=0, steps=1,
                                                      out=str(tmp_path / "after")))
    a, b = load_file(str(inside.final_dir / "model.safetensors")), load_file(str(after.final_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert inside.last("train/samples") == warm.last("train/samples") + after.last("train/samples")


def test_score_resumes_across_the_warmup_with_the_warmed_up_reference(tiny_dir, fake_reward, tmp_path):
    # warm-up step 0, then SCoRe steps 0-1 (stage I, stage II): the resumed run restarts at step 2,
    # so its KL terms need the warmed-up π_ref from the checkpoint
    cfg = dataclasses.replace(_cfgs(tiny_dir)["score"], warmup_steps=1, beta1=0.5, beta2=0.5)
    a = check_seed_and_resume(score.train, cfg, tmp_path, steps=3)
    assert [r.get("train/stage") for r in a.rows[1:]] == [None, 1.0, 2.0]
    assert "warmup/accuracy_t2" in a.rows[1] and "warmup/copied" in a.rows[1]  # the warmed-up start, held out
    assert a.rows[1]["train/samples"] == 2 * 4 and a.last("train/samples") == 2 * 4 + 2 * 8  # warmup_k 4
    assert a.rows[2]["losses/kl1"] == 0.0 < a.rows[3]["losses/kl1"]  # π_ref = the warmed-up π_θ, then apart


# ---- RISE


def test_rise_reward_and_best_of_n():
    assert [rise.rise_reward(t, GOLD) for t in (" #### 7", " #### 8", " 7", "")] == [1.0, 0.0, -1.0, -1.0]
    r = torch.tensor([0.0, 1, -1, 1, -1, -1, 0, -1])
    assert rise.best_of_n(r, 4).tolist() == [1, 6]  # the first best of each group of N = 4


def test_rise_loss_is_reward_weighted_likelihood_of_the_targets(random_tiny):
    model, tok = random_tiny
    targets = [Completion("p", "", tok("Question: 1?")["input_ids"], tok(" #### 1", add_special_tokens=False)["input_ids"],
                          [], "stop", []),
               Completion("p", "", tok("Question: 22?")["input_ids"], tok(" 2 + 2", add_special_tokens=False)["input_ids"],
                          [], "stop", [])]
    rewards = torch.tensor([1.0, -1.0])
    cfg = rise.Config(tau=0.4, micro_batch=1, max_grad_norm=0)
    with torch.no_grad():
        logp, mask = V.padded_logprobs(model, [t.prompt_ids for t in targets], [t.token_ids for t in targets])
    w = torch.exp(rewards / 0.4)  # e^2.5 and e^-2.5
    want = -(w[:, None] * logp * mask).sum() / mask.sum()
    got = rise.weighted_update(model, torch.optim.SGD(model.parameters(), lr=0.0), targets, rewards, cfg)
    assert got["rwr"] == pytest.approx(want.item(), rel=1e-5)


def test_rise_collects_a_best_target_in_every_state(random_tiny, fake_reward):
    from spkit.generation import Sampler

    model, tok = random_tiny
    probs = V.train_problems(3, 0)
    for only_wrong in (False, True):
        cfg = rise.Config(k=3, only_wrong=only_wrong)
        pairs = rise.collect(Sampler(model, tok), probs, cfg, V.rollout_params(5), seed=2)
        n2 = len(pairs.targets) - 3
        assert pairs.drawn == 3 * 3 + 3 * n2 and len(pairs.best1) == 3 and len(pairs.best2) == n2
        assert [t.prompt for t in pairs.targets[:3]] == [arithmetic.prompt(p["question"]) for p in probs]
        assert all(T.INSTRUCTION in t.prompt for t in pairs.targets[3:])
        want = [float(len(t.text) % 2 == 0) for t in pairs.targets]
        assert pairs.rewards.tolist() == want
        if only_wrong:  # turn 2 only after a wrong rollout y1
            assert all(len(y1.text) % 2 == 1 for y1 in pairs.episodes.first)
        else:
            assert n2 == 3 and len(pairs.episodes.problems) == 3


# ---- SELF


def _arith_episodes(first: list[str], second: list[str], k: int, gold: str = GOLD) -> C.Episodes:
    probs = [{"question": f"q{i}", "answer": gold} for i in range(len(first) // k)]
    r1 = torch.tensor([float(arithmetic.is_correct(t, gold)) for t in first])
    r2 = torch.tensor([float(arithmetic.is_correct(t, gold)) for t in second])
    return C.Episodes(probs, [_comp(t) for t in first], [_comp(t) for t in second], r1, r2)


def test_self_feedback_line_and_its_parse():
    assert self_refine.feedback(" 3 + 4 = 6\n#### 6", False) == "Feedback: the answer 6 is wrong."
    assert self_refine.feedback(" 3 + 4 =", False) == "Feedback: the answer none is wrong."
    two = " Feedback: the answer 6 is wrong.\n3 + 4 = 7\n#### 7"
    assert self_refine.verdict(two) == 0.0 and self_refine.verdict(" Feedback: the answer 7 is right.\n#### 7") == 1.0
    assert self_refine.verdict(" 3 + 4 = 7\n#### 7") is None and self_refine.verdict(" Feedback: ok") is None
    assert self_refine.refinement(two) == "3 + 4 = 7\n#### 7"
    assert self_refine.refinement(" 3 + 4 = 7\n#### 7") == " 3 + 4 = 7\n#### 7"
    assert arithmetic.is_correct(two, GOLD)  # the feedback line holds no '#### n': the task scores z


def test_self_meta_corpus_by_hand():
    # problem 0: wrong, right, right(other text); problem 1: nothing right -> no rows
    first = [" 3 + 4 = 6\n#### 6", " 3 + 4 = 7\n#### 7", " 4 + 3 = 7\n#### 7", " #### 1", " #### 2", " #### 3"]
    eps = _arith_episodes(first, ["x"] * 6, 3)
    meta = self_refine.meta_corpus(eps)
    assert meta.prompts == [T.second_prompt("q0", t) for t in first[:3]]
    assert meta.targets == [" Feedback: the answer 6 is wrong.\n3 + 4 = 7\n#### 7",  # the group's first right
                            " Feedback: the answer 7 is right.\n3 + 4 = 7\n#### 7",  # copied
                            " Feedback: the answer 7 is right.\n4 + 3 = 7\n#### 7"]


def test_self_evolution_keeps_right_refinements_with_the_checkers_verdict():
    first = [" #### 6", " #### 6", " #### 7", " #### 7"]
    second = [" Feedback: the answer 6 is wrong.\n3 + 4 = 7\n#### 7",  # kept
              " Feedback: the answer 6 is right.\n3 + 4 = 7\n#### 7",  # wrong verdict: dropped
              " Feedback: the answer 7 is right.\n#### 7",  # kept
              " 3 + 4 = 7\n#### 7"]  # no feedback: dropped
    eps = _arith_episodes(first, second, 2)
    ev = self_refine.evolve_corpus(eps, direct=True)
    assert ev.prompts == [T.second_prompt("q0", " #### 6"), arithmetic.prompt("q0"),
                          T.second_prompt("q1", " #### 7"), arithmetic.prompt("q1")]
    assert ev.targets == [second[0], " 3 + 4 = 7\n#### 7", second[2], " #### 7"]
    assert len(self_refine.evolve_corpus(eps, direct=False).prompts) == 2
    assert self_refine.feedback_stats(eps) == {"train/feedback_written": 0.75, "train/feedback_right": 0.5}
    assert [self_refine.stage_of(t, self_refine.Config(meta_steps=2)) for t in range(4)] == [1, 1, 2, 2]


# ---- EVOLVE


def test_evolve_pairs_by_hand():
    # K = 2 first attempts per problem, N = 2 refinements each; 2 problems
    r1 = torch.tensor([0.0, 1, 0, 0])
    r2 = torch.tensor([0.0, 1, 1, 1, 0, 0, 1, 0])  # states: (0,1) (1,1) (0,0) (1,0)
    assert evolve.refine_pairs(r2, 2) == [(1, 0), (6, 7)]
    assert evolve.direct_pairs(r1, r2, 2, 2) == [(1, 0), (6, 3)]  # (right refinement row, its y1 row)
    assert evolve.pair_weights(2, 1).tolist() == [0.5, 0.5, 1.0] and evolve.pair_weights(1, 0).tolist() == [1.0]
    assert len(evolve.pair_weights(0, 0)) == 0


def test_evolve_loss_is_dpo_against_the_reference(random_tiny):
    from spkit.rl.losses import dpo_loss
    from spkit.testing import tiny_random_model

    model, tok = random_tiny
    ref, _ = tiny_random_model(seed=1)

    def comp(prompt: str, text: str) -> Completion:
        return Completion(prompt, text, tok(prompt)["input_ids"], tok(text, add_special_tokens=False)["input_ids"],
                          [], "stop", [])

    chosen = [comp("Question: 1?", " #### 1"), comp("Question: 2?", " #### 2")]
    rejected = [comp("Question: 1?", " #### 5"), comp("Question: 2?", " 2 + 2")]
    w = torch.tensor([0.25, 0.75])
    seq = {m: [V.padded_logprobs(m, [c.prompt_ids for c in cs], [c.token_ids for c in cs])
               for cs in (chosen, rejected)] for m in (model, ref)}
    with torch.no_grad():
        (lc, mc), (lr_, mr) = seq[model]
        (rc, rmc), (rr, rmr) = seq[ref]
        want = (dpo_loss((lc * mc).sum(1), (lr_ * mr).sum(1), (rc * rmc).sum(1), (rr * rmr).sum(1), 0.3,
                         reduction="none") * w).sum()
    cfg = evolve.Config(beta=0.3, micro_batch=1, max_grad_norm=0, epochs=1)
    got = evolve.update(model, torch.optim.SGD(model.parameters(), lr=0.0), ref, chosen, rejected, w, cfg)
    assert got["dpo"] == pytest.approx(want.item(), rel=1e-5)
    # against itself (an iteration's start): log 2 and margin 0, then a real step raises the margin
    cfg = dataclasses.replace(cfg, epochs=3, micro_batch=2)
    learner = copy.deepcopy(model)  # the fixture's model stays as it was
    same = evolve.update(learner, torch.optim.SGD(learner.parameters(), lr=0.05), model, chosen, rejected, w, cfg)
    assert same["dpo"] == pytest.approx(math.log(2), rel=1e-5) and same["margin"] == pytest.approx(0.0, abs=1e-5)
    assert same["margin_last"] > 0 and same["dpo_last"] < math.log(2)


def test_evolve_chains_refine_each_first_attempt_n_times(random_tiny, fake_reward):
    from spkit.generation import Sampler

    model, tok = random_tiny
    probs = V.train_problems(2, 0)
    cfg = evolve.Config(k=2, refinements=3)
    ch = evolve.sample_chains(Sampler(model, tok), probs, cfg, V.rollout_params(5), seed=4)
    assert len(ch.episodes.first) == 4 and len(ch.second) == 12 and len(ch.r2) == 12
    assert [c.prompt for c in ch.second] == [T.second_prompt(probs[i // 6]["question"], ch.episodes.first[i // 3].text)
                                            for i in range(12)]
    assert ch.episodes.second == ch.second[::3]
    direct = evolve.as_answer(ch.second[4], ch.episodes.first[1])  # refinement 2 of y1 #1, as an answer to x
    assert direct.prompt == arithmetic.prompt(probs[0]["question"]) == ch.episodes.first[1].prompt
    assert direct.prompt_ids == ch.episodes.first[1].prompt_ids and direct.token_ids == ch.second[4].token_ids
