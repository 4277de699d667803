"""NFT: the loss by hand, its two special cases (on-policy = Dr. GRPO, λ = 0 = RFT), and the
trainer (determinism, exact resume, the command line) on a tiny random model."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from spkit.algos import grpo, nft, rft
from spkit.cli import main
from spkit.generation import Sampler
from spkit.rl import verifiable as V
from spkit.rl.losses import clamp_pass_grad, nft_loss, ppo_clip_loss
from spkit.testing import check_seed_and_resume

# ---- the loss, by hand


def test_clamp_pass_grad_clamps_the_value_and_keeps_the_gradient():
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    y = clamp_pass_grad(x, min=1.0)
    assert y.tolist() == [1.0, 2.0]
    (3 * y).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]  # torch.clamp would give 0 at 0.5


def test_nft_loss_hand_worked_values():
    # one token per row, one question with correct rate r = 0.25 (w = 1 − r = 0.75)
    # row 0 right, R = 2:     ℓ⁺ = −log 2
    # row 1 wrong, R = 0.5:   (1 − 0.25·0.5)/0.75 = 7/6 ≥ ε = 1,  ℓ⁻ = −log(7/6)
    logp = torch.log(torch.tensor([[2.0], [0.5]]))
    old = torch.zeros(2, 1)
    correct, rate, mask = torch.tensor([1.0, 0.0]), torch.tensor([0.25, 0.25]), torch.ones(2, 1)
    got = nft_loss(logp, old, correct, rate, mask, aggregation="token_mean")
    assert got.item() == pytest.approx(0.75 * (-math.log(2) - math.log(7 / 6)) / 2, abs=1e-6)
    # λ = 0.5 halves the wrong row's term; no wrong-rate weighting drops the 0.75
    got = nft_loss(logp, old, correct, rate, mask, neg_weight=0.5, weight_by_wrong_rate=False,
                   aggregation="token_mean")
    assert got.item() == pytest.approx((-math.log(2) - 0.5 * math.log(7 / 6)) / 2, abs=1e-6)


def test_nft_negative_clamp_passes_the_gradient():
    # wrong row with R = 2 and r = 0.25: (1 − 0.5)/0.75 = 2/3 < ε = 1, so the value is −log 1 = 0,
    # but d/dlogp of −log(x) at the clamped value 1 is −dx/dlogp = r·R/(1 − r) = 2/3; × w = 0.75: 0.5
    logp = torch.log(torch.tensor([[2.0]])).requires_grad_(True)
    loss = nft_loss(logp, torch.zeros(1, 1), torch.tensor([0.0]), torch.tensor([0.25]), torch.ones(1, 1),
                    aggregation="dr_grpo", max_len=1)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert logp.grad.item() == pytest.approx(0.5, abs=1e-6)


def test_nft_log_ratio_is_capped_at_10_and_the_rate_clamped():
    logp = torch.tensor([[12.0]], requires_grad=True)
    loss = nft_loss(logp, torch.zeros(1, 1), torch.tensor([1.0]), torch.tensor([0.5]), torch.ones(1, 1),
                    weight_by_wrong_rate=False, aggregation="dr_grpo", max_len=1)
    loss.backward()
    assert loss.item() == pytest.approx(-10.0) and logp.grad.item() == 0.0  # min(·, 10): no gradient above
    # r = 0 is clamped to 0.02: the weight of a right answer is 1 − 0.02
    loss = nft_loss(torch.log(torch.tensor([[2.0]])), torch.zeros(1, 1), torch.tensor([1.0]), torch.tensor([0.0]),
                    torch.ones(1, 1), aggregation="dr_grpo", max_len=1)
    assert loss.item() == pytest.approx(-0.98 * math.log(2), abs=1e-6)


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean", "dr_grpo"])
def test_on_policy_nft_gradient_is_dr_grpos(aggregation):
    """At π_θ = π_old, w·(c·ℓ⁺ + (1 − c)·ℓ⁻) has the gradient of the policy gradient with
    advantage c − r (the paper's equivalence with GRPO without std scaling)."""
    g = torch.Generator().manual_seed(0)
    B, T, k = 8, 5, 4
    base = -torch.rand(B, T, generator=g) * 3
    mask = (torch.rand(B, T, generator=g) > 0.2).float()
    mask[:, 0] = 1.0
    correct = torch.tensor([1.0, 0, 0, 1, 0, 1, 1, 1])
    rate = nft.correct_rates(correct, k)  # 0.5 and 0.75
    a = base.clone().requires_grad_(True)
    nft_loss(a, base, correct, rate, mask, aggregation=aggregation, max_len=T + 2).backward()
    b = base.clone().requires_grad_(True)
    ppo_clip_loss(b, base, correct - rate, mask, aggregation=aggregation, max_len=T + 2).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)
    assert a.grad.abs().sum() > 0


def test_correct_rates_and_trained_rows():
    r = torch.tensor([1.0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1])  # groups of 3: mixed, all right, all wrong, mixed
    assert nft.correct_rates(r, 3).tolist() == pytest.approx([1 / 3] * 3 + [1.0] * 3 + [0.0] * 3 + [2 / 3] * 3)
    assert nft.trained_rows(r, 3, neg_weight=1.0) == [0, 1, 2, 9, 10, 11]  # uniform groups dropped
    assert nft.trained_rows(r, 3, neg_weight=0.0) == [0, 9, 11]  # λ = 0: the right answers only


# ---- NFT with λ = 0 is RFT


def _batch(model, tok, rewards: list[float], k: int) -> grpo.Batch:
    probs = V.train_problems(len(rewards) // k, 0)
    outs = V.sample_groups(Sampler(model, tok), probs, k, V.rollout_params(6), seed=3)
    assert len({o.text for o in outs}) == len(outs)  # distinct texts: RFT's dedup has nothing to drop
    r = torch.tensor(rewards)
    return grpo.Batch(outs, r, len(outs), r, probs)


def test_nft_without_negatives_is_rft(random_tiny):
    """λ = 0, no 1 − r weighting, token_mean: two Adam steps of NFT on a batch of mixed groups
    leave the same weights as RFT's SFT step on the correct completions of that batch."""
    model, tok = random_tiny
    batch = _batch(model, tok, [1.0, 0, 0, 0, 1, 1], k=3)
    pos = [i for i, r in enumerate(batch.rewards.tolist()) if r > 0]
    m_rft, m_nft, m_full = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    cfg = rft.Config(epochs=2, dedup=False)
    V.sft_update(m_rft, torch.optim.Adam(m_rft.parameters(), lr=1e-2), [batch.completions[i].prompt_ids for i in pos],
                 [batch.completions[i].token_ids for i in pos], cfg.epochs, cfg.micro_batch, cfg.max_grad_norm)
    cfg = nft.Config(k=3, neg_weight=0.0, weight_by_wrong_rate=False, aggregation="token_mean", ppo_epochs=2,
                     max_new_tokens=6)  # one micro-batch each: Adam would amplify float-rounding noise
    nft.update(m_nft, torch.optim.Adam(m_nft.parameters(), lr=1e-2), batch, cfg)
    pairs = list(zip(m_rft.parameters(), m_nft.parameters(), strict=True))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in pairs)
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), m_nft.parameters(), strict=True))
    # the negatives change the update (so the equality above is not vacuous)
    nft.update(m_full, torch.optim.Adam(m_full.parameters(), lr=1e-2), batch, dataclasses.replace(cfg, neg_weight=1.0))
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(m_rft.parameters(), m_full.parameters(),
                                                                    strict=True))


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("aggregation", ["dr_grpo", "token_mean", "seq_mean"])
def test_nft_update_does_not_depend_on_the_micro_batch_size(random_tiny, aggregation):
    model, tok = random_tiny
    batch = _batch(model, tok, [1.0, 0, 0, 0, 1, 1], k=3)
    grads = []
    for mb in (1, 64):
        cfg = nft.Config(k=3, micro_batch=mb, aggregation=aggregation, max_grad_norm=0, max_new_tokens=6)
        nft.update(model, torch.optim.SGD(model.parameters(), lr=0.0), batch, cfg)
        grads.append(_grads(model))
    assert grads[0] and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))


# ---- the trainer


def _cfg(tiny_dir, **kw) -> nft.Config:
    return nft.Config(model=str(tiny_dir), problems=3, k=3, max_new_tokens=6, eval_limit=1, eval_every=1,
                      plot=False, tensorboard=False, lr=1e-3, micro_batch=4, ppo_epochs=2, **kw)



def test_same_seed_same_numbers_and_resume_equals_straight_run(tiny_dir, parity_reward, tmp_path):
    cfg = _cfg(tiny_dir)
    a = check_seed_and_resume(nft.train, cfg, tmp_path)
    assert any(r.get("losses/grad_norm", 0) > 0 for r in a.rows)  # the update ran
    assert any(r.get("train/negatives", 0) > 0 for r in a.rows)
    assert a.last("train/samples") % 9 == 0 and a.last("train/samples") >= 18


def test_spkit_train_nft_runs_from_the_command_line(tiny_dir, parity_reward, tmp_path, capsys):
    out = tmp_path / "nft"
    rc = main(["train", "nft", "--model", str(tiny_dir), "--steps", "1", "--problems", "2", "--k", "2",
               "--max-new-tokens", "4", "--eval-limit", "1", "--neg-weight", "0.5", "--no-tensorboard",
               "--no-plot", "--out", str(out)])
    assert rc == 0
    assert (out / "metrics.csv").exists() and (out / "final" / "model.safetensors").exists()
    assert "held-out strict accuracy" in capsys.readouterr().out
    assert main(["train", "nft", "--neg-weight", "-1", "--out", str(tmp_path / "bad")]) == 2  # one clear line
