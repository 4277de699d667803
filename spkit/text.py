"""Model text made safe for a terminal: no escape sequences, no control characters.

A model (or a checkpoint someone sent you) can write ``\\x1b[2J`` (clear the screen),
``\\x1b]52;c;...\\x07`` (write your clipboard), cursor moves that hide earlier output, or
bidirectional overrides that make text read differently than it is. Everything that prints
model text to a terminal passes it through `terminal_safe` first. HTML views escape instead
(`spkit.widgets.boards.esc`).

This module imports nothing from spkit, so any layer (games, play, widgets, CLI) can use it.
"""

from __future__ import annotations

import re

# Whole escape sequences first, so their parameters ("2J", "52;c;...") go with them:
_SEQUENCES = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]                 # CSI: colours, cursor, clear screen
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])            # OSC, DCS, SOS, PM, APC ...
        [^\x07\x1b\x9c]* (?:\x07|\x1b\\|\x9c|$)           # ... up to BEL or ST (or the end)
    | \x1b [ -/]* [0-~]                                    # other ESC sequences (ESC M, ESC c)
    """,
    re.VERBOSE,
)
# Then any control character left: C0 except tab and newline, DEL, C1, and the Unicode
# bidirectional overrides/isolates and line/paragraph separators.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: object) -> str:
    """``text`` without escape sequences and control characters (newline and tab are kept)."""
    return _CONTROLS.sub("", _SEQUENCES.sub("", str(text)))
