"""What the lessons lean on: quiet library progress bars, one output layout, accuracy with intervals.

A static render of a notebook (nbconvert, GitHub) shows every progress bar a library call opened
as a stale widget or a wall of stderr lines; these tests check that spkit's own calls open none
of transformers' or lm-eval's, and that the helpers lessons share compute what they claim.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from spkit.evals import report
from spkit.run import lesson_out, lesson_root, trained_models


# ---- progress bars ---------------------------------------------------------------------------
def test_loading_and_saving_a_model_open_no_transformers_bar(tiny_dir, tmp_path, capsys):
    pytest.importorskip("transformers.utils.logging").set_tqdm_hook  # noqa: B018 - transformers >= 5
    from transformers.utils import logging as hf_logging

    from spkit.models import load_model
    from spkit.run.checkpoint import Checkpointer

    model, tok = load_model(str(tiny_dir), device="cpu")
    Checkpointer(tmp_path).save(1, model, tok)
    err = capsys.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err
    # the hook is restored: outside spkit's calls transformers' bars are the user's business
    assert hf_logging.set_tqdm_hook(None) is None


def test_transformers_bars_show_without_the_guard(tiny_dir, capsys):
    """The check above can fail: the same load straight through transformers prints its bar."""
    hf_logging = pytest.importorskip("transformers.utils.logging")
    if not hasattr(hf_logging, "set_tqdm_hook"):
        pytest.skip("transformers < 5 has no weight-loading bar")
    from transformers import AutoModelForCausalLM

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    try:
        AutoModelForCausalLM.from_pretrained(str(tiny_dir))
    finally:
        if not was:
            hf_logging.disable_progress_bar()
    assert "Loading weights" in capsys.readouterr().err


def test_lm_eval_request_bars_are_silenced_and_restored(capsys):
    task_module = pytest.importorskip("lm_eval.api.task")
    from spkit.evals.run import _quiet_request_bars

    original = task_module.tqdm
    with _quiet_request_bars():
        for _ in task_module.tqdm(range(3), total=3):
            pass
    assert capsys.readouterr().err == ""
    assert task_module.tqdm is original
    for _ in task_module.tqdm(range(3), total=3):  # outside the guard lm-eval's bar is back
        pass
    assert "3/3" in capsys.readouterr().err


def test_spkit_backend_bar_follows_spkit_no_progress(monkeypatch):
    pytest.importorskip("lm_eval")
    from spkit.evals.lm import _bar

    monkeypatch.setenv("SPKIT_NO_PROGRESS", "1")
    assert _bar(False, range(2)).disable
    monkeypatch.setenv("SPKIT_NO_PROGRESS", "0")
    assert not _bar(False, range(2), file=open(os.devnull, "w")).disable  # noqa: SIM115
    assert _bar(True, range(2)).disable  # lm-eval's own request wins


# ---- one layout for every lesson -------------------------------------------------------------
def _fake_run(out: Path, steps: int, with_final: bool = True) -> Path:
    out.mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"algorithm": "spiral", "config": {}}))
    (out / "metrics.csv").write_text("step,x\n" + "".join(f"{s},0.5\n" for s in range(steps + 1)))
    if with_final:
        (out / "final").mkdir()
        (out / "final" / "config.json").write_text("{}")
    return out / "final"


def test_lesson_out_shares_one_root(monkeypatch, tmp_path):
    monkeypatch.delenv("SPKIT_LESSON_OUT", raising=False)
    assert lesson_out("03_play_against_the_model") == Path("runs/lessons/03_play_against_the_model")
    monkeypatch.setenv("SPKIT_LESSON_OUT", str(tmp_path))
    assert lesson_root() == tmp_path
    assert lesson_out("02_spiral_self_play") == tmp_path / "02_spiral_self_play"


def test_trained_models_finds_finals_at_any_depth_most_trained_last(monkeypatch, tmp_path):
    monkeypatch.setenv("SPKIT_LESSON_OUT", str(tmp_path))
    long = _fake_run(lesson_out("02_spiral_self_play") / "live", steps=120)
    time.sleep(0.01)
    short = _fake_run(lesson_out("03_play_against_the_model") / "spiral", steps=12)  # newer, fewer updates
    _fake_run(lesson_out("02_spiral_self_play") / "killed", steps=5, with_final=False)
    (tmp_path / "not_a_run" / "final").mkdir(parents=True)  # no run.json beside it
    assert trained_models() == [short, long]
    assert trained_models(tmp_path / "03_play_against_the_model") == [short]
    assert trained_models(tmp_path / "nothing_here") == []


# ---- accuracy with Wilson intervals ----------------------------------------------------------
def test_rate_interval_is_wilson_and_tables_show_it():
    lo, hi = report.rate_interval(0.15, 100)
    assert (lo, hi) == pytest.approx((0.0931, 0.2328), abs=5e-4)  # Wilson score, z = 1.96 (by hand)
    assert report.rate_interval(0.0, 20)[0] == 0.0 and report.rate_interval(1.0, 20)[1] == 1.0
    assert report.pct_interval(0.15, 100) == "15.0 [9.3, 23.3]"
    assert report.pct_interval(float("nan"), 100) == "n/a"
    table = report.rates_markdown({"3": (0.15, 100), "4": (0.18, 100)}, "steps")
    assert "| 3 | 100 | 15.0 | 9.3 – 23.3 |" in table and table.count("\n") == 3


def test_arith_levels_read_counts_from_lm_eval_results():
    res = {"group_subtasks": {"spkit_arith": ["spkit_arith_2", "spkit_arith_1"]},
           "results": {"spkit_arith_1": {"exact_match,strict-match": 0.5, "exact_match,flexible-extract": 0.6},
                       "spkit_arith_2": {"exact_match,strict-match": 0.25, "exact_match,flexible-extract": 0.25}},
           "n-samples": {"spkit_arith_1": {"effective": 10}, "spkit_arith_2": {"effective": 8}}}
    assert report.arith_levels(res) == {"1": (0.5, 10), "2": (0.25, 8)}
    assert report.arith_levels(res, "exact_match,flexible-extract")["1"] == (0.6, 10)
    md = report.arith_levels_markdown(res)
    assert "| 1 | 10 | 50.0 [23.7, 76.3] | 60.0 [31.3, 83.2] |" in md


def test_plot_rates_draws_side_by_side_bars_with_interval_whiskers():
    from matplotlib.container import BarContainer
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    report.plot_rates(ax, {"a": (0.5, 10), "b": (0.2, 10)}, shift=-0.2, width=0.4, label="x")
    report.plot_rates(ax, {"a": (0.7, 10), "b": (0.1, 10)}, shift=0.2, width=0.4, label="y")
    bars = ax.patches
    assert len(bars) == 4
    lefts = sorted(round(b.get_x(), 3) for b in bars)
    assert lefts == [-0.4, 0.0, 0.6, 1.0]  # no bar sits on top of another
    first = next(c for c in ax.containers if isinstance(c, BarContainer))
    whisker = first.errorbar.lines[2][0].get_segments()[0]
    lo, hi = report.rate_interval(0.5, 10)
    assert [round(y, 6) for _, y in whisker] == [round(lo, 6), round(hi, 6)]
    assert not any(math.isnan(b.get_height()) for b in bars)
