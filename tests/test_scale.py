"""The run loop's scale-up options, for every trainer: the vLLM engine that follows the learner
(its weight sync, without vLLM: `FakeLLM` below), `--lora`, `--grad-checkpointing`.

The real vLLM engine is tested on demand in tests/test_vllm_cpu.py.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spkit.algos import spiral
from spkit.errors import SpkitError
from spkit.generation import Sampler
from spkit.sampling import SamplingParams
from spkit.vllm_backend import VLLMBackend

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft not installed ([lora] extra)")


class FakeLLM:
    """The three `vllm.LLM` calls the weight sync makes, on a plain transformers model:
    `collective_rpc(fn, args)` runs `fn(worker, *args)` on one worker whose `reload_weights`
    loads the checkpoint-format state dict strictly (so a name the plain architecture does not
    have, e.g. a LoRA key, fails), and `reset_prefix_cache` is counted."""

    def __init__(self, plain_model: torch.nn.Module) -> None:
        self.model, self.resets = plain_model, 0

    def reload_weights(self, weights_iterator, is_checkpoint_format: bool) -> None:
        assert is_checkpoint_format
        self.model.load_state_dict(dict(weights_iterator), strict=True)

    def collective_rpc(self, fn, args=()):
        return [fn(self, *args)]

    def reset_prefix_cache(self) -> None:
        self.resets += 1


def _ids(tok):
    return torch.tensor([tok("You are player 0 in Kuhn Poker.")["input_ids"]])


def test_the_engine_gets_the_weights_after_each_update_and_only_then(random_tiny):
    model, tok = random_tiny
    fake = FakeLLM(copy.deepcopy(model))
    eng = VLLMBackend(model, tok, llm=fake)
    assert not eng.sync() and eng.pushes == 0  # started from these weights
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for k in range(1, 4):
        model(_ids(tok)).logits.sum().backward()
        opt.step()
        opt.zero_grad()
        assert eng.sync() and eng.pushes == k and fake.resets == k
        assert not eng.sync()  # nothing changed since: no second push
        assert torch.equal(fake.model(_ids(tok)).logits, model(_ids(tok)).logits)
    with torch.no_grad():  # a weight copy (e.g. --resume loading a checkpoint) is a change too
        model.model.norm.weight.copy_(torch.full_like(model.model.norm.weight, 0.5))
    assert eng.sync() and torch.equal(fake.model.model.norm.weight, model.model.norm.weight)


@needs_peft
def test_lora_pushes_merged_weights_the_plain_architecture_loads(random_tiny):
    from spkit.models import add_lora

    model, tok = random_tiny
    plain = copy.deepcopy(model)
    add_lora(model, 4)
    eng = VLLMBackend(model, tok, llm=FakeLLM(plain))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(0.1 * torch.randn_like(p))
    assert eng.sync()
    torch.testing.assert_close(plain(_ids(tok)).logits, model(_ids(tok)).logits, atol=1e-5, rtol=1e-5)


def test_rescoring_gives_the_torch_samplers_logprobs(random_tiny):
    """What `Sampler` does to vLLM's completions when it follows a learner: untempered and
    tempered log-probs from the learner's forward, equal to those spkit's sampler records."""
    model, tok = random_tiny
    s = Sampler(model, tok)
    params = SamplingParams(max_new_tokens=12, temperature=0.7)
    outs = s.generate(["a b", "c d e", "a b"], params, seed=3)
    blank = [dataclasses.replace(o, logprobs=[], sampling_logprobs=[]) for o in outs]
    again = s._rescore(blank, params)
    for a, b in zip(outs, again, strict=True):
        assert b.logprobs == pytest.approx(a.logprobs, abs=1e-4)
        assert b.sampling_logprobs == pytest.approx(a.sampling_logprobs, abs=1e-4)


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the missing-vLLM message cannot show")
def test_backend_vllm_without_vllm_is_one_line_before_any_work(tiny_dir, tmp_path):
    cfg = spiral.Config(model=str(tiny_dir), steps=1, backend="vllm", out=str(tmp_path / "r"))
    with pytest.raises(SpkitError, match=r"^backend 'vllm' needs vLLM: pip install") as e:
        spiral.train(cfg)
    assert "\n" not in str(e.value) and not (tmp_path / "r").exists()


def _spiral(tiny_dir, out, **kw):
    base = dict(model=str(tiny_dir), steps=2, episodes=3, eval_every=0, eval_games=0, avg_every=0, checkpoint_every=1,
                out=str(out), plot=False, tensorboard=False, lr=1e-3)
    return spiral.Config(**{**base, **kw})


@needs_peft
def test_lora_run_trains_adapters_only_and_final_loads_in_plain_transformers(tiny_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    h = spiral.train(_spiral(tiny_dir, tmp_path / "a", lora=4))
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    merged = AutoModelForCausalLM.from_pretrained(h.final_dir)  # no peft needed
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert changed and all(k.endswith("proj.weight") for k in changed)  # only adapted layers moved
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), h.final_dir / "adapter")
    torch.testing.assert_close(adapted(ids).logits, merged(ids).logits, atol=1e-5, rtol=1e-5)
    # resume restores the adapters and their optimizer state: equal to the straight run
    spiral.train(_spiral(tiny_dir, tmp_path / "b", lora=4, steps=1))
    r = spiral.train(_spiral(tiny_dir, tmp_path / "b", lora=4, resume=True))
    again = AutoModelForCausalLM.from_pretrained(r.final_dir)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in merged.state_dict().items())


def test_activation_checkpointing_recomputes_the_forward_and_keeps_the_gradient(random_tiny):
    from spkit.run import Run, RunConfig

    model, tok = random_tiny
    plain = copy.deepcopy(model)
    Run(RunConfig(grad_checkpointing=True), "t").track(model=model, tokenizer=tok)
    calls = []
    model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda *a: calls.append(1))
    ids = _ids(tok)
    grads = []
    for m in (plain, model):
        m.train()
        torch.log_softmax(m(ids).logits, -1)[0, :, 7].sum().backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    assert len(calls) == 2  # the layer ran again in the backward pass: its activations were not kept
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, atol=1e-6, rtol=1e-5)


# ---- data parallelism: 2 ranks × batch B make the update 1 rank × batch 2B makes ----------------------
_TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
needs_torchrun = pytest.mark.skipif(not Path(_TORCHRUN).exists(), reason="torchrun not installed")

_RECORD_AT_CLIP = """
clip = C.clip_grad_norm
def recording_clip(model, max_norm):  # runs after the ranks' gradients are averaged
    norm = clip(model, max_norm)
    seen.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone())
    return norm
C.clip_grad_norm = recording_clip
"""  # the gradient of each optimizer step of module C (the one that clips), appended to `seen`

_RECORD_GRADIENT = """
import os, sys, torch
torch.set_num_threads(1)
from spkit.algos import {algo} as A
from spkit.rl import verifiable as V
C = V if A.__name__.endswith("rft") else A  # RFT clips inside verifiable.sft_update
seen = []
{record}cfg = A.Config(steps=1, problems=int(sys.argv[1]), k=4, max_new_tokens=24, eval_every=0, eval_limit=1,
               tensorboard=False, plot=False, threads=1, seed=4, {extra})
A.train(cfg)
torch.save(seen[0], sys.argv[2] + "/grad" + os.environ.get("RANK", "solo") + ".pt")
"""


def _gradients(script: Path, tmp_path: Path, two: list[str], solo: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """Run `script` on two gloo ranks (argv `two`) and as one process per entry of `solo`; each run
    saves the gradients it recorded as grad<RANK|solo>.pt. Returns them by rank ("0", "1") and tag."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPKIT_NO_PROGRESS": "1"}
    r = subprocess.run([_TORCHRUN, "--standalone", "--nproc_per_node", "2", str(script), *two, str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    for tag, argv in solo.items():
        r = subprocess.run([sys.executable, str(script), *argv, str(tmp_path)], capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        (tmp_path / "gradsolo.pt").rename(tmp_path / f"grad_{tag}.pt")
    return {k: torch.load(tmp_path / f"grad{k}.pt") for k in ("0", "1", *(f"_{t}" for t in solo))}


def _rel(g: torch.Tensor, ref: torch.Tensor) -> float:
    return float((g - ref).norm() / ref.norm())  # float sums in another order: not bit-equal


@pytest.mark.slow  # three fresh interpreters with spkit-tiny: ~30 s CPU
@needs_torchrun
@pytest.mark.parametrize("algo,extra", [("grpo", "dynamic_sampling=False"), ("nft", "dynamic_sampling=False"),
                                        ("rft", "lr=1e-3")])
def test_two_ranks_with_batch_b_make_the_update_one_rank_with_batch_2b_makes(algo, extra, tmp_path):
    """GRPO's loop (and NFT on it) and RFT split one global batch across ranks: each rank samples
    its shard with the whole batch's row seeds and normalises by the whole batch, so the averaged
    gradient equals one process's gradient on the whole batch; rank 0's shard alone differs.
    (Dynamic sampling refills each rank's shard on its own, so it is off here.)"""
    script = tmp_path / "run.py"
    script.write_text(_RECORD_GRADIENT.format(algo=algo, extra=extra, record=_RECORD_AT_CLIP))
    g = _gradients(script, tmp_path, ["3"], {"whole": ["6"], "half": ["3"]})
    whole = g["_whole"]
    assert torch.equal(g["0"], g["1"])  # the replicas step with one gradient
    assert whole.abs().max() > 0  # the batch had groups with mixed rewards
    assert _rel(g["0"], whole) < 1e-5, _rel(g["0"], whole)
    assert _rel(g["_half"], whole) > 1e-2, _rel(g["_half"], whole)


_SPIRAL_GRADIENTS = """
import os, sys, dataclasses, torch
torch.set_num_threads(1)
from spkit.algos import spiral as A
from spkit.run import distributed
games, out = int(sys.argv[1]), sys.argv[2]
seen, play = [], A.collect
def global_batch(g, learner, opponents, cfg, seed, past=None):  # every process plays the same games;
    full = play(g, learner, opponents, dataclasses.replace(cfg, episodes=games), 1234 + len(seen), past)
    return full[distributed.shard(len(full))]  # a rank trains on its contiguous share
A.collect = global_batch
C = A
{record}cfg = A.Config(steps=2, episodes=games, games=("kuhn_poker",), magnet_coef=0.5, eval_every=0, eval_games=0,
               lr=1e-3, tensorboard=False, plot=False, threads=1, seed=4, overwrite=True, out=out + "/run")
A.train(cfg)
torch.save(torch.stack(seen), out + "/grad" + os.environ.get("RANK", "solo") + ".pt")
"""


@pytest.mark.slow  # three fresh interpreters with spkit-tiny: ~40 s CPU
@needs_torchrun
def test_spiral_update_on_two_ranks_equals_one_process_on_their_games(tmp_path):
    """SPIRAL's ranks play their own games (rank-derived seeds), so the test hands each rank a
    contiguous share of one global batch of games and checks what the update makes of them: the
    RAE baselines and the loss normaliser run over the global batch, and the magnet term is on
    every rank, so both steps' averaged gradients (the second after a first update and a first
    baseline move) equal one process's on the whole batch; a process on half the games differs."""
    script = tmp_path / "run.py"
    script.write_text(_SPIRAL_GRADIENTS.format(record=_RECORD_AT_CLIP))
    g = _gradients(script, tmp_path, ["8"], {"whole": ["8"], "half": ["4"]})
    whole = g["_whole"]
    assert torch.equal(g["0"], g["1"])
    assert whole.shape[0] == 2 and whole[1].abs().max() > 0
    for t in (0, 1):
        assert _rel(g["0"][t], whole[t]) < 1e-5, (t, _rel(g["0"][t], whole[t]))
    assert _rel(g["_half"][0], whole[0]) > 1e-2


_SAMPLE_BY_SHARD = """
if "RANK" not in os.environ:  # one process samples the rows in the two ranks' contiguous shards: a row's
    from spkit.generation import Sampler  # logits move in the last bits with its batch, which can flip a near-tie
    from spkit.sampling import row_seed
    generate = Sampler.generate
    def by_shard(self, prompts, params=None, seed=None, progress=False, row_seeds=None):
        h = (len(prompts) + 1) // 2
        if len(prompts) < 2 or params is None or params.greedy:
            return generate(self, prompts, params, seed, progress, row_seeds)
        row_seeds = row_seeds or [row_seed(seed, i) for i in range(len(prompts))]
        return (generate(self, prompts[:h], params, seed, progress, row_seeds[:h])
                + generate(self, prompts[h:], params, seed, progress, row_seeds[h:]))
    Sampler.generate = by_shard
"""

_PREFERENCE_GRADIENTS = """
import os, sys, torch
torch.set_num_threads(1)
from spkit.algos import preference_game as PG, sppo
topics, out = int(sys.argv[1]), sys.argv[2]
seen, init = [], PG.LMPreferenceRun.__init__
def recording_init(self, *a, **kw):  # after the run loop's averaging hook: the averaged gradient
    init(self, *a, **kw)
    self.optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(
        torch.cat([p.grad.flatten() for p in self.model.parameters()]).clone()))
PG.LMPreferenceRun.__init__ = recording_init
{by_shard}cfg = sppo.Config(mode="lm", steps=1, topics=topics, K=4, inner_steps=2, eval_samples=4, eval_every=0,
                  tensorboard=False, plot=False, threads=1, seed=4, overwrite=True, out=out + "/run")
sppo.train(cfg)
torch.save(torch.stack(seen), out + "/grad" + os.environ.get("RANK", "solo") + ".pt")
"""


@pytest.mark.slow  # three fresh interpreters with spkit-tiny: ~30 s CPU
@needs_torchrun
def test_lm_preference_learner_on_two_ranks_equals_one_process_on_the_whole_batch(tmp_path):
    """SPPO on the LM preference game: each rank samples half the rows (the whole batch's row
    seeds), all gather the batch, the oracle draws once over it, and each rank differentiates its
    own rows: both inner steps' averaged gradients equal one process's; a smaller batch differs."""
    script = tmp_path / "run.py"
    script.write_text(_PREFERENCE_GRADIENTS.format(by_shard=_SAMPLE_BY_SHARD))
    g = _gradients(script, tmp_path, ["4"], {"whole": ["4"], "half": ["2"]})
    whole = g["_whole"]
    assert torch.equal(g["0"], g["1"])
    assert whole.shape[0] == 2 and whole.abs().max() > 0
    assert _rel(g["0"][0], whole[0]) < 1e-5, _rel(g["0"][0], whole[0])
    # the second step starts from weights one Adam step apart by float rounding: Adam divides by
    # √v, so coordinates with ~1e-7 gradients move by up to lr whatever their rounding
    assert _rel(g["0"][1], whole[1]) < 1e-3, _rel(g["0"][1], whole[1])
    assert _rel(g["_half"][0], whole[0]) > 1e-2


_SPLIT_ROLLOUTS = """
import os, sys, json, torch
torch.set_num_threads(1)
from spkit.algos import {algo} as A
from spkit.generation import Sampler
from spkit.rl import {clip_module} as C
from spkit import parallel
seen, rows, out = [], [], sys.argv[1]
sample = Sampler.generate
def counting(self, prompts, params=None, seed=None, progress=False, row_seeds=None):
    if not parallel.rollouts_split() and params is not None and not params.greedy:
        rows.append(len(prompts))  # the rows this process samples itself
    return sample(self, prompts, params, seed, progress, row_seeds)
Sampler.generate = counting
{by_shard}{record}cfg = A.Config(steps=1, lr=1e-3, eval_every=0, eval_limit=1, tensorboard=False, plot=False, threads=1,
               seed=4, {extra})
A.train(cfg)
torch.save(torch.stack(seen), out + "/grad" + os.environ.get("RANK", "solo") + ".pt")
open(out + "/rows" + os.environ.get("RANK", "solo") + ".json", "w").write(json.dumps(rows))
"""


@pytest.mark.slow  # three fresh interpreters with spkit-tiny: ~30 s CPU each case
@needs_torchrun
@pytest.mark.parametrize("algo,clip_module,extra", [
    ("b_star", "verifiable", "problems=3, k=4, max_new_tokens=24, dev_per_level=1, dev_k=2, temperatures=(0.7,), "
                             "thetas=(0.5,), m=1, batch_size=6"),
    ("online_iterative_dpo", "pairs", "prompts=16, k=4, max_new_tokens=32, micro_batch=3")])
def test_a_trainer_whose_ranks_hold_one_batch_splits_its_rollouts_and_makes_the_same_update(
        algo, clip_module, extra, tmp_path):
    """B-STaR and online iterative DPO draw their data from seeds, so their ranks hold the same
    batch: inside the run loop's `split_rollouts` scope each rank samples about half of every
    batch's rows and all gather the batch, and the shared SFT and DPO steps differentiate each
    rank's shard of the rows (weighted by the whole batch). Every optimizer step's averaged
    gradient equals one process's (which samples in the same two shards, see _SAMPLE_BY_SHARD),
    and the two ranks together sample its rows."""
    script = tmp_path / "run.py"
    script.write_text(_SPLIT_ROLLOUTS.format(by_shard=_SAMPLE_BY_SHARD, record=_RECORD_AT_CLIP, algo=algo,
                                             clip_module=clip_module, extra=extra))
    g = _gradients(script, tmp_path, [], {"whole": []})
    whole = g["_whole"]
    assert torch.equal(g["0"], g["1"])
    assert whole.abs().max() > 0  # the step kept samples and fine-tuned on them
    for t in range(whole.shape[0]):  # rows scored in other micro-batches differ in the last bits, which
        assert _rel(g["0"][t], whole[t]) < 1e-4, (t, _rel(g["0"][t], whole[t]))  # DPO's sigmoid scales up
    r0, r1 = (json.loads((tmp_path / f"rows{r}.json").read_text()) for r in (0, 1))
    solo = json.loads((tmp_path / "rowssolo.json").read_text())
    assert sum(r0) + sum(r1) == sum(solo)  # the ranks sampled the batch between them, each half of it
    assert 0.4 < sum(r0) / sum(solo) < 0.6, (r0, r1)


def test_ranks_asking_for_different_rollouts_stop_with_one_line(monkeypatch):
    """A trainer whose ranks drew different prompts inside a split step (data from the rank-seeded
    global RNG) would gather a batch no process asked for: `agree` names the mismatch instead."""
    from spkit import parallel
    from spkit.errors import SpkitError

    monkeypatch.setattr(parallel, "gather_objects", lambda obj: [obj, ("0123456789abcdef", 7)])
    key = parallel.fingerprint(["Q: 1 + 1"], 3)
    with pytest.raises(SpkitError, match="ranks asked for different rollouts") as e:
        parallel.agree(key, 5)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(parallel, "gather_objects", lambda obj: [obj, (key, 7)])
    assert parallel.agree(key, 5) == 5  # rank 0's value (its seed) on every rank


def test_split_rows_does_this_ranks_share_and_gathers_every_row_in_order(monkeypatch):
    from spkit import parallel

    done = []
    monkeypatch.setattr(parallel, "world", lambda: (1, 3))  # rank 1 of 3: rows 4..6 of 10
    monkeypatch.setattr(parallel, "gather_objects", lambda mine: [list(range(4)), mine, list(range(7, 10))])
    out = parallel.split_rows(10, lambda rows: done.append(rows) or list(range(rows.start, rows.stop)))
    assert done == [slice(4, 7)] and out == list(range(10))


_SHARDED_RUN = """
import os, sys, json, torch
torch.set_num_threads(1)
from spkit.algos import grpo
shard, steps, resume, out = sys.argv[1] == "1", int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
held = []
cfg = grpo.Config(steps=steps, problems=2, k=4, max_new_tokens=24, eval_every=0, eval_limit=1, lr=1e-3,
                  checkpoint_every=1, tensorboard=False, plot=False, threads=1, seed=4, dynamic_sampling=False,
                  shard_optimizer=shard, resume=resume, overwrite=not resume, out=out)
orig = torch.optim.Adam.step
def counting_step(self, *a, **kw):  # how many parameters this rank's optimizer keeps state for
    r = orig(self, *a, **kw)
    held.append(len(self.state))
    return r
torch.optim.Adam.step = counting_step
grpo.train(cfg)
open(out + "/held" + os.environ["RANK"] + ".json", "w").write(json.dumps(held))
"""


@pytest.mark.slow  # three two-rank runs of spkit-tiny: ~45 s CPU
@needs_torchrun
def test_sharded_optimizer_state_makes_the_unsharded_weights_and_resumes_exactly(tmp_path):
    """`--shard-optimizer` (ZeRO stage 1): each rank keeps Adam state for its share of the
    parameters only, yet a sharded run checkpointed after step 1 and resumed on two ranks ends
    step 2 with exactly the weights of an unsharded straight run."""
    import json

    from safetensors.torch import load_file

    script = tmp_path / "run.py"
    script.write_text(_SHARDED_RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPKIT_NO_PROGRESS": "1"}

    def two_ranks(out: str, shard: bool, steps: int, resume: bool = False) -> None:
        r = subprocess.run([_TORCHRUN, "--standalone", "--nproc_per_node", "2", str(script), str(int(shard)),
                            str(steps), str(int(resume)), str(tmp_path / out)],
                           capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-2000:]

    def weights(out: str) -> dict[str, torch.Tensor]:
        return load_file(next((tmp_path / out / "final").glob("*.safetensors")))

    two_ranks("plain", False, 2)
    two_ranks("sharded", True, 1)  # checkpointed after step 1 (the whole state, gathered on rank 0)
    two_ranks("sharded", True, 2, resume=True)  # each rank reloads it and keeps its share
    plain, sharded = weights("plain"), weights("sharded")
    start = load_file(next(Path(grpo_start()).glob("*.safetensors")))
    assert any(not torch.equal(v, start[k]) for k, v in plain.items())  # the run moved the weights
    for k in plain:
        assert torch.equal(sharded[k], plain[k]), k
    held = [json.loads((tmp_path / "sharded" / f"held{r}.json").read_text()) for r in (0, 1)]
    full = json.loads((tmp_path / "plain" / "held0.json").read_text())
    assert held[0][-1] + held[1][-1] == full[-1] <= len(plain) and min(held[0][-1], held[1][-1]) > 0


_FSDP_RUN = """
import os, sys, json, torch
torch.set_num_threads(1)
from spkit.algos import grpo
from spkit.run import fsdp
mode, steps, resume, out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
shard = fsdp.shard
def recording_shard(model, optimizer):  # how much of the model this rank holds once sharded
    state = shard(model, optimizer)
    mine = sum(p.to_local().numel() for p in model.parameters())
    open(out + "/held" + os.environ["RANK"] + ".json", "w").write(json.dumps(
        [mine, sum(p.numel() for p in model.parameters())]))
    return state
fsdp.shard = recording_shard
cfg = grpo.Config(steps=steps, problems=2, k=4, max_new_tokens=24, eval_every=1, eval_limit=1, lr=1e-3,
                  checkpoint_every=1, tensorboard=False, plot=False, threads=1, seed=4, dynamic_sampling=False,
                  fsdp=mode == "fsdp", resume=resume, overwrite=not resume, out=out)
grpo.train(cfg)
"""


@pytest.mark.slow  # four two-rank runs of spkit-tiny: ~60 s CPU
@needs_torchrun
def test_fsdp_shards_the_model_makes_the_ddp_update_and_resumes_exactly(tmp_path):
    """`--fsdp` (FSDP2): each rank holds half of the weights (and so of their gradients and Adam
    state), rollouts and rank 0's evaluations run on the full inference copy, and a GRPO step ends
    at the weights DDP reaches (up to float rounding: FSDP's reduce-scatter and its plain forward
    sum in another order than DDP's all-reduce and the shared-prompt forward). A run checkpointed
    after step 1 and resumed ends step 2 exactly where a straight run does."""
    from safetensors.torch import load_file

    script = tmp_path / "run.py"
    script.write_text(_FSDP_RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPKIT_NO_PROGRESS": "1"}

    def two_ranks(out: str, mode: str, steps: int, resume: bool = False) -> None:
        (tmp_path / out).mkdir(exist_ok=True)
        r = subprocess.run([_TORCHRUN, "--standalone", "--nproc_per_node", "2", str(script), mode, str(steps),
                            str(int(resume)), str(tmp_path / out)], capture_output=True, text=True, timeout=300,
                           env=env)
        assert r.returncode == 0, r.stderr[-2000:]

    def weights(out: str, where: str = "final") -> dict[str, torch.Tensor]:
        return load_file(next((tmp_path / out / where).glob("*.safetensors")))

    two_ranks("ddp", "ddp", 1)
    two_ranks("straight", "fsdp", 2)
    two_ranks("resumed", "fsdp", 1)  # checkpointed after step 1: the inference copy + gathered Adam state
    two_ranks("resumed", "fsdp", 2, resume=True)
    straight, resumed = weights("straight"), weights("resumed")
    for k in straight:
        assert torch.equal(resumed[k], straight[k]), k
    # step 1 against DDP: after it the weights differ in the last bits, and step 2's sampling
    # from them can flip a near-tied token, so only the first update is compared
    ddp, fsdp1 = weights("ddp"), weights("straight", "checkpoints/step_0000001")
    start = load_file(next(Path(grpo_start()).glob("*.safetensors")))
    moved = sum(float((ddp[k] - start[k]).norm() ** 2) for k in ddp) ** 0.5
    apart = sum(float((fsdp1[k] - ddp[k]).norm() ** 2) for k in ddp) ** 0.5
    assert moved > 0.1 and apart / moved < 1e-4, (apart, moved)
    held = [json.loads((tmp_path / "straight" / f"held{r}.json").read_text()) for r in (0, 1)]
    assert held[0][1] == held[1][1] and held[0][0] + held[1][0] == held[0][1]  # each rank: its own half
    assert 0.4 < held[0][0] / held[0][1] < 0.6
    rows = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and "eval/strict" in rows[0]  # rank 0 evaluated at steps 0, 1, 2 (on the copy)


@pytest.mark.slow  # two two-rank runs of spkit-tiny: ~30 s CPU
@needs_torchrun
def test_fsdp_under_a_trainer_whose_ranks_hold_one_batch_makes_the_ddp_step(tmp_path):
    """B-STaR under --fsdp: split rollouts on the inference copy, several SFT optimizer steps on
    the sharded model (each rank its shard of the rows, padded to the busiest rank's passes);
    its first step ends at DDP's weights up to float rounding."""
    from safetensors.torch import load_file

    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPKIT_NO_PROGRESS": "1"}
    args = ["--steps", "1", "--problems", "3", "--k", "4", "--max-new-tokens", "24", "--dev-per-level", "1",
            "--dev-k", "2", "--temperatures", "0.7", "--thetas", "0.5", "--batch-size", "5",
            "--lr", "1e-3", "--eval-limit", "1", "--threads", "1", "--seed", "4", "--no-plot", "--no-tensorboard"]
    for name, extra in (("ddp", []), ("fsdp", ["--fsdp"])):
        r = subprocess.run([_TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "spkit", "train", "b_star",
                            *args, *extra, "--out", str(tmp_path / name)], capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
    ddp, sharded = (load_file(next((tmp_path / n / "final").glob("*.safetensors"))) for n in ("ddp", "fsdp"))
    start = load_file(next(Path(grpo_start()).glob("*.safetensors")))
    moved = sum(float((ddp[k] - start[k]).norm() ** 2) for k in ddp) ** 0.5
    apart = sum(float((sharded[k] - ddp[k]).norm() ** 2) for k in ddp) ** 0.5
    assert moved > 0.1 and apart / moved < 1e-4, (apart, moved)


def test_an_evaluation_that_runs_the_sharded_model_stops_with_one_line():
    """Under --fsdp rank 0 evaluates alone; a forward of the sharded model there would wait for
    ranks that never come. The run loop's guard turns that hang into one line, and lets an
    evaluation on the inference copy (here: another module) through."""
    from spkit.errors import SpkitError
    from spkit.run import Run, RunConfig

    run = Run(RunConfig(), "probe")
    run.model, run.fsdp = torch.nn.Linear(2, 2), object()  # as if sharded
    copy_ = torch.nn.Linear(2, 2)
    with pytest.raises(SpkitError, match="probe's evaluation ran the sharded model") as e:
        run._guarded(lambda t: {"y": run.model(torch.ones(1, 2)).sum().item()})(0)
    assert "\n" not in str(e.value)
    assert "y" in run._guarded(lambda t: {"y": copy_(torch.ones(1, 2)).sum().item()})(0)
    run.model(torch.ones(1, 2))  # the guard is gone after the evaluation


def test_fsdp_refuses_what_it_cannot_run_with_one_line(tiny_dir, tmp_path, monkeypatch):
    from spkit.algos import grpo, sppo
    from spkit.errors import SpkitError
    from spkit.run import fsdp

    with pytest.raises(SpkitError, match="sppo tracks no model to shard"):
        sppo.train(sppo.Config(fsdp=True, steps=1))
    with pytest.raises(SpkitError, match="cannot be combined with --lora"):
        grpo.train(grpo.Config(model=str(tiny_dir), fsdp=True, lora=4, steps=1))
    with pytest.raises(SpkitError, match="launch with torchrun"):
        fsdp.shard(torch.nn.Linear(2, 2), None)


def grpo_start() -> Path:
    from spkit.models import resolve_model_path

    return Path(resolve_model_path("spkit-tiny"))


# ---- benchmarks/gpu_smoke.sh ----------------------------------------------------------------------------
_SMOKE = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_smoke.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real smoke test")
def test_gpu_smoke_without_cuda_is_one_line_and_exit_0(tmp_path):
    r = subprocess.run(["bash", str(_SMOKE), "spkit-tiny", str(tmp_path)], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0 and r.stdout.strip().splitlines() == [
        "gpu_smoke: no CUDA device here; skipped (SPKIT_SMOKE_DEVICE=cpu runs it on the CPU)"]
    assert not any(tmp_path.iterdir())  # nothing ran


@pytest.mark.slow  # three short runs of spkit-tiny: ~50 s CPU
def test_gpu_smoke_runs_its_three_jobs_and_prints_throughput_on_the_cpu(tmp_path):
    r = subprocess.run(["bash", str(_SMOKE), "spkit-tiny", str(tmp_path)], capture_output=True, text=True,
                       timeout=900, env={**os.environ, "PYTHON": sys.executable, "SPKIT_SMOKE_DEVICE": "cpu",
                                         "OMP_NUM_THREADS": "1", "SPKIT_NO_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    tail = r.stdout.strip().splitlines()[-3:]
    assert tail[0].startswith("spiral: 3 steps, ") and "rollout tokens/s" in tail[0]
    assert tail[1].startswith("grpo: 3 steps, ") and tail[1].endswith(" s/step")
    assert tail[2].startswith("eval: 200 samples in ")
    assert (tmp_path / "grpo" / "final" / "model.safetensors").exists()
