"""RFT and GRPO (spkit.algos.rft / grpo) and their shared plumbing (spkit.rl.verifiable).

Known answers (advantages, the dynamic-sampling filter, the rejection filter, the prompt-masked
SFT loss, TRL's GRPO loss), the evaluation equal to `spkit eval --tasks spkit_arith`, the
held-out split never reaching training, and determinism / exact resume of both trainers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from spkit.algos import grpo, rft
from spkit.rl import verifiable as V
from spkit.rl.advantages import grpo_advantages
from spkit.rl.losses import grpo_loss, sft_loss
from spkit.sampling import Completion
from spkit.tasks import arithmetic
from spkit.testing import check_seed_and_resume

ROOT = Path(__file__).resolve().parents[1]


# ---- known answers


def test_group_advantages_hand_worked():
    r = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1])  # group 1: one of four right; group 2: all right
    # mean 0.25, Bessel std = sqrt((0.75² + 3·0.25²)/3) = 0.5
    want = torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])
    assert torch.allclose(grpo_advantages(r, 4, scale=False), want)  # Dr. GRPO
    assert torch.allclose(grpo_advantages(r, 4), want / (0.5 + 1e-4))  # GRPO


def test_dynamic_sampling_filter_drops_uniform_groups():
    r = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0])
    assert V.mixed_groups(r, 4).tolist() == [True, False, False, True]
    assert V.mixed_groups(torch.tensor([1.0, 1.0]), 1).tolist() == [False, False]


def test_rejection_keeps_correct_rows_and_dedups_within_a_problem():
    texts = ["a", "a", "b", "c", "a", "a"]  # two problems × 3 samples
    r = torch.tensor([1.0, 1, 0, 1, 1, 1])
    assert rft.keep_correct(r, texts, 3, dedup=True) == [0, 3, 4]  # "a" kept once per problem
    assert rft.keep_correct(r, texts, 3, dedup=False) == [0, 1, 3, 4, 5]


def test_score_uses_strict_extraction():
    probs = [{"question": "q", "answer": "1 + 2 = 3\n#### 3"}]
    got = V.score(["1 + 2 = 3\n#### 3", "the answer is 3", "#### 3.", "#### 4 #### 3"], probs, 4)
    assert got.tolist() == [1.0, 0.0, 1.0, 0.0]  # no '####': wrong; the first '####' counts


def test_sft_loss_masks_the_prompt_like_hf_labels(random_tiny):
    model, tok = random_tiny
    P = [tok("Question: 3 + 4?\nAnswer:")["input_ids"], tok("Question: 9?\nAnswer:")["input_ids"]]
    C = [tok(" 3 + 4 = 7\n#### 7", add_special_tokens=False)["input_ids"],
         tok(" #### 9", add_special_tokens=False)["input_ids"]]
    logp, mask = V.padded_logprobs(model, P, C)
    ours = sft_loss(logp, mask)
    L = max(len(p) + len(c) for p, c in zip(P, C, strict=True))
    ids = torch.zeros(2, L, dtype=torch.long)
    att = torch.zeros(2, L, dtype=torch.long)
    labels = torch.full((2, L), -100)
    for i, (p, c) in enumerate(zip(P, C, strict=True)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        att[i, : len(p) + len(c)] = 1
        labels[i, len(p): len(p) + len(c)] = torch.tensor(c)  # prompt and padding: -100
    hf = model(input_ids=ids, attention_mask=att, labels=labels).loss
    assert torch.allclose(ours, hf, atol=1e-5), (ours, hf)
    assert mask.sum().item() == sum(len(c) for c in C)  # completion tokens only


def _grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("aggregation", ["seq_mean", "token_mean", "dr_grpo"])
def test_updates_do_not_depend_on_the_micro_batch_size(random_tiny, aggregation):
    """Micro-batch weights make the accumulated gradient the whole batch's gradient exactly."""
    from spkit.generation import Sampler
    from spkit.testing import tiny_random_model

    model, tok = random_tiny
    ref, _ = tiny_random_model(seed=1)
    probs = V.train_problems(2, 0)
    outs = V.sample_groups(Sampler(model, tok), probs, 3, V.rollout_params(5), seed=1)
    batch = grpo.Batch(outs, torch.tensor([1.0, 0, 0, 1, 1, 0]), 6, torch.zeros(6))
    grads = []
    for mb in (2, 64):
        cfg = grpo.Config(k=3, micro_batch=mb, aggregation=aggregation, max_grad_norm=0, kl_coef=0.1,
                          max_new_tokens=5)
        grpo.update(model, torch.optim.SGD(model.parameters(), lr=0.0), batch, cfg, ref)
        grads.append(_grads(model))
    assert grads[0] and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))
    if aggregation == "token_mean":  # RFT's SFT step (always a token mean)
        grads = []
        for mb in (1, 64):
            V.sft_update(model, torch.optim.SGD(model.parameters(), lr=0.0), [o.prompt_ids for o in outs],
                         [o.token_ids for o in outs], micro_batch=mb, max_grad_norm=0)
            grads.append(_grads(model))
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))


class _Accel(SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(device=torch.device("cpu"), num_processes=1, sync_gradients=True)

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


@pytest.mark.parametrize(("trl_type", "ours", "eps_high"), [
    ("grpo", "seq_mean", 0.2), ("bnpo", "token_mean", 0.2), ("dapo", "token_mean", 0.28),
    ("dr_grpo", "dr_grpo", 0.2)])
def test_grpo_loss_with_kl_equals_trl(trl_type, ours, eps_high):
    pytest.importorskip("trl")
    from trl.trainer.grpo_trainer import GRPOTrainer

    g = torch.Generator().manual_seed(5)
    B, T, beta = 6, 8, 0.04
    logp = -torch.rand(B, T, generator=g) * 2
    old = logp + 0.4 * torch.randn(B, T, generator=g)
    ref = logp + 0.3 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    mask = (torch.rand(B, T, generator=g) > 0.3).float()
    mask[:, 0] = 1.0
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **kw: (logp, torch.zeros(B, T), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
        beta=beta, loss_type=trl_type, epsilon_low=0.2, epsilon_high=eps_high,
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1),
        use_vllm=False, vllm_importance_sampling_correction=False, model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1, max_completion_length=T + 3, _entropy_bonus_enabled=False,
        aux_loss_enabled=False, accelerator=_Accel(), _metrics={"train": __import__("collections").defaultdict(list)})
    inputs = {"prompt_ids": torch.zeros(B, 2, dtype=torch.long), "prompt_mask": torch.ones(B, 2, dtype=torch.long),
              "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    trl_loss = GRPOTrainer._compute_loss(fake, None, inputs)
    spk = grpo_loss(logp, old, adv, mask, 0.2, eps_high, ours, T + 3, ref, beta)
    assert torch.allclose(spk, trl_loss, atol=1e-6), (spk, trl_loss)


# ---- the evaluation is spkit_arith


def _yaml(path: Path) -> dict:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(), Loader=Loader)


def test_eval_settings_and_problems_are_spkit_ariths():
    from spkit.evals import data

    tmpl = _yaml(ROOT / "evals" / "_spkit_arith_template")
    gen = tmpl["generation_kwargs"]
    assert tuple(gen["until"]) == V.EVAL_STOP and gen["max_gen_toks"] == V.EVAL_MAX_NEW_TOKENS
    assert gen["do_sample"] is False and tmpl["num_fewshot"] == 0
    assert tmpl["doc_to_text"] == "Question: {{question}}\nAnswer:" == arithmetic.prompt("{{question}}")
    assert tmpl["filter_list"][0]["filter"][0]["regex_pattern"] == arithmetic.STRICT_RE.pattern
    group = _yaml(ROOT / "evals" / "spkit_arith.yaml")
    assert group["task"] == [f"spkit_arith_{s}" for s in V.EVAL_LEVELS]
    assert data.EVAL_SEED == V.EVAL_SEED
    want = [r for s in V.EVAL_LEVELS for r in data.spkit_records("spkit_arith", V.EVAL_PER_LEVEL, steps=s)]
    assert V.heldout_problems() == want
    assert V.heldout_problems(3) == [r for s in V.EVAL_LEVELS for r in want[100 * (s - 1): 100 * (s - 1) + 3]]


def test_heldout_accuracy_equals_spkit_eval(tmp_path):
    """The training curve's number and `spkit eval --tasks spkit_arith --limit 4` agree, sample
    by sample, on the embedded spkit-tiny (a model that gets some answers right)."""
    tiny = ROOT / "assets" / "models" / "spkit-tiny"
    if not (tiny / "config.json").exists():
        pytest.skip("assets/models/spkit-tiny not built")
    from spkit.evals.run import run
    from spkit.models import load_model

    res = run(model=str(tiny), tasks="spkit_arith", limit=4, seed=0)
    model, tok = load_model(str(tiny))
    problems, outs = V.heldout_completions(model, tok, limit=4)
    lm_eval_texts = {s["doc"]["question"]: s["resps"][0][0] for rows in res["samples"].values() for s in rows}
    assert len(lm_eval_texts) == len(problems) == 16
    assert [lm_eval_texts[p["question"]] for p in problems] == [c.text for c in outs]
    ours = V.evaluate_heldout(model, tok, limit=4)
    group = res["results"]["spkit_arith"]
    assert ours["eval/strict"] == pytest.approx(group["exact_match,strict-match"], abs=1e-9)
    assert ours["eval/flexible"] == pytest.approx(group["exact_match,flexible-extract"], abs=1e-9)
    assert 0 < ours["eval/strict"] < 1  # a non-trivial check: some right, some wrong


# ---- the held-out split never enters training


def test_train_problems_never_hold_out_problems():
    held = {p["question"] for p in V.heldout_problems()}
    for seed in range(5):
        qs = [p["question"] for p in V.train_problems(200, seed)]
        assert all(arithmetic.split_of(q) == "train" for q in qs)
        assert not held & set(qs)


def test_dev_split_is_part_of_train_and_never_trained_on():
    dev = V.dev_problems(50)
    assert len(dev) == 200 and [p["steps"] for p in dev[:: 50]] == [1, 2, 3, 4]
    qs = {p["question"] for p in dev}
    assert all(arithmetic.split_of(q) == "train" and arithmetic.in_dev(q) for q in qs)
    trained = {p["question"] for seed in range(5) for p in V.train_problems(400, seed)}
    assert not qs & trained and not any(arithmetic.in_dev(q) for q in trained)
    share = sum(map(arithmetic.in_dev, (p["question"] for p in arithmetic.generate(2000, 7, split="train"))))
    assert 120 < share < 280  # ~10 % of train questions, a hash bucket independent of the test one


def _prompt_question(prompt: str) -> str:
    return prompt.removeprefix("Question: ").removesuffix("\nAnswer:")


@pytest.fixture()
def fake_reward(monkeypatch):
    """A random tiny model never answers right; reward a text by its length's parity instead,
    so both trainers have something to learn from (and the update paths run)."""
    real = V.score

    def score(completions, problems, k, mode="strict"):
        real(completions, problems, k, mode)  # same checks of the layout
        texts = [c if isinstance(c, str) else c.text for c in completions]
        return torch.tensor([float(len(t) % 2 == 0) for t in texts])

    monkeypatch.setattr(V, "score", score)


def _cfgs(tiny_dir, out=""):
    common = dict(model=str(tiny_dir), problems=3, k=3, max_new_tokens=6, eval_limit=1, eval_every=1,
                  out=out, plot=False, tensorboard=False, lr=1e-3)
    return {"rft": rft.Config(**common, epochs=2, micro_batch=2),
            "grpo": grpo.Config(**common, kl_coef=0.1, ppo_epochs=2, micro_batch=4, dynamic_sampling=True,
                                clip_eps_high=0.28, aggregation="token_mean")}


@pytest.mark.parametrize("name", ["rft", "grpo"])
def test_training_prompts_come_from_the_train_split_only(name, tiny_dir, fake_reward, monkeypatch):
    from spkit.generation import Sampler

    seen: list[tuple[str, float]] = []
    real = Sampler.generate

    def record(self, prompts, params=None, seed=None, progress=False, row_seeds=None):
        seen.extend((p, params.temperature) for p in prompts)
        return real(self, prompts, params, seed, progress, row_seeds)

    monkeypatch.setattr(Sampler, "generate", record)
    mod = {"rft": rft, "grpo": grpo}[name]
    mod.train(dataclasses.replace(_cfgs(tiny_dir)[name], steps=2))
    held = {p["question"] for p in V.heldout_problems()}
    trained = {_prompt_question(p) for p, temp in seen if temp > 0}
    evaluated = {_prompt_question(p) for p, temp in seen if temp == 0}
    assert trained and all(arithmetic.split_of(q) == "train" for q in trained)
    assert not trained & held
    assert evaluated == {p["question"] for p in V.heldout_problems(1)}


# ---- GRPO's dynamic sampling, end to end on a stub


def test_dynamic_sampling_refills_the_batch(monkeypatch):
    rewards = iter([torch.tensor([1.0, 1, 1, 0]), torch.tensor([0.0, 0, 0, 1]), torch.tensor([1.0, 0, 1, 0])])
    monkeypatch.setattr(V, "sample_groups", lambda s, probs, k, params, seed, first_row=0: [
        Completion("p", f"{seed}/{i}", [1], [2], [0.0], "stop", [0.0]) for i in range(len(probs) * k)])
    monkeypatch.setattr(V, "score", lambda outs, probs, k, mode="strict": next(rewards))
    cfg = grpo.Config(problems=2, k=2, dynamic_sampling=True, max_rounds=3)
    b = grpo.rollout(None, cfg, None, seed=7)
    assert b.drawn == 8  # two rounds filled the batch: the third was never drawn
    assert b.rewards.tolist() == [1.0, 0.0, 0.0, 1.0]  # round 1's group 2, round 2's group 2
    assert [c.text.split("/")[1] for c in b.completions] == ["2", "3", "2", "3"]
    assert b.drawn_rewards.tolist() == [1.0, 1, 1, 0, 0, 0, 0, 1]
    no_ds = grpo.rollout(None, dataclasses.replace(cfg, dynamic_sampling=False), None, seed=7)
    assert no_ds.drawn == 4 and no_ds.rewards.tolist() == [1.0, 0, 1, 0]  # the third draw, unfiltered


# ---- determinism and exact resume



@pytest.mark.parametrize("name", ["rft", "grpo"])
def test_same_seed_same_numbers_and_resume_equals_straight_run(name, tiny_dir, fake_reward, tmp_path):
    mod = {"rft": rft, "grpo": grpo}[name]
    cfg = _cfgs(tiny_dir)[name]
    a = check_seed_and_resume(mod.train, cfg, tmp_path)
    assert any(r.get("losses/grad_norm", 0) > 0 for r in a.rows)  # the update ran
    assert not math.isnan(a.last("eval/strict"))
    n = a.last("train/samples")  # 2 steps × 3 problems × 3 samples (GRPO: + refill rounds)
    assert n == 18 if name == "rft" else (n >= 18 and n % 9 == 0)


# ---- a real dataset (GSM8K) through the same trainers, on local files


def _write_gsm8k(root: Path, n_train: int = 60, n_test: int = 6) -> Path:
    """A GSM8K-format data directory (spkit's arithmetic records, GSM8K's schema)."""
    import json

    (root / "gsm8k").mkdir(parents=True)
    for stem, recs in (("train", arithmetic.generate(n_train, 1, split="train")),
                       ("test", arithmetic.generate(n_test, 2, split="test"))):
        with open(root / "gsm8k" / f"{stem}.jsonl", "w") as f:
            for r in recs:
                f.write(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n")
    return root


def test_gsm8k_task_reads_local_files_and_keeps_dev_apart(tmp_path):
    from spkit.errors import SpkitError

    task = V.load_task("gsm8k", str(_write_gsm8k(tmp_path)))
    assert task.levels == () and task.max_new_tokens == 256 and "Question:" in task.stop
    held = [r["question"] for r in task.heldout_problems()]
    assert len(held) == 6 and [r["question"] for r in task.heldout_problems(2)] == held[:2]
    dev = {r["question"] for r in task.dev_problems(100)}
    trained = {r["question"] for s in range(20) for r in task.train_problems(10, s)}
    assert dev and trained and not dev & trained and not trained & set(held)
    assert len(dev) + len(trained) == 60  # every train-file problem is one or the other
    assert task.train_problems(5, 3) == task.train_problems(5, 3) != task.train_problems(5, 4)
    with pytest.raises(SpkitError, match="100 train problems asked for"):
        task.train_problems(100, 0)
    with pytest.raises(SpkitError, match="unknown task 'gsm9k'"):
        V.load_task("gsm9k")
    with pytest.raises(SpkitError, match="data file .* not found"):
        V.load_task("gsm8k", str(tmp_path / "gsm8k"))


def test_gsm8k_heldout_accuracy_equals_spkit_eval(tiny_dir):
    """With --task gsm8k the training curve's number is `spkit eval --tasks gsm8k --num-fewshot 0
    --max-gen-toks N`, completion by completion (the fixture's test file, a random tiny model)."""
    from spkit.evals.data import FIXTURES
    from spkit.evals.run import run
    from spkit.models import load_model

    task = V.load_task("gsm8k", str(FIXTURES))
    assert task.eval_command.startswith("spkit eval --tasks gsm8k --num-fewshot 0 --max-gen-toks 256")
    task = dataclasses.replace(task, max_new_tokens=12)
    res = run(model=str(tiny_dir), tasks="gsm8k", data_dir=str(FIXTURES), num_fewshot=0, max_gen_toks=12)
    model, tok = load_model(str(tiny_dir))
    problems, outs = V.heldout_completions(model, tok, task=task)
    theirs = {s["doc"]["question"]: s["resps"][0][0] for rows in res["samples"].values() for s in rows}
    assert len(theirs) == len(problems) == 8
    assert [theirs[p["question"]] for p in problems] == [c.text for c in outs]
    ours = V.evaluate_heldout(model, tok, task=task)
    assert ours["eval/strict"] == pytest.approx(res["results"]["gsm8k_local"]["exact_match,strict-match"])
    assert not any(k.startswith("eval/strict/level_") for k in ours)


@pytest.mark.parametrize("name", ["rft", "grpo"])
def test_gsm8k_preset_trains_a_model_from_local_files(name, tiny_dir, tmp_path, fake_reward, monkeypatch):
    from spkit.cli import main
    from spkit.generation import Sampler

    data = _write_gsm8k(tmp_path / "data")
    seen: list[str] = []
    real = Sampler.generate
    monkeypatch.setattr(Sampler, "generate", lambda self, prompts, params=None, seed=None, progress=False, row_seeds=None: (
        seen.extend(prompts) or real(self, prompts, params, seed, progress, row_seeds)))
    out = tmp_path / "run"
    main(["train", name, "--preset", "gsm8k", "--model", str(tiny_dir), "--data-dir", str(data), "--steps", "1",
          "--problems", "2", "--k", "2", "--max-new-tokens", "6", "--eval-limit", "2", "--out", str(out),
          "--no-tensorboard", "--no-plot"])
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert cfg["task"] == "gsm8k" and cfg["micro_batch"] == 8  # the preset, flags on top
    test_qs, train_qs = ({json.loads(line)["question"] for line in (data / "gsm8k" / f"{s}.jsonl").read_text().splitlines()}
                         for s in ("test", "train"))
    asked = {_prompt_question(p) for p in seen}
    assert asked & test_qs and asked - test_qs and asked - test_qs <= train_qs  # evaluated on test, trained on train
    assert (out / "final" / "model.safetensors").exists()


def test_max_samples_ends_the_run_at_the_step_that_reaches_it(tiny_dir, fake_reward, tmp_path):
    cfg = dataclasses.replace(_cfgs(tiny_dir)["rft"], steps=50, max_samples=10, eval_every=0,  # 9 per step
                              out=str(tmp_path), checkpoint_every=100, plot=False, tensorboard=False)
    hist = rft.train(cfg)
    assert hist.rows[-1]["step"] == 2 and hist.last("train/samples") == 18
    assert not math.isnan(hist.last("eval/strict"))  # the last step is evaluated like any last step
    weights = (tmp_path / "final" / "model.safetensors").read_bytes()
    again = rft.train(dataclasses.replace(cfg, resume=True))  # a finished budget: resume adds no step
    assert again.rows[-1]["step"] == 2 and (tmp_path / "final" / "model.safetensors").read_bytes() == weights


def test_ratios_are_taken_at_the_rollout_temperature(random_tiny):
    """At T = 0.7 the learner's log-probs (logits / T) equal the sampler's behaviour log-probs, so
    GRPO's first ratio is 1; the untempered ones differ (the off-policy error this removes)."""
    from spkit.generation import Sampler
    from spkit.logprobs import pad_right
    from spkit.sampling import behaviour_logprobs

    model, tok = random_tiny
    probs = V.train_problems(2, 0)
    outs = V.sample_groups(Sampler(model, tok), probs, 3, V.rollout_params(8, temperature=0.7), seed=1)
    P, C = [o.prompt_ids for o in outs], [o.token_ids for o in outs]
    with torch.no_grad():
        tempered, mask = V.padded_logprobs(model, P, C, temperature=0.7)
        plain, _ = V.padded_logprobs(model, P, C)
    behaviour = pad_right([behaviour_logprobs(o, 0.7) for o in outs], tempered.shape[1])
    assert torch.allclose(tempered * mask, behaviour, atol=1e-4)
    assert not torch.allclose(plain * mask, behaviour, atol=1e-2)
    untempered = pad_right([behaviour_logprobs(o, 1.0) for o in outs], tempered.shape[1])
    assert torch.allclose(plain * mask, untempered, atol=1e-4)
