"""Test-wide settings: everything runs offline, deterministically, on the CPU."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SPKIT_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models are dominated by per-op overhead; a second OpenMP thread only adds contention
# (10-100x slowdowns were measured on a loaded 2-core machine). Subprocesses keep their default.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TINY_DIR = ROOT / "assets" / "models" / "spkit-tiny"


@pytest.fixture(scope="session")
def tiny():
    """The embedded spkit-tiny (model, tokenizer), loaded once per test session."""
    from spkit.models import load_model

    if not (TINY_DIR / "config.json").exists():
        pytest.skip("assets/models/spkit-tiny not built yet")
    return load_model("spkit-tiny", device="cpu")


@pytest.fixture()
def random_tiny():
    """A fresh random-init tiny Llama + tokenizer (mechanics tests)."""
    from spkit.testing import tiny_random_model

    return tiny_random_model()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A random tiny Llama saved as a save_pretrained dir (what `--model PATH` loads)."""
    from spkit.testing import tiny_random_model

    path = tmp_path_factory.mktemp("tinyrand")
    model, tok = tiny_random_model()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture()
def parity_reward(monkeypatch):
    """A random tiny model never answers an arithmetic problem right: reward a completion by
    the parity of its text length instead (through `spkit.rl.verifiable.score`, after its layout
    checks), so trainers on the verifiable task get mixed groups and their update paths run."""
    from spkit.rl import verifiable as V

    real = V.score

    def score(completions, problems, k, mode="strict"):
        real(completions, problems, k, mode)
        texts = [c if isinstance(c, str) else c.text for c in completions]
        return torch.tensor([float(len(t) % 2 == 0) for t in texts])

    monkeypatch.setattr(V, "score", score)


@pytest.fixture(scope="session")
def tiny_1024(tmp_path_factory) -> str:
    """A random tiny Llama with 1024 positions saved as a directory: the game prompts of
    Who-is-the-Spy votes and negotiation (~500 tokens) need more than `tiny_dir`'s."""
    from spkit.testing import tiny_random_model

    path = tmp_path_factory.mktemp("tiny1024")
    model, tok = tiny_random_model()
    model.config.max_position_embeddings = 1024
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
