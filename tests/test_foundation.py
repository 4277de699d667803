"""Foundation: model loading, checkpoints + exact resume, logging, CLI errors."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spkit.errors import SpkitError
from spkit.models import load_model, resolve_model_path
from spkit.run.checkpoint import Checkpointer
from spkit.run.metrics import MetricLogger, plot_metrics, read_metrics
from spkit.seeding import derive_seed, seed_everything


def _save(model, tok, path: Path) -> Path:
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def test_load_local_dir_roundtrip(random_tiny, tmp_path):
    model, tok = random_tiny
    path = _save(model, tok, tmp_path / "m")
    loaded, ltok = load_model(path, device="cpu")
    x = torch.tensor([[1, 2, 3, 4]])
    assert torch.allclose(loaded(x).logits, model(x).logits, atol=1e-6)
    assert ltok.pad_token_id is not None
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in path.iterdir())


def test_plain_transformers_loads_without_spkit(random_tiny, tmp_path):
    path = _save(*random_tiny, tmp_path / "m")
    code = (
        "import sys; sys.modules['spkit'] = None\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(path)!r}); t = AutoTokenizer.from_pretrained({str(path)!r})\n"
        "print(type(m).__name__, len(t))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("LlamaForCausalLM")


@pytest.mark.parametrize(
    "name, fragment",
    [("does/not/exist/dir", "not found"), ("./nope", "not found"), ("justaname", "not found")],
)
def test_bad_model_names_give_one_line(name, fragment):
    with pytest.raises(SpkitError, match=fragment):
        resolve_model_path(name)


def test_corrupt_weights_give_one_line(random_tiny, tmp_path):
    path = _save(*random_tiny, tmp_path / "m")
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SpkitError, match="corrupt or incomplete"):
        load_model(path, device="cpu")
    (path / "model.safetensors").unlink()
    with pytest.raises(SpkitError, match="no weights file"):
        load_model(path, device="cpu")


def test_offline_hub_id_gives_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SpkitError, match="offline|not in the local cache|could not load"):
        load_model("nobody-spkit/definitely-not-cached", device="cpu")


def test_seed_everything_and_derive_seed():
    seed_everything(3)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert a == (random.random(), np.random.rand(), torch.rand(1).item())
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3) != derive_seed(1, 2, 4)
    assert derive_seed(12, 3) != derive_seed(1, 23)


def _train(model, opt, steps):
    losses = []
    for _ in range(steps):
        x = torch.randint(0, 50, (2, 8))  # from the (checkpointed) global torch RNG
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 6))
    return losses


def test_checkpoint_resume_is_exact(tmp_path):
    from spkit.testing import tiny_random_model

    def fresh():
        seed_everything(0)
        m, t = tiny_random_model(seed=0)
        m.train()
        return m, t, torch.optim.AdamW(m.parameters(), lr=1e-2)

    m, t, opt = fresh()
    straight = _train(m, opt, 6)

    m, t, opt = fresh()
    first = _train(m, opt, 3)
    Checkpointer(tmp_path).save(3, m, t, opt, extra_state={"baseline": {"kuhn/0": 0.25}})
    _train(m, opt, 2)  # work after the checkpoint that a crash would lose
    m2, _, opt2 = fresh()
    state = Checkpointer(tmp_path).load_latest(m2, opt2)
    assert state["step"] == 3 and state["extra"]["baseline"]["kuhn/0"] == 0.25
    assert first + _train(m2, opt2, 3) == straight


def test_checkpointer_keeps_last_k_and_ignores_partial(random_tiny, tmp_path):
    model, tok = random_tiny
    ck = Checkpointer(tmp_path, keep=2)
    for step in (1, 2, 3):
        ck.save(step, model, tok)
    (tmp_path / "checkpoints" / ".tmp_step_0000009").mkdir()
    assert [p.name for p in sorted((tmp_path / "checkpoints").glob("step_*"))] == ["step_0000002", "step_0000003"]
    assert ck.latest().name == "step_0000003"


def test_corrupt_checkpoint_is_one_line(random_tiny, tmp_path):
    model, tok = random_tiny
    path = Checkpointer(tmp_path).save(1, model, tok)
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(SpkitError, match="no checkpoint .* loads .*unreadable"):
        Checkpointer(tmp_path).load_latest(model)


def test_metric_logger_resume_truncates_and_plots(tmp_path):
    log = MetricLogger(tmp_path, tensorboard=False)
    for s in range(5):
        log.log(s, **{"train/loss": 1.0 / (s + 1)})
    log.log(5, **{"eval/nash_conv": 0.5})  # a new column appears later
    rows = read_metrics(tmp_path / "metrics.csv")
    assert len(rows) == 6 and np.isnan(rows[0]["eval/nash_conv"]) and rows[5]["eval/nash_conv"] == 0.5
    log2 = MetricLogger(tmp_path, tensorboard=False, resume_step=2)
    assert [r["step"] for r in log2.history] == [0, 1, 2]
    plot_metrics(tmp_path / "metrics.csv", ["train/loss"], tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spkit", *args], capture_output=True, text=True, timeout=120)


def test_cli_help_lists_subcommands():
    out = _cli("--help")
    assert out.returncode == 0
    for cmd in ("pretrain", "train", "play", "eval", "report"):
        assert cmd in out.stdout


def test_cli_unknown_model_is_one_line_nonzero():
    out = _cli("card", "--model", "./no/such/model")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = _cli("pretrain", "--out", str(blocker / "sub"), "--steps", "1", "--docs", "50")
    assert out.returncode == 2 and "not writable" in out.stderr and "Traceback" not in out.stderr
