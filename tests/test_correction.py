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
