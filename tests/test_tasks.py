"""spkit.tasks: known answers, properties (determinism, held-out split, parsers never raise)."""

from __future__ import annotations

import random
import re

import pytest

from spkit.tasks import arithmetic as A
from spkit.tasks import instructions as I
from spkit.tasks import steps as S

# ---- arithmetic


def _recompute(answer: str) -> int:
    """Re-derive the final value from the step lines (checks every line's arithmetic)."""
    value = None
    for line in answer.split("\n")[:-1]:
        a, op, b, _, c = line.split()
        a, b, c = int(a), int(b), int(c)
        assert value is None or a == value, f"chain broken at {line!r}"
        assert c == {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op], line
        value = c
    return value


def test_arith_records_are_gsm8k_schema_and_correct():
    recs = A.generate(200, seed=3, steps=(1, 2, 3, 4, 5))
    for r in recs:
        assert set(r) == {"question", "answer", "steps"}
        assert r["answer"].count("\n") == r["steps"]
        assert re.fullmatch(r"#### \d+", r["answer"].split("\n")[-1])
        assert _recompute(r["answer"]) == int(A.target(r))
        assert 0 <= int(A.target(r)) <= A.MAX_VALUE
        assert A.is_correct(r["answer"], r["answer"])
    assert [r["steps"] for r in recs[:5]] == [1, 2, 3, 4, 5]


def test_arith_known_example_and_annotation():
    rec = A.generate(1, seed=0, steps=2, split=None, annotate=True)[0]
    first = rec["answer"].split("\n")[0]
    assert re.fullmatch(r"\d+ [-+*/] \d+ = <<\d+[-+*/]\d+=\d+>>\d+", first)


def test_arith_deterministic_and_split_disjoint():
    assert A.generate(50, seed=7) == A.generate(50, seed=7)
    assert A.generate(50, seed=7) != A.generate(50, seed=8)
    test = {r["question"] for r in A.generate(300, seed=0, split="test")}
    train = {r["question"] for r in A.generate(3000, seed=0, split="train")}
    assert not test & train
    assert all(A.split_of(q) == "test" for q in test)


@pytest.mark.parametrize(
    ("text", "strict", "flexible"),
    [
        ("3 + 4 = 7\n#### 7", "7", "7"),
        ("so 1,200 apples\n#### 1,200.", "1,200.", "1,200."),
        ("The answer is 12 and then 15", None, "15"),
        ("#### -3 and later 9", "-3", "9"),
        ("no digits here", None, None),
        ("", None, None),
    ],
)
def test_gsm8k_extraction_known_cases(text, strict, flexible):
    assert A.extract_answer(text, "strict") == strict
    assert A.extract_answer(text, "flexible") == flexible


def test_gsm8k_normalisation():
    assert A.normalize("$1,200.") == "1200"
    assert A.is_correct("#### 1,200", "1200")
    assert A.is_correct("blah 42.", "#### 42", mode="flexible")
    assert not A.is_correct("#### 41", "42")


def test_gsm8k_extractors_never_raise_on_fuzz():
    rng = random.Random(0)
    alphabet = "0123456789#$., -\n abc"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for mode in ("strict", "flexible"):
            out = A.extract_answer(text, mode)
            assert out is None or out in text


# ---- instructions


def test_ifeval_records_schema_and_no_conflicts():
    recs = I.generate(200, seed=1)
    for r in recs:
        assert set(r) == {"key", "prompt", "instruction_id_list", "kwargs"}
        assert r["key"] >= I.TEST_KEY_OFFSET
        assert len(r["kwargs"]) == len(r["instruction_id_list"]) in (1, 2)
        pair = frozenset(r["instruction_id_list"])
        assert pair not in I.CONFLICTS
    assert I.generate(20, seed=1) == recs[:20]
    train = {r["prompt"] for r in I.generate(1000, seed=1, split="train")}
    assert not train & {r["prompt"] for r in recs}


def test_ifeval_reference_responses_pass_lm_eval_checks():
    rng = random.Random(0)
    for r in I.generate(60, seed=2):
        resp = I.reference_response(r, rng)
        assert all(I.check(r, resp)), (r, resp)
        assert I.check(r, resp) == I.check(r, resp, use_lm_eval=False)


@pytest.mark.parametrize(
    ("iid", "kw", "response", "ok"),
    [
        ("change_case:english_lowercase", {}, "the sea is calm today and i like it.", True),
        ("change_case:english_lowercase", {}, "The sea is calm today.", False),
        ("punctuation:no_comma", {}, "Yes, it is.", False),
        ("keywords:existence", {"keywords": ["bird", "sun"]}, "A bird in the sun.", True),
        ("keywords:existence", {"keywords": ["bird", "sun"]}, "A bird.", False),
        ("startend:end_checker", {"end_phrase": "The end."}, '"All good. THE END."', True),
        ("length_constraints:number_words", {"num_words": 3, "relation": "less than"},
         "one two", True),
        ("length_constraints:number_words", {"num_words": 3, "relation": "at least"},
         "one two", False),
        ("detectable_format:title", {}, "<<my day>>\nIt was fine.", True),
        ("detectable_format:title", {}, "<< >> no title", False),
        ("startend:quotation", {}, '"quoted"', True),
        ("startend:quotation", {}, "not quoted", False),
    ],
)
def test_ifeval_checks_known_cases(iid, kw, response, ok):
    rec = {"key": 0, "prompt": "p", "instruction_id_list": [iid], "kwargs": [kw]}
    assert I.check(rec, response) == [ok]
    assert I.check(rec, response, use_lm_eval=False) == [ok]
    assert I.check(rec, "   ") == [False]  # IFEval: an empty response follows nothing


# ---- steps (ProcessBench format)


def test_steps_labels_are_earliest_wrong_step():
    for subset, k in S.SUBSETS.items():
        for r in S.generate(150, seed=0, subset=subset):
            assert set(r) == {"id", "generator", "problem", "steps",
                              "final_answer_correct", "label"}
            assert len(r["steps"]) == k and -1 <= r["label"] < k
            wrong = [not _step_ok(s) for s in r["steps"]]
            question_numbers = [int(x) for x in re.findall(r"\d+", r["problem"])]
            if r["label"] == -1:
                assert not any(wrong) and r["final_answer_correct"]
                ops = [int(s.split()[2]) for s in r["steps"]]
                assert ops == question_numbers[1:]  # operands copied right
            else:
                assert not any(wrong[: r["label"]])


def _step_ok(step: str) -> bool:
    a, op, b, _, c = step.split("\n")[0].split()
    a, b, c = int(a), int(b), int(c)
    return c == {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]


def test_steps_error_mix_and_determinism():
    recs = S.generate(400, seed=1, subset="arith_3")
    erroneous = [r for r in recs if r["label"] >= 0]
    assert 0.4 < len(erroneous) / len(recs) < 0.6
    assert {r["label"] for r in erroneous} == {0, 1, 2}
    assert recs == S.generate(400, seed=1, subset="arith_3")


def test_critic_prompt_and_index_extraction():
    rec = S.generate(1, seed=0, subset="arith_2")[0]
    p = S.critic_prompt(rec)
    assert "<paragraph_0>\n" + rec["steps"][0] + "\n</paragraph_0>" in p
    assert p.endswith("in \\boxed{}.")
    assert S.extract_index("first \\boxed{1} then \\boxed{ -1 }") == -1
    assert S.extract_index("\\boxed{2}") == 2
    assert S.extract_index("\\boxed{two}") is None
    assert S.extract_index("no box") is None
    assert S.extract_index("\\boxed{3") is None
    assert S.extract_index(S.reference_critique(rec)) == rec["label"]


def test_documents_and_train_test_disjoint_steps():
    rec = A.generate(1, seed=0)[0]
    assert A.document(rec) == f"Question: {rec['question']}\nAnswer: {rec['answer']}"
    test = {r["problem"] for r in S.generate(200, seed=0, subset="arith_2")}
    train = {r["problem"] for r in S.generate(2000, seed=0, subset="arith_2", split="train")}
    assert not test & train
    r = I.generate(1, seed=0, split="train")[0]
    prompt, response = I.document(r, random.Random(0)).split("\n", 1)
    assert prompt == r["prompt"] and all(I.check(r, response))
    assert I._topic_of("Write a short note about winter. Please refrain from commas.") == "winter"
