"""Notebook boards: play Kuhn Poker, TicTacToe, Negotiation or Who-is-the-Spy against a model.

    from spkit.widgets import play
    play("tictactoe", model="spkit-tiny")            # or a checkpoint dir, or (model, tok)

Every board is an `ipywidgets.VBox` built on `GameBoard`, which holds what all games share:
the controls (who starts, temperature, new game), the "thinking…" state, the model panel
(its action probabilities as a bar chart in direct mode, its reasoning in a collapsible
section), the score tally, and the rules of play, which live in `spkit.play.GameSession`
(the same session the terminal front end uses). A subclass only draws its board and turns
clicks into action strings.

Model moves run in a background thread (`sync=False`, the default) so the notebook stays
responsive; the buttons are disabled and the status reads "thinking…" until the move is
applied. `sync=True` runs them inline (tests). Invalid model output is shown as such and,
following SPIRAL, ends the game as a loss for the model (−1.5 for it, +0.5 for you).

Everything a model writes is HTML-escaped before it reaches the page.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as W

from spkit.errors import SpkitError
from spkit.games import load_game
from spkit.play import GameSession, ModelMove, as_player

BAR_PX = 160  # width of a probability of 1 in the bar chart


def esc(text: object) -> str:
    """HTML-escape anything shown on the page (model text is untrusted)."""
    return html.escape(str(text), quote=True)


def probs_html(probs: dict[str, float] | None, chosen: str | None = None) -> str:
    """A small horizontal bar chart of action probabilities (pure HTML, labels escaped)."""
    if not probs:
        return ""
    rows = []
    for action, p in probs.items():
        colour = "#e07b39" if action == chosen else "#4c78a8"
        width = max(1, round(BAR_PX * max(0.0, min(1.0, p))))
        rows.append(
            f"<tr><td style='padding-right:6px;font-family:monospace'>{esc(action)}</td>"
            f"<td><div style='background:{colour};height:12px;width:{width}px'></div></td>"
            f"<td style='padding-left:6px'>{p:.2f}</td></tr>"
        )
    return "<table class='spkit-probs'>" + "".join(rows) + "</table>"


def move_html(move: ModelMove, who: str) -> str:
    """One model move for the reasoning view: its text, then what it played (or why invalid)."""
    body = f"<pre style='white-space:pre-wrap;margin:2px 0'>{esc(move.text)}</pre>" if move.text else ""
    if move.invalid:
        verdict = f"<b style='color:#c0392b'>invalid move: {esc(move.invalid_reason)}</b>"
    else:
        verdict = f"played <b>{esc(move.action)}</b>"
    return f"<div><b>{esc(who)}</b>: {verdict}{body}</div>"


class GameBoard(W.VBox):
    """Shared machinery of every board (subclasses implement `_build_board`/`_render_board`)."""

    game_name = ""
    title = ""

    def __init__(
        self,
        model: Any = "spkit-tiny",
        tokenizer: Any = None,
        *,
        mode: str = "direct",
        temperature: float = 1.0,
        human_first: bool = True,
        human_seat: int | None = None,
        seed: int = 0,
        sync: bool = False,
    ) -> None:
        """`model`: "spkit-tiny", a checkpoint directory, a loaded model (+ `tokenizer`), a
        (model, tokenizer) pair, a policy, or any object with ``move(state, seed)``."""
        super().__init__()
        self.game = load_game(self.game_name)
        self.opponent = as_player(model, tokenizer, mode=mode, temperature=temperature)
        self.mode, self.sync = mode, sync
        seat = human_seat if human_seat is not None else (0 if human_first else 1)
        self.session = GameSession(self.game, self.opponent, human_seat=seat, seed=seed)
        self.thinking = False
        self.error: str | None = None  # last refused human input or model failure
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._build(temperature, seat)
        self._start_model()

    # ---- layout ----------------------------------------------------------------------------
    def _build(self, temperature: float, seat: int) -> None:
        self.seat_picker = W.ToggleButtons(options=self._seat_options(), value=seat)
        self.temperature = W.FloatSlider(
            value=temperature, min=0.0, max=2.0, step=0.1, description="temperature",
            continuous_update=False, disabled=not hasattr(self.opponent, "temperature"),
            style={"description_width": "initial"},
        )
        self.temperature.observe(self._on_temperature, names="value")
        self.new_game_button = W.Button(description="New game", icon="refresh")
        self.new_game_button.on_click(lambda _: self.new_game())
        self.status = W.HTML()
        self.probs = W.HTML()
        self.reasoning = W.HTML()
        self.reasoning_box = W.Accordion(children=[self.reasoning], selected_index=None)
        self.reasoning_box.set_title(0, "Model's reasoning and moves")
        self.tally = W.HTML()
        self.board = self._build_board()
        header = W.HTML(f"<h3 style='margin:4px 0'>{esc(self.title)} — you vs the model "
                        f"({esc(self.mode)} mode)</h3>")
        controls = W.HBox([self.seat_picker, self.temperature, self.new_game_button])
        self.children = [header, controls, self.status, self.board,
                         self.probs, self.reasoning_box, self.tally]

    def _seat_options(self) -> list[tuple[str, int]]:
        return [("You first", 0), ("Model first", 1)]

    def _on_temperature(self, change: dict) -> None:
        if hasattr(self.opponent, "temperature"):
            self.opponent.temperature = float(change["new"])

    # ---- subclass hooks --------------------------------------------------------------------
    def _build_board(self) -> W.Widget:
        raise NotImplementedError

    def _render_board(self, can_move: bool) -> None:
        raise NotImplementedError

    # ---- actions ---------------------------------------------------------------------------
    def human_move(self, text: str) -> None:
        """Play the human's move (what a button click does), then let the model answer."""
        with self._lock:
            if self.thinking:
                return
            self.error = self.session.human_move(text)
        self._start_model()

    def new_game(self) -> None:
        """Start a new game with the seat chosen in the picker (ignored while thinking)."""
        with self._lock:
            if self.thinking:
                return
            self.error = None
            self.session.new_game(human_seat=self.seat_picker.value)
        self._start_model()

    def wait(self, timeout: float | None = 60.0) -> None:
        """Block until a background model move has finished (tests, scripted demos)."""
        t = self._thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                raise SpkitError(f"the model did not move within {timeout} s")

    def _start_model(self) -> None:
        with self._lock:
            if self.session.over or self.session.human_turn:
                self._render()
                return
            self.thinking = True
        self._render()
        if self.sync:
            self._run_model()
        else:
            self._thread = threading.Thread(target=self._run_model, daemon=True)
            self._thread.start()

    def _run_model(self) -> None:
        try:
            self.session.play_until_human()
        except Exception as e:  # shown on the board; a notebook thread must not die silently
            self.error = f"model failed: {type(e).__name__}: {e}"
        finally:
            with self._lock:
                self.thinking = False
            self._render()

    # ---- rendering -------------------------------------------------------------------------
    def _render(self) -> None:
        s = self.session
        can_move = s.human_turn and not self.thinking
        self._render_board(can_move)
        self.status.value = self._status_html()
        last = s.moves[-1] if s.moves else None
        self.probs.value = (
            "<div style='font-size:90%'>Model's move probabilities:</div>"
            + probs_html(last.probs, last.action) if last is not None and last.probs else ""
        )
        self.reasoning.value = "".join(
            move_html(m, self._who(m.player) + f", move {i + 1}") for i, m in enumerate(s.moves)
        ) or "<i>no model moves yet</i>"
        self.tally.value = f"<b>Score</b>: {esc(s.tally.text())}"
        busy = self.thinking
        self.new_game_button.disabled = busy
        self.seat_picker.disabled = busy

    def _who(self, player: int) -> str:
        return "Model" if self.game.num_players == 2 else f"Model (player {player})"

    def _status_html(self) -> str:
        s = self.session
        if self.thinking:
            return "<span class='spkit-thinking'><i>Model is thinking…</i></span>"
        parts = []
        if self.error:
            parts.append(f"<span style='color:#c0392b'>{esc(self.error)}</span>")
        if s.over:
            r = s.returns()[s.human_seat]
            how = ""
            if s.forfeit is not None:
                bad = s.moves[-1]
                how = f"{esc(self._who(s.forfeit))} made an invalid move ({esc(bad.invalid_reason)}). "
            parts.append(f"<b>{how}Game over: {esc(s.outcome_text())} ({r:+.2f}).</b> "
                         "Press <i>New game</i> to play again.")
        elif s.human_turn:
            parts.append(f"Your move (you are player {s.human_seat}).")
        return " ".join(parts)


# ---- TicTacToe -----------------------------------------------------------------------------
class TicTacToeBoard(GameBoard):
    """A clickable 3×3 grid; you are X when you start, O otherwise."""

    game_name, title = "tictactoe", "TicTacToe"

    def _build_board(self) -> W.Widget:
        self.cells = []
        for i in range(9):
            b = W.Button(description="", tooltip=f"cell {i + 1}",
                         layout=W.Layout(width="56px", height="56px"))
            b.add_class("spkit-ttt-cell")
            b.style.font_weight, b.style.font_size = "bold", "22px"
            b.on_click(lambda _, a=str(i + 1): self.human_move(a))
            self.cells.append(b)
        return W.GridBox(self.cells, layout=W.Layout(grid_template_columns="repeat(3, 60px)"))

    def _render_board(self, can_move: bool) -> None:
        board = self.session.state.board
        for b, mark in zip(self.cells, board, strict=True):
            b.description = "" if mark == "." else mark
            b.style.text_color = {"X": "#1f4e99", "O": "#b03a2e"}.get(mark, "black")
            b.disabled = not can_move or mark != "."

    def marks(self) -> str:
        """The board as 9 characters ("X", "O", "."), row by row."""
        return "".join(self.session.state.board)


# ---- Kuhn Poker ----------------------------------------------------------------------------
class KuhnPokerBoard(GameBoard):
    """Your card, the pot, the betting so far; check/bet/call/fold buttons; the showdown."""

    game_name, title = "kuhn_poker", "Kuhn Poker"
    ACTIONS = ("check", "bet", "call", "fold")

    def _build_board(self) -> W.Widget:
        self.table = W.HTML()
        self.action_buttons = {a: W.Button(description=a) for a in self.ACTIONS}
        for a, b in self.action_buttons.items():
            b.on_click(lambda _, a=a: self.human_move(a))
        return W.VBox([self.table, W.HBox(list(self.action_buttons.values()))])

    def _render_board(self, can_move: bool) -> None:
        s = self.session
        st, me = s.state, s.human_seat
        pot = 2 + sum(b in ("bet", "call") for b in st.bets)
        showdown = st.is_terminal() and st.bets[-1] != "fold"
        theirs = st.cards[1 - me] if showdown else "?"
        history = ", ".join(
            f"{'you' if i % 2 == me else 'model'} {esc(a)}" for i, a in enumerate(st.bets)
        ) or "none"
        self.table.value = (
            f"<div style='font-size:120%'>Your card: <b>{esc(st.cards[me])}</b> &nbsp; "
            f"Model's card: <b>{esc(theirs)}</b> &nbsp; Pot: <b>{pot}</b></div>"
            f"<div>Betting: {history}</div>"
        )
        legal = st.legal_actions() if can_move else []
        for a, b in self.action_buttons.items():
            b.disabled = a not in legal


# ---- Negotiation ---------------------------------------------------------------------------
class NegotiationBoard(GameBoard):
    """The pool and your private values, the offers so far, an offer builder, accept/deny."""

    game_name, title = "negotiation", "Negotiation"

    def _build_board(self) -> W.Widget:
        from spkit.games.negotiation import ITEMS

        self.table = W.HTML()
        self.take = [W.BoundedIntText(value=0, min=0, max=3, description=f"take {n}",
                                      layout=W.Layout(width="150px")) for n in ITEMS]
        self.offer_button = W.Button(description="Offer")
        self.offer_button.on_click(lambda _: self.human_move(self.offer_text()))
        self.accept_button = W.Button(description="accept", button_style="success")
        self.deny_button = W.Button(description="deny", button_style="danger")
        self.accept_button.on_click(lambda _: self.human_move("accept"))
        self.deny_button.on_click(lambda _: self.human_move("deny"))
        return W.VBox([self.table, W.HBox([*self.take, self.offer_button]),
                       W.HBox([self.accept_button, self.deny_button])])

    def offer_text(self) -> str:
        """The builder's offer as the game's action string ("a b c": what you take)."""
        return " ".join(str(w.value) for w in self.take)

    def _render_board(self, can_move: bool) -> None:
        from spkit.games.negotiation import ITEMS

        st, me = self.session.state, self.session.human_seat
        rows = "".join(
            f"<tr><td>{name}</td><td>{n}</td><td>{v}</td></tr>"
            for name, n, v in zip(ITEMS, st.pool, st.values[me], strict=True)
        )
        lines = [f"Player {p} ({'you' if p == me else 'model'}) offers to take {' '.join(map(str, t))}"
                 + (f" → {st.answers[i]}" if i < len(st.answers) else "")
                 for i, (p, t) in enumerate(st.offers)]
        self.table.value = (
            "<table><tr><th>item</th><th>count</th><th>your value each</th></tr>" + rows
            + "</table><div>" + "<br>".join(esc(x) for x in lines) + "</div>"
        )
        for w, n in zip(self.take, st.pool, strict=True):
            w.max = n
        legal = st.legal_actions() if can_move else []
        responding = legal == ["accept", "deny"]
        self.accept_button.disabled = self.deny_button.disabled = not responding
        self.offer_button.disabled = not legal or responding
        for w in self.take:
            w.disabled = not legal or responding


# ---- Who is the Spy ------------------------------------------------------------------------
class SpyBoard(GameBoard):
    """Four players, the model plays the other three: give clues, then vote for the spy."""

    game_name, title = "spy", "Who is the Spy"

    def _seat_options(self) -> list[tuple[str, int]]:
        return [(f"Seat {p}", p) for p in range(self.game.num_players)]

    def _build_board(self) -> W.Widget:
        self.table = W.HTML()
        self.clue = W.Text(placeholder="a short clue (1-5 words)")
        self.clue_button = W.Button(description="Give clue")
        self.clue_button.on_click(lambda _: self.human_move(self.clue.value))
        self.vote = W.Dropdown(options=[], description="vote for")
        self.vote_button = W.Button(description="Vote")
        self.vote_button.on_click(lambda _: self.human_move(str(self.vote.value)))
        return W.VBox([self.table, W.HBox([self.clue, self.clue_button]),
                       W.HBox([self.vote, self.vote_button])])

    def _render_board(self, can_move: bool) -> None:
        st, me = self.session.state, self.session.human_seat
        clues = "".join(
            f"<li>{'You' if p == me else f'Player {p}'}: {esc(c)}</li>" for p, c in st.clues
        ) or "<li>none yet</li>"
        end = ""
        if st.is_terminal():
            votes = ", ".join(f"{p}→{v}" for p, v in enumerate(st.votes))
            end = (f"<div>Votes: {esc(votes)}. The spy was player {st.spy} "
                   f"(word: {esc(st.words[st.spy])}).</div>")
        self.table.value = (
            f"<div>You are player {me}. Your word: <b>{esc(st.words[me])}</b></div>"
            f"<div>Clues:</div><ul>{clues}</ul>{end}"
        )
        phase = st.phase()
        options = [(f"Player {a}", a) for a in st.legal_actions()] if phase == "vote" else []
        if [o[1] for o in self.vote.options] != [o[1] for o in options]:
            self.vote.options = options
        self.clue.disabled = self.clue_button.disabled = not (can_move and phase == "clue")
        self.vote.disabled = self.vote_button.disabled = not (can_move and phase == "vote")
        if can_move and phase == "clue" and self.error is None:
            self.clue.value = ""


BOARDS: dict[str, type[GameBoard]] = {
    b.game_name: b for b in (TicTacToeBoard, KuhnPokerBoard, NegotiationBoard, SpyBoard)
}


def play(game: str, model: Any = "spkit-tiny", **kwargs: Any) -> GameBoard:
    """The board for `game` ("tictactoe", "kuhn_poker", "negotiation", "spy") vs `model`."""
    key = str(game).strip().lower()
    if key not in BOARDS:
        raise SpkitError(f"no board for game {game!r}; boards: {', '.join(BOARDS)}")
    return BOARDS[key](model, **kwargs)
