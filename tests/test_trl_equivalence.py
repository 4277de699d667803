"""spkit's losses equal TRL's on identical log-probabilities.

TRL (1.x) computes its losses inside trainer methods that also run the model forward, so each
test calls the *real* TRL method, unbound, on a minimal stand-in for the trainer (`self`) and a
stand-in model whose forward returns the log-probabilities we chose. Everything after the
forward — the loss arithmetic we compare — is TRL's own code path:

- DPO sigmoid / IPO: `DPOTrainer._compute_loss` (precomputed reference log-probs).
- PPO-clip (+ k3 KL) with TRL's "grpo", "bnpo", "dr_grpo" aggregations: `GRPOTrainer._compute_loss`.
- GRPO advantages: TRL computes them inline in `_generate_and_score_completions` (which needs
  generation and reward models); we compare with the same expression built on TRL's own
  `nanstd` (Bessel-corrected group std) and its 1e-4 epsilon — i.e. the convention is TRL's.
- Nash-MD: removed from TRL 1.x; the test runs against `NashMDTrainer._compute_losses` when an
  installed TRL still ships it, or when SPKIT_TRL_NASH_MD_SOURCE names a `nash_md_trainer.py`
  from an older TRL release (only that method is taken from the file, by AST); it is skipped
  otherwise (hand values are in test_losses.py).
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from spkit.rl.advantages import grpo_advantages
from spkit.rl.losses import dpo_loss, ipo_loss, kl_k3, nash_md_loss, ppo_clip_loss

trl = pytest.importorskip("trl")


class _Accel(SimpleNamespace):
    """Single-process accelerator: gathers and reductions are the identity."""

    def __init__(self) -> None:
        super().__init__(device=torch.device("cpu"), num_processes=1, sync_gradients=True)

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def _dpo_self(loss_type: str, beta: float) -> SimpleNamespace:
    return SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=_Accel(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        use_weighting=False,
        _metrics={"train": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )


def _dpo_case(seed: int = 0, B: int = 4, T: int = 6):
    """Random per-token log-probs for a [chosen; rejected] batch with ragged completion masks."""
    g = torch.Generator().manual_seed(seed)
    tok = -torch.rand(2 * B, T - 1, generator=g) * 3  # (2B, T-1) shifted token log-probs
    lengths = torch.randint(1, T, (2 * B,), generator=g)
    completion_mask = torch.zeros(2 * B, T)
    for i, n in enumerate(lengths.tolist()):
        completion_mask[i, T - n :] = 1.0  # prompt first, completion last
    shift_mask = completion_mask[:, 1:]
    tok = tok * shift_mask  # a real forward gives 0 log-prob where labels are -100
    ref = -torch.rand(2 * B, generator=g) * 5  # (2B,) reference sequence log-probs
    return tok, completion_mask, ref


def _trl_dpo_loss(loss_type: str, beta: float, tok, completion_mask, ref) -> torch.Tensor:
    from trl.trainer.dpo_trainer import DPOTrainer

    n = tok.shape[0]
    outputs = SimpleNamespace(
        log_probs=tok,
        entropy=torch.zeros_like(tok),
        mean_logits=torch.zeros_like(tok),
        is_top1=torch.zeros_like(tok, dtype=torch.bool),
    )
    inputs = {
        "input_ids": torch.zeros(n, completion_mask.shape[1], dtype=torch.long),
        "attention_mask": torch.ones(n, completion_mask.shape[1], dtype=torch.long),
        "completion_mask": completion_mask.long(),
        "ref_chosen_logps": ref[: n // 2],
        "ref_rejected_logps": ref[n // 2 :],
    }
    return DPOTrainer._compute_loss(
        _dpo_self(loss_type, beta), lambda **kw: outputs, inputs, return_outputs=False
    )


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_sigmoid_equals_trl(beta):
    tok, cmask, ref = _dpo_case(seed=1)
    trl_loss = _trl_dpo_loss("sigmoid", beta, tok, cmask, ref)
    logps = tok.sum(1)  # (2B,)
    B = logps.shape[0] // 2
    ours = dpo_loss(logps[:B], logps[B:], ref[:B], ref[B:], beta=beta)
    assert torch.allclose(ours, trl_loss, atol=1e-6), (ours, trl_loss)


def test_ipo_equals_trl_on_length_normalised_logps():
    tok, cmask, ref = _dpo_case(seed=2)
    trl_loss = _trl_dpo_loss("ipo", 0.1, tok, cmask, ref)
    n_tok = cmask.sum(1)  # TRL divides each log-ratio by the completion length
    logps, ref_n = tok.sum(1) / n_tok, ref / n_tok
    B = logps.shape[0] // 2
    ours = ipo_loss(logps[:B], logps[B:], ref_n[:B], ref_n[B:], beta=0.1)
    assert torch.allclose(ours, trl_loss, atol=1e-5), (ours, trl_loss)


def _grpo_self(loss_type: str, logps, entropies, eps_low, eps_high, beta, max_len):
    return SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **kw: (logps, entropies, None),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1),
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        max_completion_length=max_len,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        accelerator=_Accel(),
        _metrics={"train": defaultdict(list)},
    )


@pytest.mark.parametrize(
    ("trl_type", "ours", "beta", "eps_high"),
    [
        ("grpo", "seq_mean", 0.0, 0.2),
        ("bnpo", "token_mean", 0.0, 0.28),
        ("dr_grpo", "dr_grpo", 0.0, 0.2),
        ("grpo", "seq_mean", 0.04, 0.2),
    ],
)
def test_ppo_clip_equals_trl_grpo_loss(trl_type, ours, beta, eps_high):
    from trl.trainer.grpo_trainer import GRPOTrainer

    g = torch.Generator().manual_seed(3)
    B, T = 5, 7
    logp = -torch.rand(B, T, generator=g) * 2
    old = logp + 0.4 * torch.randn(B, T, generator=g)  # ratios well outside [0.8, 1.2]
    ref = logp + 0.3 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    mask = (torch.rand(B, T, generator=g) > 0.3).float()
    mask[:, 0] = 1.0
    inputs = {
        "prompt_ids": torch.zeros(B, 2, dtype=torch.long),
        "prompt_mask": torch.ones(B, 2, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
    }
    fake = _grpo_self(trl_type, logp, torch.zeros(B, T), 0.2, eps_high, beta, T)
    trl_loss = GRPOTrainer._compute_loss(fake, None, inputs)
    # TRL adds β·k3 per token before aggregating; so do we, with the same aggregation.
    spk = ppo_clip_loss(logp, old, adv, mask, clip_eps=0.2, clip_eps_high=eps_high, aggregation=ours)
    if beta:
        from spkit.rl.losses import masked_mean

        spk = spk + beta * masked_mean(kl_k3(logp, ref), mask, dim=-1).mean()
    assert torch.allclose(spk, trl_loss, atol=1e-6), (spk, trl_loss)


def test_grpo_advantages_follow_trl_convention():
    from trl.trainer.utils import nanstd

    g = torch.Generator().manual_seed(4)
    K = 6
    rewards = torch.randint(0, 3, (4 * K,), generator=g).float()
    grouped = rewards.view(-1, K)
    mean = grouped.mean(1).repeat_interleave(K)
    std = nanstd(grouped, dim=1).repeat_interleave(K)
    trl_adv = (rewards - mean) / (std + 1e-4)
    assert torch.allclose(grpo_advantages(rewards, K), trl_adv, atol=1e-6)


def _compute_losses_from_source(path: str):
    """Only the `_compute_losses` method of an older TRL's NashMDTrainer, compiled on its own."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "_compute_losses":
            namespace = {"torch": torch}
            exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), namespace)
            return namespace["_compute_losses"]
    return None


def _find_nash_md_trainer():
    import os

    for mod in ("trl.experimental.nash_md", "trl.trainer.nash_md_trainer", "trl"):
        try:
            m = importlib.import_module(mod)
            return m.NashMDTrainer._compute_losses
        except (ImportError, AttributeError):
            continue
    src = os.environ.get("SPKIT_TRL_NASH_MD_SOURCE")
    return _compute_losses_from_source(src) if src else None


def test_nash_md_loss_equals_trl_when_available():
    compute_losses = _find_nash_md_trainer()
    if compute_losses is None:
        pytest.skip(f"trl {trl.__version__} no longer ships NashMDTrainer (hand values in test_losses)")
    g = torch.Generator().manual_seed(5)
    B, T = 4, 5
    mask = (torch.rand(B, T, generator=g) > 0.2).float()
    tok = (-torch.rand(B, T, generator=g) * mask).requires_grad_()
    ref = -torch.rand(B, T, generator=g) * mask
    p = torch.rand(B, generator=g)
    trl_loss, _, _ = compute_losses(SimpleNamespace(beta=0.1), tok, ref, p)
    ours = nash_md_loss(tok, ref, mask, p, beta=0.1)
    assert torch.allclose(ours, trl_loss, atol=1e-6)
    (g_trl,) = torch.autograd.grad(trl_loss, tok)
    (g_ours,) = torch.autograd.grad(ours, tok)
    assert torch.allclose(g_ours * mask, g_trl * mask, atol=1e-7)  # same gradient, too
