"""Terminal play: session rules, input validation, and the CLI driven through stdin."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console

from spkit.games import InvalidMove, load_game
from spkit.games.policies import UniformRandomPolicy
from spkit.play import GameSession, ModelMove, PolicyPlayer, match_human_input, run_terminal


class Fixed:
    """An opponent that plays a fixed list of actions (None = an invalid output)."""

    def __init__(self, *actions: str | None) -> None:
        self.actions = list(actions)

    def move(self, state, seed: int) -> ModelMove:
        a = self.actions.pop(0)
        return ModelMove(state.current_player(), a, "", None, None if a else "garbage")


def console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=100, color_system=None), buf


# ---- input matching ------------------------------------------------------------------------
def test_match_human_input_prefix_case_and_errors() -> None:
    kuhn = load_game("kuhn_poker").new_initial_state(seed=0)
    assert match_human_input(kuhn, " BET ") == "bet"
    assert match_human_input(kuhn, "c") == "check"  # unique prefix among check/bet
    bad = match_human_input(kuhn, "raise")
    assert isinstance(bad, InvalidMove) and "legal moves: check, bet" in bad.reason
    assert isinstance(match_human_input(kuhn, "   "), InvalidMove)
    neg = load_game("negotiation").new_initial_state(seed=1)
    assert match_human_input(neg, "0  1 0") == "0 1 0"
    assert isinstance(match_human_input(neg, "9 9 9"), InvalidMove)


def test_model_forfeit_follows_spiral_rule() -> None:
    s = GameSession(load_game("tictactoe"), Fixed(None), human_seat=0)
    assert s.human_move("1") is None
    move = s.model_move()
    assert move.invalid and s.over and s.returns() == [0.5, -1.5]
    assert (s.tally.wins, s.tally.model_invalid, s.tally.human_return) == (1, 1, 0.5)
    s.new_game()
    assert not s.over and s.tally.games == 1


def test_opponent_claiming_an_illegal_action_is_invalid() -> None:
    s = GameSession(load_game("tictactoe"), Fixed("1"), human_seat=0)
    s.human_move("1")
    assert s.model_move().invalid_reason.startswith("not a legal move")
    assert s.forfeit == 1


# ---- the interactive loop ------------------------------------------------------------------
def test_terminal_reprompts_on_bad_input_and_exits_on_eof() -> None:
    s = GameSession(load_game("tictactoe"), Fixed("5", "9", "7"), human_seat=1)  # model X first
    con, out = console()
    games = run_terminal(s, io.StringIO("hello\n5\n1\n2\n"), con)
    text = out.getvalue()
    assert "Invalid input: 'hello' is not a legal move" in text
    assert "Invalid input: '5' is not a legal move" in text  # taken by the model
    assert s.state.board == list("OO..X.X.X") and games == 0  # EOF after O at 1 and 2


def test_terminal_full_game_tally_and_play_again() -> None:
    s = GameSession(load_game("kuhn_poker"), Fixed("fold", "call"), human_seat=0, seed=0)
    con, out = console()
    games = run_terminal(s, io.StringIO("bet\ny\nb\nn\n"), con)
    text = out.getvalue()
    assert games == 2 and "Model plays: fold" in text and "Model plays: call" in text
    assert text.count("Game over") == 2 and "Play again?" in text
    assert "Bye" not in text  # printed by main(), not the loop


def test_terminal_quit_and_max_games() -> None:
    s = GameSession(load_game("tictactoe"), PolicyPlayer(UniformRandomPolicy()), human_seat=1)
    con, out = console()
    assert run_terminal(s, io.StringIO("q\n"), con) == 0
    assert "Model plays:" in out.getvalue()  # the model (X) opened before the prompt
    s2 = GameSession(load_game("kuhn_poker"), Fixed("fold"), human_seat=0)
    assert run_terminal(s2, io.StringIO("bet\n"), console()[0], max_games=1) == 1


def test_model_text_is_printed_literally() -> None:
    class Markup:
        def move(self, state, seed):
            return ModelMove(state.current_player(), None, "[bold red]boom[/] <script>", None, "x")

    s = GameSession(load_game("tictactoe"), Markup(), human_seat=0)
    con, out = console()
    run_terminal(s, io.StringIO("1\nn\n"), con)
    assert "[bold red]boom[/] <script>" in out.getvalue()  # rich markup not interpreted


# ---- the real CLI through stdin ------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from spkit.testing import tiny_random_model

    model, tok = tiny_random_model()
    path = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _spkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "spkit", "play", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_cli_play_through_stdin(model_dir: str) -> None:
    proc = subprocess.run(
        _spkit("tictactoe", "--model", model_dir, "--seed", "3"),
        input="nonsense\n5\n", capture_output=True, text=True, timeout=120, env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Invalid input: 'nonsense'" in proc.stdout and "Model plays:" in proc.stdout
    assert "Bye." in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_bad_model_path_is_one_line(tmp_path) -> None:
    proc = subprocess.run(
        _spkit("kuhn_poker", "--model", str(tmp_path / "missing")),
        input="", capture_output=True, text=True, timeout=120, env=_env(),
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("spkit play: error:")


@pytest.mark.slow
def test_cli_ctrl_c_exits_cleanly(model_dir: str) -> None:
    proc = subprocess.Popen(
        _spkit("negotiation", "--model", model_dir), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        seen = ""
        deadline = time.time() + 90
        while "Your move" not in seen and time.time() < deadline:
            seen += proc.stdout.read(1)
        assert "Your move" in seen
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Interrupted." in out and "Traceback" not in err


def test_play_transcript_scripted_and_invalid() -> None:
    from spkit.play import play_transcript

    game = load_game("kuhn_poker")
    text, returns = play_transcript(game, [Fixed("bet"), Fixed("fold")], seed=0, names=["a", "b"])
    assert "a: bet" in text and "b: fold" in text and returns == [1.0, -1.0]
    text, returns = play_transcript(game, [Fixed(None), Fixed()], seed=0)
    assert "player 0: INVALID" in text and returns == [-1.5, 0.5]
    random_pair = [PolicyPlayer(UniformRandomPolicy())] * 2
    assert play_transcript(game, random_pair, seed=4) == play_transcript(game, random_pair, seed=4)
