"""Adapter: any TextArena environment id becomes an spkit `Game` (for play, rollouts and training).

``load_game("textarena:TicTacToe-v0")`` wraps TextArena's ``TicTacToe-v0``. TextArena
environments resolve chance internally (from the reset seed) and describe their own rules in
their messages, so there are no chance nodes and no exact solvers here; use `play_match` /
`spkit.rl.selfplay.play_episodes`. Four rules make every env behave like an spkit game:

1. **Messages, not wrappers.** The env is built from its registry entry *without* TextArena's
   observation wrappers (only its action wrappers, e.g. the one that adds missing brackets),
   so the ``-train`` / ``-raw`` variants of an id are the same game here. The adapter keeps
   each player's message stream itself and renders it as ``[GAME] ...`` / ``[Player 1] ...``
   lines, as TextArena's ``LLMObservationWrapper`` does.
2. **Legal moves** are read from the messages a player received *since the last move* (never a
   stale list from an earlier turn, nor one printed for the opponent before it moved): the last line that lists moves after a colon, in any of the
   formats TextArena's envs print —
   ``Available Moves: '[0]', '[4]'`` (TicTacToe), ``Available Moves: [a2 b4], [a2 c3]``,
   ``Your available actions are: '[check]', '[bet]'`` (KuhnPoker),
   ``Valid moves: '[0, 1]', '[1, 0]'`` (Othello), ``Valid moves: '[up]'/'[down]' (or w/s)``,
   ``Available actions: '[roll]' or '[hold]'``, ``Your options: [draw], [take]``,
   ``Your remaining hand: '[A]' '[2]'`` — whatever separates the bracketed moves. The bracket
   contents are the spkit actions (``"4"``, ``"check"``) and the env receives ``"[4]"``. A list
   with a placeholder (``'[bet X]'``, ``'[Raise N]'``, ``[<number>]``) is a template, not an
   enumeration, so such a turn is free text, as is a turn whose messages list no moves:
   ``legal_actions() == [FREE_TEXT]`` and the boxed text is sent verbatim (the env judges it).
3. **One invalid-move rule** for every game, SPIRAL's (the one spkit's own games and
   `play_match` use): the first invalid move ends the game, −1.5 to the offender and +0.5 to
   every other player — whether spkit's parser rejects the answer (no box, not a listed move)
   or the env rejects a free-text move. TextArena's own rule (one retry, then −1/+1) would make
   the penalty depend on whether a game lists its moves; here it never applies. An
   env-rejected move sets ``state.invalid_by`` (counted by rollouts and `play_match`).
4. **Context policy.** TextArena's full observation grows every move (TicTacToe: past
   spkit-tiny's 1,024 positions by move 6). ``history="recent"`` (the default) shows the game's
   opening prompt (its rules) plus the messages since the player's last move (the opponent's
   move, the board, the move list), like TextArena's ``-train`` board-game wrappers;
   ``history="full"`` shows everything. Either way an observation longer than
   ``max_observation_chars`` keeps its head and its tail with a marker for the cut middle. A
   prompt that still does not fit the model ends the game as a counted overflow in the rollout
   (`spkit.rl.selfplay`), never a crash.

``returns()`` are TextArena's rewards once the env reports the game done. The number of players
is detected by trying ``reset`` with 1..4 players (cached per id) or given explicitly. An env
that cannot be built here (it needs network access, an NLTK corpus, or a newer Python) raises a
one-line `SpkitError` naming the reason.

textarena is an optional dependency: without it, loading raises a one-line `SpkitError`.
"""

from __future__ import annotations

import copy
import functools
import importlib
import re

from spkit.errors import SpkitError
from spkit.games.base import TERMINAL, Game, InvalidMove, State
from spkit.games.policies import INVALID_BONUS, INVALID_PENALTY
from spkit.games.prompts import FREE_TEXT

#: A line that lists moves: a header phrase, anything up to a colon, then the list.
_MOVES_LINE = re.compile(
    r"^.*?\b(?:(?:available|valid|legal|possible)\s+(?:moves|actions)|your\s+options"
    r"|remaining\s+(?:hand|money\s+cards))\b[^:\n]*:(.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_BRACKET = re.compile(r"\[([^\[\]\n]*)\]")
#: A word that stands for a value to fill in: the list is a template, not the legal moves.
_PLACEHOLDER = re.compile(r"^(?:[XYN]|<[^>]*>)$")
HISTORIES = ("recent", "full")
CUT_MARKER = "\n[... earlier messages omitted ...]\n"


def _ta():
    try:
        import textarena
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SpkitError(
            "TextArena games need the textarena package: pip install 'spkit[textarena]'"
        ) from exc
    return textarena


def _is_template(move: str) -> bool:
    return any(_PLACEHOLDER.match(w) for w in move.split()[1:]) or bool(_PLACEHOLDER.match(move))


def listed_moves(text: str) -> list[str] | None:
    """Bracket contents of the last line of `text` that lists moves (see the module docstring),
    unique and in order; None if no line lists moves, the last one lists none, or it is a
    template (``[bet X]``)."""
    lines = _MOVES_LINE.findall(text)
    if not lines:
        return None
    moves = list(dict.fromkeys(m.strip() for m in _BRACKET.findall(lines[-1]) if m.strip()))
    if not moves or any(_is_template(m) for m in moves):
        return None
    return moves


def _describe(exc: BaseException) -> str:
    """One line saying why an env cannot be built (the usual causes named)."""
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if "OPENROUTER" in str(exc).upper() or "API key" in str(exc):
        return "it calls a hosted model over the network (" + text[:120] + ")"
    if isinstance(exc, LookupError) and "nltk" in str(exc).lower():
        return "it needs an NLTK corpus download (nltk.download('words'))"
    if isinstance(exc, SyntaxError):
        return f"its source needs a newer Python ({text[:120]})"
    return text[:200]


def _build(env_id: str):
    """The env of `env_id` with its registry kwargs and only its *action* wrappers."""
    ta = _ta()
    from textarena.envs.registration import ENV_REGISTRY

    spec = ENV_REGISTRY[env_id]
    try:
        entry = spec.entry_point
        if isinstance(entry, str):
            module, name = entry.split(":")
            entry = getattr(importlib.import_module(module), name)
        env = entry(**spec.kwargs)
    except Exception as exc:  # network keys, missing corpora, syntax of newer Pythons
        raise SpkitError(f"TextArena env {env_id!r} cannot be built here: {_describe(exc)}") from exc
    for wrapper in spec.default_wrappers or []:
        if issubclass(wrapper, ta.ActionWrapper):
            env = wrapper(env)
    return env


def _inner(env):
    while hasattr(env, "env"):
        env = env.env
    return env


@functools.lru_cache(maxsize=64)
def detect_num_players(env_id: str) -> int:
    """Smallest player count in 1..4 that the environment's reset accepts."""
    last: Exception | None = None
    for n in (1, 2, 3, 4):
        env = _build(env_id)
        try:
            env.reset(num_players=n, seed=0)
        except Exception as exc:  # TextArena asserts on an unsupported player count
            last = exc
            continue
        return n
    why = f" (last error: {_describe(last)})" if last is not None and not isinstance(last, AssertionError) else ""
    raise SpkitError(f"TextArena env {env_id!r} accepts none of 1-4 players{why}")


class TextArenaState(State):
    """A live TextArena environment behind the spkit State API."""

    def __init__(self, game: TextArenaGame, seed: int) -> None:
        super().__init__(game)
        self.env = game.make_env()
        self.env.reset(num_players=game.num_players, seed=seed)
        self.messages: dict[int, list[tuple[int, str, bool]]] = {p: [] for p in range(game.num_players)}
        self.recent: dict[int, int] = {p: 0 for p in range(game.num_players)}  # first unseen msg
        self.head: dict[int, int] = {}  # number of opening prompt messages per player
        self.done = False
        self.rewards: dict[int, float] = {}
        self.info: dict = {}
        self._pull()

    def _pull(self) -> None:
        """Fetch the messages the player to move received since it last moved."""
        player, msgs = self.env.get_observation()
        self.player = int(player)
        box = self.messages[self.player]
        self.recent[self.player] = len(box)
        if isinstance(msgs, str):  # an observation wrapper slipped in: keep its text
            msgs = [(-1, msgs, None)]
        kinds = _ta().ObservationType
        box += [(int(m[0]), str(m[1]), m[2] == kinds.PLAYER_ACTION) for m in msgs]
        if self.player not in self.head:
            self.head[self.player] = max(1, sum(1 for m in msgs if m[2] == kinds.PROMPT)) if msgs else 0

    # ---- whose turn ----------------------------------------------------------------------
    def current_player(self) -> int:
        return TERMINAL if self.done else self.player

    # ---- moves -------------------------------------------------------------------------
    def legal_actions(self) -> list[str]:
        if self.done:
            return []
        fresh = self.messages[self.player][self.recent[self.player]:]
        moved = [i for i, (_, _, is_move) in enumerate(fresh) if is_move]
        fresh = fresh[moved[-1] + 1:] if moved else fresh  # a list printed before a move is stale
        return listed_moves("\n".join(m for _, m, _ in fresh)) or [FREE_TEXT]

    def free_text_problem(self, text: str):
        """Free-text moves only need to be non-empty here; the env judges the rest."""
        return None if text.strip() else InvalidMove("empty move")

    def apply_action(self, action: str) -> None:
        if self.legal_actions() == [FREE_TEXT] and isinstance(action, str) and action.strip():
            player = self.current_player()
            self._apply(action.strip())
            self._history.append((player, action.strip()))
            return
        super().apply_action(action)

    def _apply(self, action: str) -> None:
        listed = self.legal_actions() != [FREE_TEXT]
        state = _inner(self.env).state
        errors = getattr(state, "error_count", 0)
        done, _ = self.env.step(f"[{action}]" if listed else action)
        rejected = getattr(state, "error_count", 0) > errors or (
            bool(done) and bool((getattr(state, "game_info", None) or {}).get(self.player, {}).get("invalid_move")))
        if rejected:  # rule 3: the env's verdict ends the game under spkit's penalty
            self.done, self.invalid_by = True, self.player
            self.rewards = {p: INVALID_PENALTY if p == self.player else INVALID_BONUS
                            for p in range(self.game.num_players)}
        elif done:
            self.done = True
            rewards, self.info = self.env.close()
            self.rewards = {int(k): float(v) for k, v in (rewards or {}).items()}
        else:
            self._pull()

    # ---- end of game -------------------------------------------------------------------
    def returns(self) -> list[float]:
        return [self.rewards.get(p, 0.0) for p in range(self.game.num_players)]

    # ---- what players see --------------------------------------------------------------
    def observation_text(self, player: int) -> str:
        """The player's messages under the game's context policy (module docstring, rule 4)."""
        box = self.messages.get(player, [])
        head = self.head.get(player, 0)
        shown = box if self.game.history == "full" else box[:head] + box[max(head, self.recent[player]):]
        text = "".join(f"\n[{self._sender(s)}] {m}" for s, m, _ in shown).strip()
        return _cut_middle(text, self.game.max_observation_chars)

    def _sender(self, sender: int) -> str:
        if sender < 0:
            return "GAME"
        roles = getattr(_inner(self.env).state, "role_mapping", None) or {}
        return str(roles.get(sender, f"Player {sender}"))

    def clone(self) -> TextArenaState:
        # Copy the env (its own state and RNG) but share the immutable game object.
        return copy.deepcopy(self, memo={id(self.game): self.game})


def _cut_middle(text: str, limit: int | None) -> str:
    """`text` if it fits `limit` characters, else its first third and last two thirds around a
    marker: the opening rules and the latest board / move list both survive."""
    if limit is None or len(text) <= limit:
        return text
    room = max(limit - len(CUT_MARKER), 2)
    head = room // 3
    return text[:head] + CUT_MARKER + text[len(text) - (room - head):]


class TextArenaGame(Game):
    """A TextArena env id as an spkit game (see the module docstring).

    history: "recent" (rules + messages since the player's last move) or "full".
    max_observation_chars: cut longer observations in the middle (None = never).
    """

    def __init__(self, env_id: str, num_players: int | None = None, history: str = "recent",
                 max_observation_chars: int | None = 2400) -> None:
        _ta()
        from textarena.envs.registration import ENV_REGISTRY

        if env_id not in ENV_REGISTRY:
            close = [e for e in ENV_REGISTRY if env_id.lower().split("-")[0] in e.lower()][:8]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise SpkitError(f"unknown TextArena env {env_id!r}{hint}")
        if history not in HISTORIES:
            raise SpkitError(f"history must be one of {HISTORIES}, got {history!r}")
        self.env_id, self.history = env_id, history
        self.max_observation_chars = max_observation_chars
        self.name = f"textarena:{env_id}"
        self.num_players = num_players or detect_num_players(env_id)
        self.rules = f"A TextArena game ({env_id}); the game describes its rules below."

    def make_env(self):
        return _build(self.env_id)

    def new_initial_state(self, seed: int | None = None) -> TextArenaState:
        # TextArena resolves chance itself from the reset seed; no seed means seed 0.
        return TextArenaState(self, 0 if seed is None else seed)

    def __repr__(self) -> str:
        return f"TextArenaGame({self.env_id!r})"
