"""Notebook boards and the training dashboard, driven from Python (clicks, state, tallies).

Deterministic tests use `Scripted`, a fake model that "writes" given texts which are parsed
exactly like a model's output; smoke tests use a real (random or embedded) tiny model.
"""

from __future__ import annotations

import threading

import pytest

from spkit.errors import SpkitError
from spkit.games import InvalidMove
from spkit.games.policies import UniformRandomPolicy
from spkit.games.prompts import parse_action
from spkit.play import ModelMove
from spkit.widgets import (
    KuhnPokerBoard,
    NegotiationBoard,
    SpyBoard,
    TicTacToeBoard,
    TrainingDashboard,
    play,
)

EVIL = "<script>alert('x')</script><b>bold</b> & <img src=x onerror=alert(1)>"


class Scripted:
    """A fake model: its outputs are the given texts, in order, parsed like a model's."""

    def __init__(self, *texts: str, gate: threading.Event | None = None) -> None:
        self.texts = list(texts)
        self.gate = gate
        self.temperature = 1.0

    def move(self, state, seed: int) -> ModelMove:
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        text = self.texts.pop(0)
        parsed = parse_action(text, state.legal_actions(), state=state)
        if isinstance(parsed, InvalidMove):
            return ModelMove(state.current_player(), None, text, None, parsed.reason)
        return ModelMove(state.current_player(), parsed, text)


def all_html(board) -> str:
    """Every HTML string the board currently shows."""
    out, stack = [], [board]
    while stack:
        w = stack.pop()
        if hasattr(w, "value") and isinstance(w.value, str):
            out.append(w.value)
        stack += list(getattr(w, "children", ()))
    return "\n".join(out)


# ---- TicTacToe -----------------------------------------------------------------------------
def test_tictactoe_click_then_model_answers() -> None:
    board = TicTacToeBoard(Scripted("I take the centre. \\boxed{5}"), sync=True)
    board.cells[0].click()
    assert board.marks() == "X...O...."
    assert board.cells[0].description == "X" and board.cells[4].description == "O"
    assert board.cells[0].disabled and board.cells[4].disabled and not board.cells[1].disabled
    assert "Your move" in board.status.value
    assert "I take the centre." in board.reasoning.value


def test_tictactoe_win_tally_new_game_and_model_first() -> None:
    board = TicTacToeBoard(Scripted("\\boxed{4}", "\\boxed{5}", "\\boxed{9}"), sync=True)
    for cell in (0, 1, 2):  # X takes the top row; the model blocks nothing
        board.cells[cell].click()
    assert board.session.over and board.session.outcome() == "win"
    assert all(c.disabled for c in board.cells)
    assert (board.session.tally.wins, board.session.tally.games) == (1, 1)
    assert "you win" in board.status.value
    assert "You 1 – 0 model" in board.tally.value
    board.seat_picker.value = 1  # model first from the next game on
    board.new_game_button.click()
    assert board.marks() == "........X"  # the model (X) opened in cell 9
    assert "Your move (you are player 1)" in board.status.value
    board.cells[0].click()
    assert board.marks()[0] == "O"
    assert board.session.tally.games == 1  # unfinished game not scored


def test_clicks_out_of_turn_do_nothing() -> None:
    board = TicTacToeBoard(Scripted("\\boxed{5}"), sync=True)
    board.cells[0].click()
    before = board.marks()
    board.human_move("5")  # occupied cell
    assert board.marks() == before
    assert "not a legal move" in board.status.value


def test_invalid_model_output_ends_game_and_is_escaped() -> None:
    board = TicTacToeBoard(Scripted(EVIL), sync=True)
    board.cells[4].click()
    s = board.session
    assert s.over and s.forfeit == 1 and s.returns() == [0.5, -1.5]
    assert s.tally.model_invalid == 1 and s.tally.wins == 1
    assert "invalid move" in board.status.value and "invalid move" in board.reasoning.value
    page = all_html(board)
    assert "<script>" not in page and "<img" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;" in board.reasoning.value


def test_illegal_boxed_html_is_escaped_in_status() -> None:
    board = TicTacToeBoard(Scripted("\\boxed{<img src=x onerror=alert(1)>}"), sync=True)
    board.cells[0].click()
    assert board.session.forfeit == 1
    assert "&lt;img" in board.status.value and "<img" not in all_html(board)


def test_threaded_model_move_shows_thinking() -> None:
    gate = threading.Event()
    board = TicTacToeBoard(Scripted("\\boxed{5}", gate=gate), sync=False)
    board.cells[0].click()
    assert board.thinking and "thinking" in board.status.value
    assert all(c.disabled for c in board.cells) and board.new_game_button.disabled
    board.cells[1].click()  # ignored while the model thinks
    gate.set()
    board.wait(10)
    assert not board.thinking and board.marks() == "X...O...."
    assert not board.new_game_button.disabled


def test_direct_mode_probability_bars_and_temperature() -> None:
    board = TicTacToeBoard(UniformRandomPolicy(), sync=True)
    board.cells[0].click()
    assert board.probs.value.count("<tr>") == 8  # one bar per legal move
    assert "0.12" in board.probs.value  # 1/8
    player = TicTacToeBoard(Scripted(), sync=True, human_first=True)
    player.temperature.value = 0.3
    assert player.opponent.temperature == pytest.approx(0.3)


# ---- Kuhn Poker ----------------------------------------------------------------------------
def test_kuhn_buttons_follow_legal_moves_and_showdown() -> None:
    board = KuhnPokerBoard(Scripted("\\boxed{check}"), sync=True, seed=3)
    st = board.session.state
    enabled = {a for a, b in board.action_buttons.items() if not b.disabled}
    assert enabled == {"check", "bet"}
    assert f"Your card: <b>{st.cards[0]}</b>" in board.table.value and "Pot: <b>2</b>" in board.table.value
    board.action_buttons["check"].click()
    assert st.bets == ["check", "check"] and board.session.over
    assert f"Model's card: <b>{st.cards[1]}</b>" in board.table.value  # showdown
    expected = 1.0 if "KQJ".index(st.cards[0]) < "KQJ".index(st.cards[1]) else -1.0
    assert board.session.tally.human_return == expected


def test_kuhn_fold_hides_model_card_and_scores() -> None:
    board = KuhnPokerBoard(Scripted("\\boxed{fold}"), sync=True, seed=0)
    board.action_buttons["bet"].click()
    assert board.session.returns() == [1.0, -1.0]
    assert "Model's card: <b>?</b>" in board.table.value and "Pot: <b>3</b>" in board.table.value
    assert board.session.tally.wins == 1


# ---- Negotiation ---------------------------------------------------------------------------
def test_negotiation_offer_builder_and_accept() -> None:
    board = NegotiationBoard(Scripted("\\boxed{accept}"), sync=True, seed=1)
    st = board.session.state
    for w, n in zip(board.take, st.pool, strict=True):
        assert w.max == n
        w.value = n  # take everything
    assert not board.offer_button.disabled and board.accept_button.disabled
    board.offer_button.click()
    assert board.session.over and st.allocation == [list(st.pool), [0, 0, 0]]
    assert board.session.returns()[0] == pytest.approx(1.0)


def test_negotiation_model_offer_then_human_accepts() -> None:
    board = NegotiationBoard(Scripted("\\boxed{1 0 0}"), sync=True, seed=1, human_first=False)
    assert not board.accept_button.disabled and board.offer_button.disabled
    assert "offers to take 1 0 0" in board.table.value
    board.accept_button.click()
    assert board.session.over and board.session.state.allocation[0] == [1, 0, 0]  # the model took 1 book


# ---- Who is the Spy ------------------------------------------------------------------------
def test_spy_clues_votes_and_escaping() -> None:
    clue = "\\boxed{<b>big</b> thing}"
    script = [clue] * 3 + [clue] * 3 + ["\\boxed{0}"] * 3
    board = SpyBoard(Scripted(*script), sync=True, seed=5)
    st = board.session.state
    board.clue.value = st.words[0]  # a clue with your own word is refused, nothing played
    board.clue_button.click()
    assert "secret word" in board.status.value and st.clues == []
    for _ in range(2):
        board.clue.value = "it is round"
        board.clue_button.click()
    assert len(st.clues) == 8 and st.phase() == "vote"
    assert "<b>big</b>" not in board.table.value and "&lt;b&gt;big&lt;/b&gt; thing" in board.table.value
    assert [v for _, v in board.vote.options] == ["1", "2", "3"] and not board.vote_button.disabled
    board.vote.value = "2"
    board.vote_button.click()
    assert board.session.over and st.votes == [2, 0, 0, 0]
    assert "The spy was player" in board.table.value
    assert board.session.tally.games == 1


def test_spy_seat_picker_has_four_seats() -> None:
    board = SpyBoard(UniformRandomPolicy(), sync=True, human_seat=2, seed=0)
    assert [v for _, v in board.seat_picker.options] == [0, 1, 2, 3]
    assert board.session.state.current_player() == 2 and len(board.session.state.clues) == 2


# ---- entry point and real models ------------------------------------------------------------
def test_play_dispatch_and_unknown_game() -> None:
    assert isinstance(play("kuhn_poker", model=UniformRandomPolicy(), sync=True), KuhnPokerBoard)
    with pytest.raises(SpkitError, match="no board for game"):
        play("chess", model=UniformRandomPolicy())


def test_random_tiny_model_direct_is_deterministic(random_tiny) -> None:
    boards = [TicTacToeBoard(random_tiny, sync=True, seed=7) for _ in range(2)]
    for b in boards:
        b.cells[4].click()
    assert boards[0].marks() == boards[1].marks() and boards[0].marks().count("O") == 1
    probs = boards[0].session.moves[0].probs
    assert set(probs) == set("12346789") and sum(probs.values()) == pytest.approx(1.0)


def test_random_tiny_model_reasoning_mode_threaded(random_tiny) -> None:
    board = KuhnPokerBoard(random_tiny, mode="reasoning", human_first=False, seed=0)
    board.wait(60)
    move = board.session.moves[0]
    assert move.text  # the sampled text is shown (random weights: almost surely invalid)
    assert board.session.human_turn or (move.invalid and board.session.over)


def test_embedded_tiny_model_answers(tiny) -> None:
    board = TicTacToeBoard(tiny, sync=True, temperature=0.0)
    board.cells[4].click()
    assert board.marks().count("O") == 1 and not board.session.over


# ---- dashboard -----------------------------------------------------------------------------
def test_dashboard_live_updates_as_callback() -> None:
    dash = TrainingDashboard()
    assert dash.plot.value == b"" and "waiting" in dash.latest.value
    for step in range(3):
        dash(step, {"train/loss": 1.0 / (step + 1), "train/reward": step, "note": "text",
                    "custom/x": 5.0})
    assert dash.plotted_keys() == ["train/loss", "train/reward"]  # the defaults that exist
    assert dash.plot.value[:4] == b"\x89PNG" and "step 2" in dash.header.value
    assert "0.3333" in dash.latest.value and "custom/x" in dash.latest.value
    chosen = TrainingDashboard(keys=["custom/x", "missing"])
    chosen.update(1, {"custom/x": 1.0})
    assert chosen.plotted_keys() == ["custom/x"]


def test_dashboard_from_run_dir(tmp_path) -> None:
    from spkit.run.metrics import MetricLogger

    log = MetricLogger(tmp_path, tensorboard=False)
    log.log(1, **{"train/loss": 2.0})
    log.log(2, **{"train/loss": 1.0, "eval/kuhn_poker/nashconv_last": 0.4})
    dash = TrainingDashboard.from_run_dir(tmp_path)
    assert dash.plotted_keys() == ["train/loss", "eval/kuhn_poker/nashconv_last"]
    assert len(dash.history) == 2 and dash.plot.value[:4] == b"\x89PNG"
    with pytest.raises(SpkitError, match="no metrics.csv"):
        TrainingDashboard.from_run_dir(tmp_path / "nope")


@pytest.mark.slow
def test_dashboard_follows_a_real_spiral_run(tiny, tmp_path) -> None:
    from spkit.algos import spiral

    cfg = spiral.Config(games=("kuhn_poker",), steps=1, episodes=2, eval_every=0, eval_games=2,
                        out=str(tmp_path), plot=False, device="cpu", seed=0)
    dash = TrainingDashboard()
    history = spiral.train(cfg, callback=dash)
    assert [r["step"] for r in dash.history] == [r["step"] for r in history.rows] == [0, 1]
    assert "eval/kuhn_poker/nashconv_last" in dash.plotted_keys()
    assert dash.plot.value[:4] == b"\x89PNG"
    again = TrainingDashboard.from_run_dir(tmp_path)
    assert again.plotted_keys() == dash.plotted_keys()
