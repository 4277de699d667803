"""What a careless or hostile user meets: every mistake is one line, model text cannot drive the
terminal, outcomes read as English, and library code leaves matplotlib's backend alone."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from spkit.errors import SpkitError
from spkit.models import load_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "assets" / "models" / "spkit-tiny"
FIXTURES = ROOT / "evals" / "fixtures"


def _cli(capsys, *argv: str) -> tuple[int, list[str]]:
    """Run `spkit ARGV` in process; (exit code, stderr lines)."""
    from spkit.cli import main

    rc = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.strip().splitlines()


def _one_line_error(capsys, cmd: str, *argv: str) -> str:
    rc, err = _cli(capsys, cmd, *argv)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"spkit {cmd}: error: ")
    return err[0]


def _save(model, tok, path: Path, *, tokenizer: bool = True) -> Path:
    model.save_pretrained(path)
    if tokenizer:
        tok.save_pretrained(path)
    return path


# ---- 1. model loading ------------------------------------------------------------------------


def test_model_dir_without_tokenizer_is_one_line(random_tiny, tmp_path):
    path = _save(*random_tiny, tmp_path / "m", tokenizer=False)
    with pytest.raises(SpkitError, match="tokenizer") as e:
        load_model(path, device="cpu")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_truncated_tokenizer_json_is_one_line(random_tiny, tmp_path):
    path = _save(*random_tiny, tmp_path / "m")
    tj = path / "tokenizer.json"
    tj.write_bytes(tj.read_bytes()[: tj.stat().st_size // 2])
    with pytest.raises(SpkitError, match="tokenizer") as e:
        load_model(path, device="cpu")
    assert "\n" not in str(e.value) and "tokenizer.json" in str(e.value)


def test_pickle_weights_are_refused_without_unpickling(random_tiny, tmp_path, monkeypatch):
    import torch

    model, tok = random_tiny
    path = _save(model, tok, tmp_path / "m")
    for f in path.glob("*.safetensors"):
        f.unlink()
    torch.save(model.state_dict(), path / "pytorch_model.bin")  # an old-style pickle checkpoint
    assert (path / "pytorch_model.bin").exists() and not list(path.glob("*.safetensors"))

    def no_unpickling(*a, **k):
        raise AssertionError("torch.load was called on a pickle file")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(SpkitError) as e:
        load_model(path, device="cpu")
    msg = str(e.value)
    assert "safetensors" in msg and "pytorch_model.bin" in msg and "\n" not in msg
    assert "save_pretrained" in msg  # says how to convert


def test_load_model_uses_safetensors_only(random_tiny, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    seen = {}
    real = AutoModelForCausalLM.from_pretrained

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    load_model(_save(*random_tiny, tmp_path / "m"), device="cpu")
    assert seen.get("use_safetensors") is True and seen.get("trust_remote_code") is False


def test_unknown_device_is_one_line():
    from spkit.models import pick_device

    with pytest.raises(SpkitError, match="device"):
        pick_device("gpu0")


# ---- 2. spkit eval -------------------------------------------------------------------------


@pytest.fixture()
def truncated_tiny(tmp_path):
    if not (TINY / "config.json").exists():
        pytest.skip("spkit-tiny not built")
    d = tmp_path / "truncated"
    d.mkdir()
    for f in TINY.iterdir():
        if f.is_file():
            data = f.read_bytes()
            (d / f.name).write_bytes(data[: len(data) // 2] if f.suffix == ".safetensors"
                                     else data)
    return d


def test_eval_hf_backend_on_truncated_weights_is_one_line(truncated_tiny, tmp_path, capsys):
    line = _one_line_error(capsys, "eval", "--model", str(truncated_tiny), "--backend", "hf",
                           "--tasks", "spkit_arith", "--limit", "1", "--out",
                           str(tmp_path / "out"))
    assert "model.safetensors" in line and ("truncated" in line or "incomplete" in line)


def test_truncated_weights_are_named_by_load_model(truncated_tiny):
    with pytest.raises(SpkitError, match="incomplete|truncated") as e:
        load_model(truncated_tiny, device="cpu")
    assert "model.safetensors" in str(e.value)


def test_data_file_with_invalid_utf8_names_file_and_line(tmp_path, capsys):
    from spkit.evals import data

    path = tmp_path / "gsm8k" / "test.jsonl"
    path.parent.mkdir()
    path.write_bytes(b'{"question": "q", "answer": "#### 1"}\n{"question": "\xff\xfe", '
                     b'"answer": "#### 2"}\n')
    with pytest.raises(SpkitError) as e:
        data.load_split("gsm8k", "test", tmp_path)
    assert str(path) in str(e.value) and "line 2" in str(e.value) and "UTF-8" in str(e.value)
    line = _one_line_error(capsys, "eval", "--model", "does/not-exist", "--tasks", "gsm8k",
                           "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert "line 2" in line and "UTF-8" in line
    line = _one_line_error(capsys, "data", "check", "--data-dir", str(tmp_path), "gsm8k")
    assert "line 2" in line


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--limit", "-3"), ("--limit", "0"), ("--limit", "2.5"), ("--batch-size", "0"), ("--max-gen-toks", "-1"),
     ("--num-fewshot", "-2"), ("--max-length", "0"), ("--threads", "-1")],
)
def test_eval_rejects_impossible_numbers_up_front(flag, value, tmp_path, capsys, monkeypatch):
    import spkit.models

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(spkit.models, "load_model", no_load)
    line = _one_line_error(capsys, "eval", "--tasks", "spkit_arith", flag, value,
                           "--out", str(tmp_path / "out"))
    assert flag in line


def test_eval_unwritable_out_fails_before_evaluating(tmp_path, capsys, monkeypatch):
    import lm_eval

    def no_eval(*a, **k):
        raise AssertionError("evaluated although --out cannot be written")

    monkeypatch.setattr(lm_eval, "simple_evaluate", no_eval)
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = _one_line_error(capsys, "eval", "--tasks", "spkit_arith", "--limit", "1",
                           "--out", str(blocker / "sub"))
    assert "not writable" in line and str(blocker / "sub") in line


def test_eval_bad_dtype_and_device_with_hf_backend_are_one_line(tmp_path, capsys, monkeypatch):
    import lm_eval

    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda *a, **k: pytest.fail("evaluated"))
    line = _one_line_error(capsys, "eval", "--backend", "hf", "--dtype", "float64",
                           "--tasks", "spkit_arith", "--out", str(tmp_path / "o"))
    assert "dtype" in line
    line = _one_line_error(capsys, "eval", "--backend", "hf", "--device", "gpu0",
                           "--tasks", "spkit_arith", "--out", str(tmp_path / "o"))
    assert "device" in line


def test_eval_missing_data_dir_is_named(tmp_path, capsys):
    missing = tmp_path / "no_such_dir"
    line = _one_line_error(capsys, "eval", "--model", "does/not-exist", "--tasks", "gsm8k",
                           "--data-dir", str(missing), "--out", str(tmp_path / "out"))
    assert f"{missing} does not exist" in line and "--data-dir" in line


def test_eval_bad_task_name_is_one_line(tmp_path, capsys):
    line = _one_line_error(capsys, "eval", "--model", "does/not-exist", "--tasks",
                           "spkit_arith,no_such_task_xyz", "--out", str(tmp_path / "out"))
    assert "no_such_task_xyz" in line


def test_report_bad_results_and_unwritable_out_are_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("[1, 2]")
    line = _one_line_error(capsys, "report", str(run))
    assert "results.json" in line
    (run / "results.json").write_bytes(b'{"a": "\xff"}')
    line = _one_line_error(capsys, "report", str(run))
    assert "results.json" in line and "UTF-8" in line
    (run / "results.json").write_text('{"results": {}, "spkit": {"tasks": []}}')
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = _one_line_error(capsys, "report", str(run), "--out", str(blocker / "rep"))
    assert "not writable" in line


def test_data_prepare_wrong_file_and_unwritable_out_are_one_line(tmp_path, capsys):
    src = FIXTURES / "gsm8k" / "test.jsonl"
    line = _one_line_error(capsys, "data", "prepare", "ifeval", "--from", str(src),
                           "--out", str(tmp_path / "d"))
    assert "ifeval" in line
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = _one_line_error(capsys, "data", "prepare", "gsm8k", "--from", str(src),
                           "--out", str(blocker / "d"))
    assert "not writable" in line
    scalar = tmp_path / "scalar.json"
    scalar.write_text("42")
    line = _one_line_error(capsys, "data", "prepare", "math500", "--from", str(scalar),
                           "--out", str(tmp_path / "d"))
    assert str(scalar) in line


# ---- 3. model text cannot drive the terminal ----------------------------------------------

HOSTILE = "ok\x1b[2J\x1b]52;c;ZXZpbA==\x07 then\x9b31m red\x00 nul\x7f\x1b[1;31mX\x1b[0m\ttab\nend"


def test_terminal_safe_strips_control_and_escape_sequences():
    from spkit.text import terminal_safe

    clean = terminal_safe(HOSTILE)
    for bad in ("\x1b", "\x9b", "\x00", "\x07", "\x7f", "]52;", "[2J", "31m"):
        assert bad not in clean
    assert clean == "ok then red nulX\ttab\nend"
    assert terminal_safe("a\x1b]0;title\x1b\\b\x9d8;;x\x9cc\x1bMd\u202eevil") == "abcdevil"
    assert terminal_safe("plain text, ünïcode — ok\n") == "plain text, ünïcode — ok\n"


def test_terminal_play_strips_escapes_from_model_text():
    from spkit.games import load_game
    from spkit.play import GameSession, ModelMove, run_terminal

    class Hostile:
        def move(self, state, seed):
            return ModelMove(state.current_player(), None, HOSTILE, None, "bad\x1b[2J move")

    s = GameSession(load_game("tictactoe"), Hostile(), human_seat=0)
    buf = io.StringIO()
    run_terminal(s, io.StringIO("1\nn\n"), Console(file=buf, width=200, color_system=None))
    out = buf.getvalue()
    assert "Model wrote: ok then red nul" in out
    for bad in ("\x1b", "\x9b", "\x00", "\x07", "\x7f"):
        assert bad not in out


def test_spkit_sample_strips_escapes_from_model_text(tiny_dir, monkeypatch, capsys):
    from spkit.cli import main
    from spkit.generation import Sampler
    from spkit.sampling import Completion

    def hostile(self, prompts, params=None, seed=None, progress=False):
        return [Completion(p, HOSTILE, [1], [2], [-0.1], "stop") for p in prompts]

    monkeypatch.setattr(Sampler, "generate", hostile)
    assert main(["sample", "--model", str(tiny_dir), "--n", "1", "--prompt", "hi\x1b]52;c;eA==\x07"]) == 0
    out = capsys.readouterr().out
    assert "ok then red nul" in out and not any(c in out for c in ("\x1b", "\x9b", "\x00", "\x07", "\x7f"))


# ---- 4. outcome wording ----------------------------------------------------------------------


def _kuhn_seed(human_loses: bool) -> int:
    from spkit.games import load_game
    from spkit.games.kuhn_poker import RANK

    g = load_game("kuhn_poker")
    for seed in range(100):
        c = g.new_initial_state(seed=seed).cards
        if (RANK[c[0]] < RANK[c[1]]) == human_loses:
            return seed
    raise AssertionError


def test_kuhn_board_says_you_lose():
    from spkit.play import ModelMove
    from spkit.widgets import KuhnPokerBoard

    class Caller:
        def move(self, state, seed):
            return ModelMove(state.current_player(), "call", "\\boxed{call}")

    board = KuhnPokerBoard(Caller(), sync=True, seed=_kuhn_seed(human_loses=True))
    board.human_move("bet")
    assert board.session.over and board.session.returns()[0] == -2
    assert "Game over: you lose (-2.00)." in board.status.value
    assert "loss" not in board.status.value


def test_terminal_outcome_wording_lose_win_draw():
    from spkit.games import load_game
    from spkit.play import GameSession, ModelMove, run_terminal

    class Fixed:
        def __init__(self, *a):
            self.a = list(a)

        def move(self, state, seed):
            return ModelMove(state.current_player(), self.a.pop(0), "")

    def play(game, seat, moves, script, seed=0):
        s = GameSession(load_game(game), Fixed(*moves), human_seat=seat, seed=seed)
        buf = io.StringIO()
        run_terminal(s, io.StringIO(script), Console(file=buf, width=200, color_system=None),
                     max_games=1)
        return buf.getvalue()

    assert "Game over: you lose (-2.00)." in play("kuhn_poker", 0, ["call"], "bet\n",
                                                  seed=_kuhn_seed(True))
    assert "Game over: you win (+1.00)." in play("kuhn_poker", 0, ["fold"], "bet\n")
    # TicTacToe draw: X 1,2,6,7,9 (human), O 3,4,5,8 (model)
    out = play("tictactoe", 0, ["5", "3", "4", "8"], "1\n2\n6\n7\n9\n")
    assert "Game over: draw (+0.00)." in out and "you draw" not in out


# ---- 5. matplotlib's global backend -------------------------------------------------------


def test_report_plots_leave_the_matplotlib_backend_alone(tmp_path):
    code = f"""
import matplotlib
matplotlib.use("svg")
from pathlib import Path
from spkit.evals import report
res = {{"results": {{"spkit_arith": {{"exact_match,strict-match": 0.5,
       "exact_match,flexible-extract": 0.75}}}}, "spkit": {{"tasks": ["spkit_arith"], "step": 3,
       "label": "x"}}}}
report.plot_run(res, Path({str(tmp_path / "a.png")!r}))
report.plot_steps([res, res], Path({str(tmp_path / "b.png")!r}))
print(matplotlib.get_backend())
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MPLBACKEND", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg"
    for name in ("a.png", "b.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_global_backend_switch_in_files_owned_here():
    for rel in ("spkit/evals/report.py", "spkit/evals/run.py", "spkit/play.py",
                "spkit/widgets/boards.py"):
        assert "matplotlib.use(" not in (ROOT / rel).read_text(), rel


def test_play_model_path_with_rich_markup_is_not_a_traceback(capsys):
    line = _one_line_error(capsys, "play", "tictactoe", "--model", "./no[/]such")
    assert "not found" in line


def test_eval_unwritable_nltk_data_dir_is_one_line(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SPKIT_NLTK_DATA", str(blocker / "nltk"))
    line = _one_line_error(capsys, "eval", "--tasks", "spkit_arith", "--out",
                           str(tmp_path / "out"))
    assert "SPKIT_NLTK_DATA" in line


@pytest.mark.parametrize("results", ['{"results": {"spkit_arith": 1}}',
                                     '{"results": {}, "spkit": {"tasks": 5}}',
                                     '{"results": {}, "spkit": []}'])
def test_report_on_malformed_results_structure_is_one_line(results, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(results)
    assert "not an `spkit eval` results file" in _one_line_error(capsys, "report", str(run))


def test_report_prints_labels_without_escape_sequences(tmp_path, capsys):
    from spkit.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({
        "results": {"spkit_arith": {"exact_match,strict-match": 0.5}},
        "spkit": {"tasks": ["spkit_arith"], "label": "evil\x1b]52;c;ZXZpbA==\x07\x1b[2J"}}))
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "evil" in out and "\x1b" not in out and "\x07" not in out


@pytest.mark.parametrize(("flag", "value"), [("--games", "0"), ("--games", "-2"),
                                             ("--temperature", "nan")])
def test_play_rejects_bad_numbers(flag, value, capsys, monkeypatch):
    import spkit.play

    monkeypatch.setattr(spkit.play, "as_player", lambda *a, **k: pytest.fail("model loaded"))
    assert flag in _one_line_error(capsys, "play", "kuhn_poker", flag, value)


def test_spkit_lm_rejects_bad_batch_size_before_loading(monkeypatch):
    import spkit.models
    from spkit.evals.lm import SpkitLM

    monkeypatch.setattr(spkit.models, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    for bad in (0, -1, "x"):
        with pytest.raises(SpkitError, match="batch_size"):
            SpkitLM(pretrained="spkit-tiny", batch_size=bad)


def test_truncated_config_json_is_one_line(random_tiny, tmp_path, capsys, monkeypatch):
    import lm_eval

    path = _save(*random_tiny, tmp_path / "m")
    cfg = path / "config.json"
    cfg.write_bytes(cfg.read_bytes()[:40])
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda *a, **k: pytest.fail("evaluated"))
    capsys.readouterr()  # save_pretrained's progress bar
    line = _one_line_error(capsys, "eval", "--model", str(path), "--backend", "hf", "--tasks",
                           "spkit_arith", "--out", str(tmp_path / "out"))
    assert "config.json is corrupt or truncated" in line
    with pytest.raises(SpkitError, match="config.json is corrupt or truncated"):
        load_model(path, device="cpu")
