"""token_logprobs / score_continuations against a hand-written computation."""

from __future__ import annotations

import pytest
import torch

from spkit.errors import SpkitError
from spkit.logprobs import score_continuations, token_logprobs
from spkit.testing import tiny_random_model


@pytest.fixture(scope="module")
def tiny():
    return tiny_random_model(seed=2)


def _manual(model, prompt, completion):
    """One unbatched forward, log-softmax, pick each completion token."""
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return torch.stack([lp[len(prompt) - 1 + t, c] for t, c in enumerate(completion)])


def test_token_logprobs_equals_manual(tiny):
    model, _ = tiny
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    comps = [[20, 21], [22, 23, 24, 25], [26]]
    with torch.no_grad():
        got = token_logprobs(model, prompts, comps)
        chunked = token_logprobs(model, prompts, comps, batch_size=2)
        for g, c, p, q in zip(got, chunked, prompts, comps, strict=True):
            ref = _manual(model, p, q)
            assert g.shape == (len(q),)
            assert torch.allclose(g, ref, atol=1e-5)
            assert torch.allclose(c, ref, atol=1e-5)


def test_token_logprobs_is_differentiable(tiny):
    model, _ = tiny
    out = token_logprobs(model, [[1, 2], [3]], [[4, 5], [6, 7, 8]])
    loss = -(out[0].sum() + out[1].sum())
    loss.backward()
    grad = model.lm_head.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.zero_grad()


def test_token_logprobs_edge_cases(tiny):
    model, _ = tiny
    with torch.no_grad():
        out = token_logprobs(model, [[1, 2], [3]], [[], [4]])
    assert out[0].shape == (0,) and out[1].shape == (1,)
    assert token_logprobs(model, [], []) == []
    with pytest.raises(SpkitError):
        token_logprobs(model, [[]], [[1]])
    with pytest.raises(SpkitError):
        token_logprobs(model, [[1]], [])
    with pytest.raises(SpkitError, match="vocabulary"):
        token_logprobs(model, [[1]], [[10**6]])


def test_score_continuations_sums_separately_tokenized(tiny):
    model, tok = tiny
    prompt = "Your card: K. Your move: \\boxed{"
    conts = ["bet}", "check}"]
    with torch.no_grad():
        scores = score_continuations(model, tok, prompt, conts)
        p = tok(prompt)["input_ids"]
        for s, c in zip(scores, conts, strict=True):
            ref = _manual(model, p, tok(c, add_special_tokens=False)["input_ids"]).sum()
            assert torch.allclose(s, ref, atol=1e-5)
    assert scores.shape == (2,) and (scores < 0).all()
    # normalised over the legal actions, they form a distribution
    assert torch.allclose(torch.softmax(scores, 0).sum(), torch.tensor(1.0))



def test_repeated_prompt_logprobs_equal_plain_forward_values_and_gradients(random_tiny):
    """GRPO's groups: each distinct prompt runs once; numbers and gradients as the plain forward
    (prompts of different lengths, repeated out of order, an empty completion, a unique prompt)."""
    from spkit.logprobs import repeated_prompt_logprobs

    model, _ = random_tiny
    P = [[5, 6, 7, 8], [5, 6, 7, 8], [9, 10], [9, 10], [9, 10], [11, 12, 13, 14, 15, 16], [5, 6, 7, 8]]
    C = [[20, 21, 22], [23], [24, 25], [], [26, 27, 28, 29], [30], [31, 32]]

    def run(fn):
        model.zero_grad()
        lps = fn(model, P, C)
        sum((x * (i + 1)).sum() for i, x in enumerate(lps)).backward()  # rows weighted differently
        return lps, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (a, ga), (b, gb) = run(token_logprobs), run(repeated_prompt_logprobs)
    assert [len(x) for x in b] == [len(c) for c in C]
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b, strict=True))
    assert torch.allclose(ga, gb, atol=1e-5)
