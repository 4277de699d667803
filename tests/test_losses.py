"""Known-answer tests for spkit.rl.losses and spkit.rl.advantages (values worked by hand)."""

from __future__ import annotations

import math

import pytest
import torch

from spkit.errors import SpkitError
from spkit.rl.advantages import RoleBaseline, grpo_advantages, rloo_advantages
from spkit.rl.losses import (
    dpo_loss,
    entropy_from_logits,
    inpo_loss,
    ipo_loss,
    kl_k3,
    masked_mean,
    nash_md_loss,
    ppo_clip_loss,
    sequence_logps,
    sppo_loss,
)

T = torch.tensor


def test_sequence_logps_ignores_padding():
    tok = T([[-1.0, -2.0, -9.0], [-0.5, -7.0, -7.0]])
    mask = T([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.allclose(sequence_logps(tok, mask), T([-3.0, -0.5]))
    assert torch.allclose(masked_mean(tok, mask), T([-1.5, -0.5]))


def test_dpo_loss_by_hand():
    # h = (−1 − (−2)) − (−3 − (−2.5)) = 1 + 0.5 = 1.5 ; loss = −log σ(0.1·1.5) = log(1 + e^{−0.15})
    loss = dpo_loss(T([-1.0]), T([-3.0]), T([-2.0]), T([-2.5]), beta=0.1)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.15)), abs=1e-7)


def test_ipo_loss_by_hand():
    # β = 0.5 -> target margin 1/(2β) = 1 ; h = 1.5 -> (0.5)² = 0.25
    loss = ipo_loss(T([-1.0]), T([-3.0]), T([-2.0]), T([-2.5]), beta=0.5)
    assert loss.item() == pytest.approx(0.25, abs=1e-7)


def test_sppo_loss_by_hand_and_pairwise_form():
    # log-ratio 0.2, p = 0.8, η = 1 -> (0.2 − 0.3)² = 0.01
    assert sppo_loss(T([-1.0]), T([-1.2]), T([0.8]), eta=1.0).item() == pytest.approx(0.01, abs=1e-7)
    # pairwise: ½[(ℓ_w − η(p_w−½))² + (ℓ_l − η(p_l−½))²] with ℓ_w=0.5, ℓ_l=−0.1, p_w=.9, p_l=.2, η=2
    want = 0.5 * ((0.5 - 2 * 0.4) ** 2 + (-0.1 - 2 * (-0.3)) ** 2)
    got = sppo_loss(T([0.5, -0.1]), T([0.0, 0.0]), T([0.9, 0.2]), eta=2.0)
    assert got.item() == pytest.approx(want, abs=1e-7)
    # weights turn the mean into an expectation
    w = sppo_loss(T([0.5, -0.1]), T([0.0, 0.0]), T([0.9, 0.2]), eta=2.0, weights=T([1.0, 0.0]))
    assert w.item() == pytest.approx((0.5 - 0.8) ** 2, abs=1e-7)


def test_inpo_loss_by_hand():
    # log π ratio 1, ref ratio 0, prev ratio 0, η=1, τ=.5 -> (1 − 0.5)² = 0.25
    loss = inpo_loss(T([0.0]), T([-1.0]), T([0.0]), T([0.0]), T([-0.5]), T([-0.5]), eta=1.0, tau=0.5)
    assert loss.item() == pytest.approx(0.25, abs=1e-7)
    # the reference and previous iterate enter with weights ητ and 1−ητ: ref ratio 1, prev ratio 2
    loss = inpo_loss(T([0.0]), T([-1.0]), T([1.0]), T([0.0]), T([2.0]), T([0.0]), eta=1.0, tau=0.25)
    h = 1.0 - 0.25 * 1.0 - 0.75 * 2.0
    assert loss.item() == pytest.approx((h - 0.5) ** 2, abs=1e-7)


def test_nash_md_loss_value_and_gradient():
    tok = T([[-1.0, -2.0]], requires_grad=True)
    ref = T([[-1.5, -1.0]])
    mask = torch.ones(1, 2)
    # score = (0.75 − 0.5)·(−3) = −0.75 ; kl = 0.5·(−1) + (−1)·(−2) = 1.5 ; loss = 0.1·1.5 + 0.75
    loss = nash_md_loss(tok, ref, mask, T([0.75]), beta=0.1)
    assert loss.item() == pytest.approx(0.9, abs=1e-7)
    loss.backward()
    # d/d log π_t = β·sg(log π_t − log π_ref_t) − (p − ½)
    assert torch.allclose(tok.grad, T([[0.1 * 0.5 - 0.25, 0.1 * -1.0 - 0.25]]))
    # padding positions contribute nothing
    padded = nash_md_loss(T([[-1.0, -2.0, -5.0]]), T([[-1.5, -1.0, 0.0]]), T([[1.0, 1.0, 0.0]]), T([0.75]))
    assert padded.item() == pytest.approx(0.9, abs=1e-6)


def test_ppo_clip_loss_by_hand():
    logp = T([[math.log(1.5), math.log(0.5)]])
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    # A=+1: min(1.5, 1.2) = 1.2 ; ratio .5: min(.5, .8) = .5 -> mean of (−1.2, −0.5)
    assert ppo_clip_loss(logp, old, T([1.0]), mask).item() == pytest.approx(-0.85, abs=1e-6)
    # A=−1: −min(−1.5, −1.2) = 1.5 ; −min(−.5, −.8) = .8
    assert ppo_clip_loss(logp, old, T([-1.0]), mask).item() == pytest.approx(1.15, abs=1e-6)
    # asymmetric clip (DAPO): ε_high = 0.28 -> 1.28 for the first token
    got = ppo_clip_loss(logp, old, T([1.0]), mask, clip_eps_high=0.28)
    assert got.item() == pytest.approx(-(1.28 + 0.5) / 2, abs=1e-6)


def test_ppo_clip_aggregations_differ_as_documented():
    logp = torch.zeros(2, 3)
    mask = T([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    adv = T([1.0, 2.0])  # ratio 1 -> per-token loss = −A
    # token_mean: (−1·3 − 2·1)/4 ; seq_mean: (−1 + −2)/2 ; dr_grpo: (−5)/(2·3)
    assert ppo_clip_loss(logp, logp, adv, mask, aggregation="token_mean").item() == pytest.approx(-1.25)
    assert ppo_clip_loss(logp, logp, adv, mask, aggregation="seq_mean").item() == pytest.approx(-1.5)
    assert ppo_clip_loss(logp, logp, adv, mask, aggregation="dr_grpo").item() == pytest.approx(-5 / 6)
    with pytest.raises(SpkitError):
        ppo_clip_loss(logp, logp, adv, mask, aggregation="bogus")


def test_ppo_on_policy_gradient_is_reinforce():
    logp = T([[-0.7, -1.2]], requires_grad=True)
    ppo_clip_loss(logp, logp.detach(), T([2.0]), torch.ones(1, 2), aggregation="dr_grpo").backward()
    assert torch.allclose(logp.grad, T([[-1.0, -1.0]]))  # −A/(B·T) per token


def test_kl_k3_and_entropy():
    assert kl_k3(T([0.0]), T([math.log(2.0)])).item() == pytest.approx(2 - math.log(2) - 1, abs=1e-7)
    assert kl_k3(T([-1.3]), T([-1.3])).item() == 0.0
    assert entropy_from_logits(torch.zeros(4)).item() == pytest.approx(math.log(4), abs=1e-6)


def test_grpo_advantages_by_hand():
    adv = grpo_advantages(T([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0]), group_size=4)
    s = math.sqrt(1 / 3)  # unbiased std of (1,0,0,1)
    want = [0.5 / (s + 1e-4), -0.5 / (s + 1e-4), -0.5 / (s + 1e-4), 0.5 / (s + 1e-4), 0, 0, 0, 0]
    assert torch.allclose(adv, T(want), atol=1e-6)
    assert torch.allclose(grpo_advantages(T([3.0, 1.0]), 2, scale=False), T([1.0, -1.0]))
    with pytest.raises(SpkitError):
        grpo_advantages(T([1.0, 2.0, 3.0]), group_size=2)


def test_rloo_advantages_by_hand():
    assert torch.allclose(rloo_advantages(T([1.0, 0.0, 0.0]), 3), T([1.0, -0.5, -0.5]))
    with pytest.raises(SpkitError):
        rloo_advantages(T([1.0]), 1)


def test_role_baseline_reads_before_update():
    rb = RoleBaseline(alpha=0.95)
    assert rb.update(("kuhn_poker", 0), 1.0) == pytest.approx(1.0)  # b was 0
    assert rb.value(("kuhn_poker", 0)) == pytest.approx(0.05)
    assert rb.update(("kuhn_poker", 0), 1.0) == pytest.approx(0.95)
    assert rb.value(("kuhn_poker", 0)) == pytest.approx(0.95 * 0.05 + 0.05)
    assert rb.update(("kuhn_poker", 1), -1.0) == pytest.approx(-1.0)  # roles are independent


def test_role_baseline_resume_equals_straight_run():
    keys = [("g", i % 2) for i in range(20)]
    rewards = [math.sin(i) for i in range(20)]
    straight = RoleBaseline().advantages(keys, rewards)
    first = RoleBaseline()
    part = first.advantages(keys[:7], rewards[:7])
    resumed = RoleBaseline()
    resumed.load_state_dict(first.state_dict())
    part += resumed.advantages(keys[7:], rewards[7:])
    assert part == straight
    with pytest.raises(SpkitError):
        resumed.load_state_dict({"alpha": 0.9})
