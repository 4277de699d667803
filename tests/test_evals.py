"""spkit.evals: metrics on hand-worked cases, agreement with lm-eval's own filters, data errors,
offline IFEval, the spkit backend against lm-eval's hf backend, and `spkit eval` end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spkit.errors import SpkitError
from spkit.evals import data, metrics
from spkit.tasks import arithmetic as A

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "evals" / "fixtures"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a shared CPU: one torch thread (two oversubscribed threads run ~50x
    slower under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- ProcessBench metrics (hand-worked)


def test_processbench_scores_hand_worked():
    # erroneous items: labels 2, 0, 1 -> predictions 2 (right), 1 (wrong), None (unparsable)
    # correct items: labels -1, -1 -> predictions -1 (right), None (unparsable = wrong)
    s = metrics.processbench_scores([2, 0, 1, -1, -1], [2, 1, None, -1, None])
    assert s["acc_error"] == pytest.approx(1 / 3)
    assert s["acc_correct"] == pytest.approx(1 / 2)
    assert s["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))  # = 0.4
    assert s["f1"] == pytest.approx(0.4)


def test_processbench_unparsable_is_wrong_and_edge_cases():
    assert metrics.processbench_scores([-1, 3], [None, None]) == {
        "acc_error": 0.0, "acc_correct": 0.0, "f1": 0.0}
    perfect = metrics.processbench_scores([-1, 0, 4], [-1, 0, 4])
    assert perfect == {"acc_error": 1.0, "acc_correct": 1.0, "f1": 1.0}
    only_errors = metrics.processbench_scores([1, 2], [1, 0])
    assert only_errors["acc_error"] == 0.5 and math.isnan(only_errors["acc_correct"])
    assert math.isnan(only_errors["f1"])
    # a critic that always says "no error" gets every correct item and no erroneous one
    lazy = metrics.processbench_scores([-1, -1, 0, 1], [-1, -1, -1, -1])
    assert lazy == {"acc_error": 0.0, "acc_correct": 1.0, "f1": 0.0}
    with pytest.raises(ValueError):
        metrics.processbench_scores([1], [])


@pytest.mark.parametrize(
    ("text", "index"),
    [("The earliest error is in paragraph 1. \\boxed{1}", 1), ("\\boxed{-1}", -1),
     ("\\boxed{2} no wait \\boxed{0}", 0), ("\\boxed{ 3 }", 3), ("\\boxed{paragraph 2}", None),
     ("\\boxed{}", None), ("index 2", None), ("\\boxed{1.5}", None)],
)
def test_critic_prediction(text, index):
    assert metrics.critic_prediction(text) == index


def _utils():
    """evals/utils.py, the lm-eval glue (imported as lm-eval does: from the include path)."""
    sys.path.insert(0, str(ROOT / "evals"))
    try:
        import utils as ev
    finally:
        sys.path.pop(0)
    return ev


def test_processbench_lm_eval_aggregation_matches_metrics():
    ev = _utils()
    docs = [{"label": 2}, {"label": -1}, {"label": 0}, {"label": -1}]
    outs = ["\\boxed{2}", "\\boxed{-1}", "garbage", "\\boxed{1}"]
    items = [ev.processbench_process_results(d, [o])["f1"] for d, o in zip(docs, outs, strict=True)]
    assert items == [(2, 2), (-1, -1), (0, None), (-1, 1)]
    assert ev.agg_acc_error(items) == 0.5 and ev.agg_acc_correct(items) == 0.5
    assert ev.agg_f1(items) == pytest.approx(0.5)


# ---- ProcessBench's 8-sample majority vote (hand-made votes)


def _box(x: str) -> str:
    return f"The earliest error is in paragraph {x}. \\boxed{{{x}}}"


@pytest.mark.parametrize(
    ("critiques", "position", "index"),
    [([_box("2")] * 5 + [_box("1")] * 3, 0, 2),  # plain majority
     ([_box("1"), _box("2"), _box("2"), _box("1"), _box("0")], 0, 1),  # 2-2 tie: sampled first wins
     ([_box("0"), _box("-1"), _box("-1"), _box("0"), _box("0"), _box("-1")], 0, 0),
     (["no box", "\\boxed{1", _box("3"), "paragraph 2", "", "x", "y", "z"], 2, 3),  # no box: no vote
     (["no box"] * 8, None, None),  # nothing voted: unparsable
     ([_box("paragraph 2")] * 3 + [_box("2")] * 2, 0, None),  # the winner is not an int: unparsable
     (["\\boxed{}"] * 2 + [_box("1")], 0, None),  # an empty box is a vote (for "")
     (["\\boxed{ 2 }", "\\boxed{2}", _box("1")], 0, 2),  # answers are stripped before counting
     (["\\boxed{0} no, rather \\boxed{2}", _box("2"), _box("0")], 0, 2),  # a critique's last box
     ([_box("-1")] * 3 + [_box("4")] * 4 + [_box("-1")], 0, -1)],  # 4-4 tie: -1 came first
)
def test_majority_vote_hand_worked(critiques, position, index):
    assert metrics.majority_vote(critiques) == position
    assert metrics.voted_index(critiques) == index


def test_majority_filter_feeds_the_voted_index_to_the_metrics():
    """The maj@8 filter pipeline of the YAMLs (take_first_k 8, then the vote) on hand-made
    samples, including a padded item (a short data-parallel rank's extra copies) whose extra
    responses must not vote."""
    from lm_eval.filters import build_filter_ensemble

    ev = _utils()
    docs = [{"label": 1}, {"label": -1}, {"label": 0}, {"label": -1}]
    resps = [[_box("1")] * 3 + [_box("0")] * 2 + ["?"] * 3,  # votes 1: right
             [_box("-1"), _box("2")] * 4,  # 4-4 tie, -1 first: right
             ["?"] * 8,  # no vote: unparsable, wrong
             [_box("-1")] * 4 + [_box("3")] * 4 + [_box("3")] * 8]  # padded: only the first 8 vote
    filtered = ev.processbench_majority([r[:8] for r in resps], docs)
    assert filtered == [_box("1"), _box("-1"), "", _box("-1")]
    assert ev.processbench_majority(resps, docs)[3] == _box("3")  # why the YAMLs keep 8 first
    ensemble = build_filter_ensemble("maj@8", [("take_first_k", {"k": 8}),
                                               ("custom", {"filter_fn": ev.processbench_majority})])
    from lm_eval.api.instance import Instance

    insts = [Instance("generate_until", d, ("p", {}), 0, resps=list(r)) for d, r in zip(docs, resps, strict=True)]
    ensemble.apply(insts)
    assert [i.filtered_resps["maj@8"] for i in insts] == filtered
    out = [ev.processbench_process_results(d, [f]) for d, f in zip(docs, filtered, strict=True)]
    assert [o["f1"] for o in out] == [(1, 1), (-1, -1), (0, None), (-1, -1)]
    assert [o["unparsable"] for o in out] == [0, 0, 1, 0]
    items = [o["f1"] for o in out]
    assert ev.agg_acc_error(items) == 0.5 and ev.agg_acc_correct(items) == 1.0
    assert ev.agg_f1(items) == pytest.approx(2 / 3)


def test_samples_option_picks_the_vote_variants():
    from spkit.evals.run import resolve_tasks, with_samples

    names = resolve_tasks("spkit_arith,processbench,spkit_steps_arith_3")
    assert with_samples(names, 1) == names
    assert with_samples(names, 8) == ["spkit_arith", "processbench_local_maj8", "spkit_steps_maj8_arith_3"]
    assert with_samples(resolve_tasks("processbench,processbench_maj8"), 8) == ["processbench_local_maj8"]
    with pytest.raises(SpkitError, match="--samples 8 applies to processbench and spkit_steps"):
        with_samples(resolve_tasks("gsm8k"), 8)
    with pytest.raises(SpkitError, match="--samples is 1"):
        with_samples(names, 4)


def test_sampled_requests_do_not_depend_on_batch_size(random_tiny):
    """Each sampled request is seeded by (task, doc, repeat), so the 8 samples of an item are the
    same in any batch — and so on any data-parallel rank."""
    from lm_eval.api.instance import Instance

    from spkit.evals.lm import SpkitLM

    model, tok = random_tiny
    kw = {"until": [], "max_gen_toks": 6, "do_sample": True, "temperature": 1.0, "top_p": 0.9}
    docs = [(f"Question: {a} + 4 =", d) for d, a in enumerate((3, 17, 250))]
    reqs = [r for p, d in docs for r in [Instance("generate_until", {}, (p, kw), 0, ("t", d, 3))] * 3]
    outs = {}
    for bs in (1, 4, 64):
        outs[bs] = SpkitLM(model=model, tokenizer=tok, batch_size=bs).generate_until(reqs, disable_tqdm=True)
    assert outs[1] == outs[4] == outs[64]
    alone = SpkitLM(model=model, tokenizer=tok, batch_size=4).generate_until(reqs[3:6], disable_tqdm=True)
    assert alone == outs[1][3:6]  # doc 1 without the others (as on another rank)
    assert len(set(outs[1])) > 3  # the repeats are different samples


# ---- MATH


@pytest.mark.parametrize(
    ("pred", "gold", "verify", "exact"),
    [("\\frac{3}{4}", "\\frac{3}{4}", True, True),
     ("0.75", "\\frac{3}{4}", True, False),
     ("\\dfrac{3}{4}", "\\frac{3}{4}", True, False),  # Minerva's normaliser keeps \dfrac
     ("(4, 3)", "(4,3)", True, True),
     ("5\\sqrt{2}", "5\\sqrt{2}", True, True),
     ("\\sqrt{50}", "5\\sqrt{2}", True, False),
     ("7", "6", False, False),
     (None, "6", False, False)],
)
def test_math_metrics_hand_worked(pred, gold, verify, exact):
    assert metrics.math_verify_equal(pred, gold) is verify
    assert metrics.math_exact_match(pred, gold) is exact


def test_math_answer_is_last_boxed():
    assert metrics.math_answer("so \\boxed{1} or rather \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert metrics.math_answer("no box here") is None
    assert metrics.math_answer("\\boxed{unclosed") is None


# ---- GSM8K extraction agrees with lm-eval's built-in filters


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _gsm8k_cases() -> list[str]:
    fixture = [json.loads(x)["answer"] for x in _lines(FIXTURES / "gsm8k" / "test.jsonl")]
    model_like = ["The answer is 42.", "#### 1,200.", "She has $15 left.\n#### $15",
                  "3 + 4 = 7\n#### 7\nQuestion", "nothing numeric", "", "#### -5",
                  "1.5 then 2.", "#### 12 and #### 13", "costs $3,000,000 total"]
    return fixture + model_like + [r["answer"] for r in A.generate(20, seed=0)]


def test_gsm8k_extraction_matches_lm_eval_filters():
    from lm_eval.filters.extraction import RegexFilter

    strict = RegexFilter(regex_pattern=A.STRICT_RE.pattern)
    flexible = RegexFilter(regex_pattern=A.FLEXIBLE_RE.pattern, group_select=-1)
    cases = _gsm8k_cases()
    lm_strict = [r[0] for r in strict.apply([[c] for c in cases], [{}] * len(cases))]
    lm_flex = [r[0] for r in flexible.apply([[c] for c in cases], [{}] * len(cases))]
    for text, s, f in zip(cases, lm_strict, lm_flex, strict=True):
        assert (A.extract_answer(text, "strict") or "[invalid]") == s, text
        assert (A.extract_answer(text, "flexible") or "[invalid]") == f, text


def test_gsm8k_exact_match_matches_lm_eval_metric():
    from lm_eval.api.metrics import exact_match_hf_evaluate

    regexes = [",", "\\$", "(?s).*#### ", "\\.$"]
    golds = [json.loads(x)["answer"] for x in _lines(FIXTURES / "gsm8k" / "test.jsonl")]
    for gold in golds:
        for text in [gold, "#### " + A.target({"answer": gold}) + ".", "#### 0", "x"]:
            for mode in ("strict", "flexible"):
                pred = A.extract_answer(text, mode) or "[invalid]"
                ref = exact_match_hf_evaluate([pred], [gold], regexes_to_ignore=regexes,
                                              ignore_case=True)["exact_match"]
                assert A.is_correct(text, gold, mode) == bool(ref), (text, gold, mode)


# ---- data files: one clear line naming the file and the fix


def test_missing_data_file_is_one_clear_line(tmp_path):
    with pytest.raises(SpkitError) as e:
        data.load_split("gsm8k", "test", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "gsm8k" / "test.jsonl") in msg and "spkit data prepare" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("content", "needle"),
    [('{"question": "q", "answer": "#### 1"}\n{not json\n', "line 2 is not valid JSON"),
     ('{"question": "q"}\n', "missing field 'answer'"),
     ('{"question": "q", "answer": "no hashes"}\n', "field 'answer'"),
     ('[1, 2]\n', "JSON object"),
     ("\n", "is empty")],
)
def test_malformed_data_file_is_one_clear_line(tmp_path, content, needle):
    path = tmp_path / "gsm8k" / "test.jsonl"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(SpkitError) as e:
        data.load_split("gsm8k", "test", tmp_path)
    assert needle in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_spkit_eval_cli_reports_bad_data_before_loading_a_model(tmp_path, capsys):
    from spkit.cli import main

    rc = main(["eval", "--model", "does/not-exist", "--tasks", "processbench",
               "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "processbench/gsm8k.jsonl not found" in err[0] and "spkit data prepare" in err[0]
    os.environ.pop(data.ENV_VAR, None)  # no data dir at all: also one line
    rc = main(["eval", "--tasks", "gsm8k", "--out", str(tmp_path / "o2")])
    assert rc == 2 and "--data-dir" in capsys.readouterr().err


def test_fixtures_are_valid_and_check_command(capsys):
    paths = data.check_dir(list(data.DATASETS), FIXTURES)
    assert len(paths) == 8  # gsm8k test+train, math500, ifeval, 4 processbench subsets
    from spkit.cli import main

    assert main(["data", "check", "--data-dir", str(FIXTURES)]) == 0


# ---- spkit data prepare


def test_prepare_from_parquet_dir_json_array_and_null_padded_kwargs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "gsm8k_src" / "main"
    src.mkdir(parents=True)
    rows = [{"question": "q1", "answer": "1 + 1 = 2\n#### 2"}]
    pq.write_table(pa.Table.from_pylist(rows), src / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows * 2), src / "train-00000-of-00001.parquet")
    out = tmp_path / "data"
    written = data.prepare("gsm8k", out, tmp_path / "gsm8k_src")
    assert [p.name for p in written] == ["test.jsonl", "train.jsonl"]
    assert data.load_split("gsm8k", "train", out) == rows * 2

    pb = tmp_path / "pb"
    pb.mkdir()
    for sub in data.PROCESSBENCH_SUBSETS:
        recs = [{"id": f"{sub}-0", "generator": "g", "problem": "p", "steps": ["a", "b"],
                 "final_answer_correct": False, "label": 1}]
        (pb / f"{sub}.json").write_text(json.dumps(recs))
    data.prepare("processbench", out, pb)
    assert data.load_split("processbench", "omnimath", out)[0]["label"] == 1

    ife = tmp_path / "ifeval.jsonl"  # HF-style rows: every kwargs dict padded with nulls
    ife.write_text(json.dumps({"key": 7, "prompt": "p", "instruction_id_list": [
        "punctuation:no_comma"], "kwargs": [{"num_words": None, "keywords": None}]}) + "\n")
    data.prepare("ifeval", out, ife)
    assert data.load_split("ifeval", "test", out)[0]["kwargs"] == [{}]
    with pytest.raises(SpkitError, match="missing field 'answer'"):
        bad = tmp_path / "m.jsonl"
        bad.write_text('{"problem": "p"}\n')
        data.prepare("math500", out, bad)


def test_prepare_without_source_fails_cleanly_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(SpkitError, match="--from PATH"):
        data.prepare("math500", tmp_path / "out")


# ---- IFEval offline


def test_ifeval_runs_offline_without_any_download(tmp_path):
    code = (
        "import nltk\n"
        "def boom(*a, **k): raise RuntimeError('download attempted')\n"
        "nltk.download = boom\n"
        "from spkit.tasks.nltk_data import ensure_punkt_tab\n"
        "root = ensure_punkt_tab()\n"
        "from lm_eval.tasks.ifeval import instructions_util as u\n"
        "assert u.count_sentences('Dr. Smith came home. He slept! Did he?') == 3\n"
        "print(root)\n"
    )
    env = {**os.environ, "SPKIT_NLTK_DATA": str(tmp_path / "nltk"), "NLTK_DATA": ""}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "nltk" / "tokenizers" / "punkt_tab" / "english" /
            "ortho_context.tab").stat().st_size > 1000


# ---- backends and end to end


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """spkit-tiny if built, else a tiny random Llama saved like a checkpoint."""
    tiny = ROOT / "assets" / "models" / "spkit-tiny"
    if (tiny / "config.json").exists():
        return str(tiny)
    from spkit.testing import tiny_random_model

    d = tmp_path_factory.mktemp("model") / "step_0000007"
    model, tok = tiny_random_model()
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def test_spkit_backend_loglikelihood_matches_direct_computation(model_dir):
    import torch
    from lm_eval.api.instance import Instance

    from spkit.evals.lm import SpkitLM

    lm = SpkitLM(pretrained=model_dir, batch_size=2)
    reqs = [Instance("loglikelihood", {}, ("Question: 3 + 4 =", " 7"), 0),
            Instance("loglikelihood", {}, ("Answer:", " 12 apples"), 1)]
    got = lm.loglikelihood(reqs, disable_tqdm=True)
    tok, model = lm.tok, lm.model
    for (ctx, cont), (lp, greedy) in zip([r.args for r in reqs], got, strict=True):
        c = tok(ctx, add_special_tokens=False)["input_ids"]
        x = tok(ctx + cont, add_special_tokens=False)["input_ids"][len(c):]
        with torch.no_grad():
            logits = model(torch.tensor([c + x])).logits[0]
        logp = torch.log_softmax(logits.float(), -1)
        want = sum(logp[len(c) - 1 + t, x[t]].item() for t in range(len(x)))
        assert lp == pytest.approx(want, abs=1e-4)
        argmax = logits[len(c) - 1 : len(c) - 1 + len(x)].argmax(-1).tolist()
        assert greedy == (argmax == x)
    # the argmax continuation is greedy by definition
    c = tok("Answer:", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        nxt = model(torch.tensor([c])).logits[0, -1].argmax().item()
    req = Instance("loglikelihood", {}, ("Answer:", tok.decode([nxt])), 0)
    if tok("Answer:" + tok.decode([nxt]), add_special_tokens=False)["input_ids"] == c + [nxt]:
        assert lm.loglikelihood([req], disable_tqdm=True)[0][1] is True


def test_spkit_backend_agrees_with_lm_eval_hf_backend(model_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from spkit.evals.lm import SpkitLM

    tm = TaskManager(include_path=str(ROOT / "evals"), include_defaults=False)
    outs = {}
    for name, model, args in [("spkit", SpkitLM(pretrained=model_dir, batch_size=4), None),
                              ("hf", "hf", {"pretrained": model_dir, "device": "cpu"})]:
        res = lm_eval.simple_evaluate(model=model, model_args=args, tasks=["spkit_arith_2",
                                      "spkit_steps_arith_2"], task_manager=tm, limit=6,
                                      gen_kwargs={"max_gen_toks": 12}, batch_size=4,
                                      log_samples=True, bootstrap_iters=0)
        outs[name] = {t: [s["resps"][0][0] for s in rows]
                      for t, rows in res["samples"].items()}
    assert outs["spkit"] == outs["hf"]


def test_spkit_eval_end_to_end_and_report(model_dir, tmp_path, monkeypatch):
    from spkit.cli import main
    from spkit.evals import report

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "run"
    rc = main(["eval", "--model", model_dir, "--tasks",
               "gsm8k,math500,ifeval,processbench,spkit", "--data-dir", str(FIXTURES),
               "--limit", "2", "--max-gen-toks", "8", "--batch-size", "8", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["spkit"]["tasks"]) == {"gsm8k_local", "math500_local", "ifeval_local",
                                          "processbench_local", "spkit_arith", "spkit_steps",
                                          "spkit_ifeval_lite"}
    head = report.headline(res)
    assert {"gsm8k · strict EM", "processbench · avg F1", "ifeval · inst loose",
            "spkit_steps · avg F1", "math500 · math_verify"} <= set(head)
    rows = [json.loads(x) for x in _lines(out / "samples" / "processbench_local_math.jsonl")]
    assert len(rows) == 2 and "Your task is to review" in rows[0]["arguments"][0][0]
    table = (out / "table.md").read_text()
    assert "acc erroneous" in table and "| **average** |" in table
    assert (out / "scores.png").stat().st_size > 0
    if "step_0000007" in model_dir:
        assert res["spkit"]["step"] == 7

    # a second "checkpoint" and the comparison report
    out2 = tmp_path / "run2"
    assert main(["eval", "--model", model_dir, "--tasks", "spkit_arith", "--limit", "1",
                 "--max-gen-toks", "4", "--step", "20", "--out", str(out2)]) == 0
    text = report.compare([out2, out], tmp_path / "rep")
    assert text.splitlines()[0].count("|") == 4  # metric + 2 runs
    assert (tmp_path / "rep" / "score_vs_step.png").exists()
    with pytest.raises(SpkitError, match="results.json not found"):
        report.compare([tmp_path / "nope"])


# ---- spkit report: ProcessBench tables on hand-made results.json files


def _pb_results(group: str, flt: str, step: int | None, label: str,
                per_subset: dict[str, tuple[float, float, float]], n: int = 10) -> dict:
    """A results.json as `spkit eval` writes it for one ProcessBench-style group: ``per_subset``
    maps a subset to (acc erroneous, acc correct, unparsable); F1 and the group's means follow."""
    results, groups = {}, {}
    for sub, (ae, ac, unp) in per_subset.items():
        f1 = 0.0 if ae + ac == 0 else 2 * ae * ac / (ae + ac)
        results[f"{group}_{sub}"] = {"alias": sub, f"acc_error,{flt}": ae, f"acc_correct,{flt}": ac,
                                     f"f1,{flt}": f1, f"unparsable,{flt}": unp,
                                     f"f1_stderr,{flt}": "N/A"}
    subs = list(results.values())
    groups[group] = {m: sum(r[m] for r in subs) / len(subs)
                     for m in (f"acc_error,{flt}", f"acc_correct,{flt}", f"f1,{flt}")}
    results[group] = dict(groups[group])
    return {"results": results, "groups": groups, "group_subtasks": {group: list(results)[:-1]},
            "n-samples": {t: {"original": 100, "effective": n} for t in list(results)[:-1]},
            "spkit": {"tasks": [group], "step": step, "label": label, "model": label}}


def test_report_processbench_tables_hand_worked(tmp_path):
    from spkit.evals import report

    runs = {  # two greedy checkpoints and the 8-sample vote of the second one
        "s0": _pb_results("spkit_steps", "none", 0, "ck", {"arith_2": (0.5, 1.0, 0.25),
                                                             "arith_3": (0.0, 1.0, 0.5)}),
        "s100": _pb_results("spkit_steps", "none", 100, "ck", {"arith_2": (1.0, 0.5, 0.0),
                                                                 "arith_3": (0.5, 0.5, 0.0)}),
        "v100": _pb_results("spkit_steps_maj8", "maj@8", 200, "ck",
                            {"arith_2": (1.0, 1.0, 0.0), "arith_3": (0.75, 0.25, 0.125)}),
    }
    runs["v100"]["spkit"]["processbench_samples"] = 8
    for name, res in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    one = report.processbench_markdown(runs["s0"], "spkit_steps").splitlines()
    assert one[0] == "**spkit_steps** (greedy; ProcessBench metrics, %)"
    assert one[4] == "| arith_2 | 10 | 50.0 | 100.0 | 66.7 | 25.0 |"  # F1 = 2*.5*1/1.5
    assert one[5] == "| arith_3 | 10 | 0.0 | 100.0 | 0.0 | 50.0 |"
    assert one[6] == "| **average** | | 25.0 | 100.0 | **33.3** | 37.5 |"  # means over the subsets

    text = report.compare([tmp_path / "v100", tmp_path / "s100", tmp_path / "s0"], tmp_path / "rep")
    lines = text.splitlines()
    assert lines[0] == "| metric (%) | ck (step 0) | ck (step 100) | ck (step 200, maj@8) |"  # by step
    assert "| spkit_steps · avg F1 | 33.3 | 58.3 | n/a |" in lines  # (66.7 + 50) / 2
    assert "| spkit_steps maj@8 · avg F1 | n/a | n/a | 68.8 |" in lines  # (100 + 37.5) / 2 = 68.75
    assert "### spkit_steps (greedy)" in lines
    assert "### spkit_steps maj@8 (majority vote of 8 sampled critiques)" in lines
    assert "**ck (step 100)** (greedy; ProcessBench metrics, %)" in lines
    assert "**ck (step 200, maj@8)** (majority vote of 8 sampled critiques; ProcessBench metrics, %)" in lines
    greedy = text[text.index("**spkit_steps** across"):text.index("### spkit_steps maj@8")].splitlines()
    assert greedy[2] == "| subset | metric | ck (step 0) | ck (step 100) |"  # runs with the group
    assert "| arith_2 | F1 | 66.7 | 66.7 |" in greedy  # 2*1*.5/1.5 at step 100
    assert "| arith_3 | acc erroneous | 0.0 | 50.0 |" in greedy
    assert "| arith_3 | unparsable | 50.0 | 0.0 |" in greedy
    assert "| **average** | F1 | **33.3** | **58.3** |" in greedy
    assert "| **average** | unparsable | 37.5 | 0.0 |" in greedy
    vote = text[text.index("**spkit_steps maj@8** across"):].splitlines()
    assert vote[2] == "| subset | metric | ck (step 200, maj@8) |"
    assert "| arith_3 | F1 | 37.5 |" in vote  # 2*.75*.25/1
    assert "| arith_3 | unparsable | 12.5 |" in vote
    assert (tmp_path / "rep" / "report.md").read_text() == text + "\n"
    assert (tmp_path / "rep" / "processbench_vs_step.png").stat().st_size > 0
    # a report of runs without ProcessBench groups has neither the sections nor the plot
    arith = {"results": {"spkit_arith": {"exact_match,strict-match": 0.5}}, "groups": {},
             "n-samples": {}, "spkit": {"tasks": ["spkit_arith"], "step": 1, "label": "a"}}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(arith))
    assert "###" not in report.compare([tmp_path / "a"], tmp_path / "rep2")
    assert not (tmp_path / "rep2" / "processbench_vs_step.png").exists()


@pytest.fixture(scope="module")
def vote_run(model_dir, tmp_path_factory) -> Path:
    """`spkit eval --tasks spkit_steps --samples 8 --limit 4 --step 5` of the test model."""
    from spkit.cli import main

    out = tmp_path_factory.mktemp("vote") / "run"
    assert main(["eval", "--model", model_dir, "--tasks", "spkit_steps", "--samples", "8",
                 "--limit", "4", "--step", "5", "--out", str(out)]) == 0
    return out


def test_spkit_eval_samples_8_end_to_end(vote_run):
    """8 critiques per item; the logged vote is the majority of the logged samples and the
    metrics score the voted index."""
    out = vote_run
    res = json.loads((out / "results.json").read_text())
    assert res["spkit"]["tasks"] == ["spkit_steps_maj8"] and res["spkit"]["processbench_samples"] == 8
    assert "f1,maj@8" in res["groups"]["spkit_steps_maj8"]
    for sub in ("arith_2", "arith_3", "arith_4"):
        rows = [json.loads(x) for x in _lines(out / "samples" / f"spkit_steps_maj8_{sub}.jsonl")]
        assert len(rows) == 4 and all(r["filter"] == "maj@8" for r in rows)
        labels, preds = [], []
        for r in rows:
            critiques = r["resps"][0]
            assert len(critiques) == 8
            voted = metrics.voted_index(critiques)
            assert r["f1"] == [r["doc"]["label"], voted]  # the metrics read the vote
            assert r["unparsable"] == int(voted is None)
            labels.append(r["doc"]["label"])
            preds.append(voted)
        want = metrics.processbench_scores(labels, preds)
        got = res["results"][f"spkit_steps_maj8_{sub}"]
        for m in ("acc_error", "acc_correct", "f1"):
            assert got[f"{m},maj@8"] == pytest.approx(want[m], nan_ok=True)
    assert "majority vote of 8 sampled critiques" in (out / "table.md").read_text()
    info = res["spkit"]  # throughput counts items and, apart, the critiques generated for them
    assert info["samples"] == 12 and info["generations"] == 96
    assert f"12 samples in {info['seconds']} s" in (out / "table.md").read_text()
    assert "; 96 generations, " in (out / "table.md").read_text()


def test_spkit_report_over_greedy_and_vote_runs(vote_run, model_dir, tmp_path, monkeypatch):
    """A greedy run of the same model next to the 8-sample run: `spkit report` keeps them apart."""
    from spkit.cli import main
    from spkit.evals import report

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    greedy = tmp_path / "greedy"
    assert main(["eval", "--model", model_dir, "--tasks", "spkit_steps", "--limit", "4",
                 "--step", "0", "--out", str(greedy)]) == 0
    text = report.compare([vote_run, greedy], tmp_path / "rep")
    name = Path(model_dir).name
    assert text.splitlines()[0] == f"| metric (%) | {name} (step 0) | {name} (step 5, maj@8) |"
    assert "spkit_steps · avg F1" in text and "spkit_steps maj@8 · avg F1" in text
    assert "### spkit_steps (greedy)" in text and "### spkit_steps maj@8" in text
    assert (tmp_path / "rep" / "processbench_vs_step.png").stat().st_size > 0


def test_spkit_backend_caps_generation_to_the_context(random_tiny):
    from lm_eval.api.instance import Instance

    from spkit.evals.lm import SpkitLM

    model, tok = random_tiny
    lm = SpkitLM(model=model, tokenizer=tok, max_length=128, batch_size=4)
    prompt = "Question: Tom has 3 apples and buys 4 more. How many apples?\nAnswer:"
    n_prompt = len(tok(prompt)["input_ids"])
    assert n_prompt < 64
    req = Instance("generate_until", {}, (prompt, {"until": [], "max_gen_toks": 1280}), 0)
    seen = []
    original = lm.sampler.generate

    def spy(ps, params, **kw):
        outs = original(ps, params, **kw)
        seen.append((ps, params, outs))
        return outs

    lm.sampler.generate = spy
    lm.generate_until([req], disable_tqdm=True)
    prompts, params, outs = seen[0]
    assert prompts == [prompt]  # the prompt is kept whole
    assert params.max_new_tokens == 128 - n_prompt  # generation fills the rest of the context
    assert len(outs[0].token_ids) <= params.max_new_tokens


def _eval_on_one_and_two_ranks(args: list[str], tmp_path: Path) -> tuple:
    """`spkit eval ARGS` in one process (--out tmp/one) and on two gloo ranks (--out tmp/two)."""
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPKIT_NO_PROGRESS": "1"}
    one = subprocess.run([sys.executable, "-m", "spkit", *args, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "spkit", *args,
                          "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr + two.stderr)[-2000:]
    return one, two


@pytest.mark.slow
def test_data_parallel_eval_under_torchrun_equals_one_process(tiny_dir, tmp_path):
    """Two gloo ranks share the requests; rank 0 gathers and writes the same samples and metrics."""
    args = ["eval", "--model", str(tiny_dir), "--tasks", "spkit_arith_1", "--limit", "5", "--max-gen-toks", "8",
            "--batch-size", "4"]
    one, two = _eval_on_one_and_two_ranks(args, tmp_path)
    assert two.stdout.count("samples in") == 1  # rank 0 alone prints
    res = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two")]
    assert res[0]["results"] == res[1]["results"] and res[1]["spkit"]["samples"] == 5

    def responses(d: str) -> list:  # lm-eval pads the short rank with copies of its last request,
        # whose extra responses land in that sample's `resps`: the first one is the real one
        rows = [json.loads(x) for x in _lines(tmp_path / d / "samples" / "spkit_arith_1.jsonl")]
        return sorted((r["doc_id"], r["filter"], r["resps"][0][0]) for r in rows)

    assert responses("one") == responses("two") and len(responses("one")) == 10


@pytest.mark.slow
def test_data_parallel_vote_under_torchrun_equals_one_process(tiny_dir, tmp_path):
    """The 8-sample mode on two gloo ranks: the same 8 samples per item (seeded per task, doc and
    repeat), the same votes and metrics as one process, though the short rank is padded."""
    args = ["eval", "--model", str(tiny_dir), "--tasks", "spkit_steps_arith_2", "--samples", "8",
            "--limit", "3", "--max-gen-toks", "8", "--batch-size", "4"]
    one, two = _eval_on_one_and_two_ranks(args, tmp_path)
    res = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two")]
    assert res[0]["results"] == res[1]["results"] and "f1,maj@8" in res[0]["results"]["spkit_steps_maj8_arith_2"]

    def votes(d: str) -> list:  # the padded rank's extra copies land after the 8 real samples
        rows = [json.loads(x) for x in _lines(tmp_path / d / "samples" / "spkit_steps_maj8_arith_2.jsonl")]
        return sorted((r["doc_id"], r["resps"][0][:8], r["filtered_resps"][0]) for r in rows)

    assert votes("one") == votes("two") and len(votes("one")) == 3
