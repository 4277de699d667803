"""Sampler cross-checks against `model.generate` and a fresh forward pass."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from spkit.errors import SpkitError
from spkit.generation import Sampler
from spkit.logprobs import token_logprobs
from spkit.sampling import Completion, SamplingParams, plan_layout, sample_tokens
from spkit.testing import tiny_random_model

TINY_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "spkit-tiny"
RULES = "You are player 0 in Kuhn Poker. Legal moves: check, bet. Answer in \\boxed{}. "
PROMPTS = ["Your card: K.", "TicTacToe board:\n X | O | . ", "Question: Tom has 3 apples", "0"]
ENGINES = [False, None]  # model.forward + DynamicCache; auto (fused Llama engine)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return tiny_random_model(seed=1)


_REF_CACHE: dict = {}


def _generate_ref(model, tok, prompts, n):
    """Greedy `model.generate` continuations (cached: both engines compare to the same run)."""
    key = (id(model), tuple(prompts), n)
    if key not in _REF_CACHE:
        enc = tok(prompts, return_tensors="pt", padding=True)
        out = model.generate(**enc, do_sample=False, max_new_tokens=n)
        _REF_CACHE[key] = [out[i, enc.input_ids.shape[1]:].tolist() for i in range(len(prompts))]
    return _REF_CACHE[key]


def _models():
    yield "random"
    if (TINY_DIR / "config.json").exists():
        yield "spkit-tiny"


@pytest.fixture(scope="module", params=list(_models()))
def model_tok(request, tiny):
    if request.param == "random":
        return tiny
    from spkit.models import load_model

    return load_model("spkit-tiny")


@pytest.mark.parametrize("fast", ENGINES)
@pytest.mark.parametrize("prefix", ["", RULES])
def test_greedy_equals_generate(model_tok, fast, prefix):
    model, tok = model_tok
    prompts = [prefix + p for p in PROMPTS] + [prefix + PROMPTS[0]]  # duplicate row too
    outs = Sampler(model, tok, fast=fast).generate(
        prompts, SamplingParams(max_new_tokens=24, temperature=0, ignore_eos=False), seed=0)
    ref = _generate_ref(model, tok, prompts, 24)
    eos = tok.eos_token_id
    for o, r in zip(outs, ref, strict=True):
        if eos in r:  # generate pads after EOS; ours stops there
            r = r[: r.index(eos) + 1]
        assert o.token_ids == r
        assert o.finish_reason == ("eos" if r[-1] == eos else "length")


@pytest.mark.parametrize("fast", ENGINES)
def test_logprobs_match_fresh_forward(tiny, fast):
    model, tok = tiny
    prompts = [RULES + p for p in PROMPTS]
    s = Sampler(model, tok, fast=fast)
    for params in [SamplingParams(max_new_tokens=16, temperature=0.7, top_k=50),
                   SamplingParams(max_new_tokens=16, temperature=1.3)]:
        outs = s.generate(prompts, params, seed=3)
        ref = token_logprobs(model, [o.prompt_ids for o in outs], [o.token_ids for o in outs])
        for o, r in zip(outs, ref, strict=True):
            assert len(o.logprobs) == len(o.token_ids) == len(o.sampling_logprobs)
            assert torch.allclose(torch.tensor(o.logprobs), r, atol=1e-4)


@pytest.mark.parametrize("fast", ENGINES)
def test_same_seed_same_samples_and_row_independence(tiny, fast):
    model, tok = tiny
    s = Sampler(model, tok, fast=fast)
    p = SamplingParams(max_new_tokens=12)
    prompts = [RULES + x for x in PROMPTS]
    a = s.generate(prompts, p, seed=7)
    b = s.generate(prompts, p, seed=7)
    c = s.generate(prompts, p, seed=8)
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert [x.token_ids for x in a] != [x.token_ids for x in c]
    # row 0's sample depends on (seed, 0) and its prompt, not on the other rows
    alone = s.generate(prompts[:1], p, seed=7)
    assert alone[0].token_ids == a[0].token_ids
    # seed=None follows torch's global RNG
    torch.manual_seed(5)
    d = s.generate(prompts, p)
    torch.manual_seed(5)
    e = s.generate(prompts, p)
    assert [x.token_ids for x in d] == [x.token_ids for x in e]


@pytest.mark.parametrize("fast", ENGINES)
def test_row_seeds_make_a_row_independent_of_its_position(tiny, fast):
    """With ``row_seeds`` a row's sample follows its own seed wherever it sits in the batch (what
    lm-eval's repeated samples need to be the same on any data-parallel rank)."""
    from spkit.sampling import row_seed

    model, tok = tiny
    s = Sampler(model, tok, fast=fast)
    p = SamplingParams(max_new_tokens=12)
    prompts = [RULES + x for x in PROMPTS]
    seeds = [row_seed(3, f"doc{i}") for i in range(len(prompts))]
    a = s.generate(prompts, p, seed=7, row_seeds=seeds)
    back = s.generate(prompts[::-1], p, seed=99, row_seeds=seeds[::-1])  # the `seed` is unused
    assert [x.token_ids for x in a] == [x.token_ids for x in back][::-1]
    assert [x.token_ids for x in a] != [x.token_ids for x in s.generate(prompts, p, seed=7)]
    same = s.generate([prompts[0]] * 3, p, row_seeds=[seeds[0], seeds[1], seeds[0]])
    assert same[0].token_ids == same[2].token_ids == a[0].token_ids
    with pytest.raises(SpkitError, match="row seeds"):
        s.generate(prompts, p, row_seeds=seeds[:1])


def test_engines_agree_on_samples(tiny):
    model, tok = tiny
    prompts = [RULES + x for x in PROMPTS] * 2
    p = SamplingParams(max_new_tokens=20, temperature=0.9, top_p=0.95)
    a = Sampler(model, tok, fast=False).generate(prompts, p, seed=11)
    b = Sampler(model, tok).generate(prompts, p, seed=11, progress=True)
    c = Sampler(model, tok, share_prefix=False).generate(prompts, p, seed=11)
    assert [x.token_ids for x in a] == [x.token_ids for x in b] == [x.token_ids for x in c]
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-5)


@pytest.mark.parametrize("fast", ENGINES)
def test_top_k1_and_tiny_top_p_are_greedy(tiny, fast):
    model, tok = tiny
    s = Sampler(model, tok, fast=fast)
    greedy = s.generate(PROMPTS, SamplingParams(max_new_tokens=10, temperature=0), seed=0)
    for p in [SamplingParams(max_new_tokens=10, top_k=1, temperature=1.5),
              SamplingParams(max_new_tokens=10, top_p=1e-6, temperature=1.5)]:
        got = s.generate(PROMPTS, p, seed=1)
        assert [g.token_ids for g in got] == [g.token_ids for g in greedy]
        assert all(abs(x) < 1e-6 for g in got for x in g.sampling_logprobs)


def test_sample_tokens_respects_top_k_and_top_p():
    torch.manual_seed(0)
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]]).repeat(2000, 1)
    u = torch.rand(2000)
    tok, _ = sample_tokens(logits, SamplingParams(top_k=2), u)
    assert set(tok.tolist()) == {0, 1}
    probs = torch.softmax(logits[0], -1)  # 0.636, 0.234, 0.086, ...
    tok, slp = sample_tokens(logits, SamplingParams(top_p=0.8), u)
    assert set(tok.tolist()) == {0, 1}  # 0.636 < 0.8 <= 0.636 + 0.234
    kept = probs[:2] / probs[:2].sum()
    assert torch.allclose(slp[tok == 0][0].exp(), kept[0], atol=1e-6)
    freq0 = (tok == 0).float().mean().item()
    assert abs(freq0 - kept[0].item()) < 0.04
    tok, _ = sample_tokens(logits, SamplingParams(), u)  # plain sampling hits the tail too
    assert set(tok.tolist()) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("fast", ENGINES)
def test_stop_strings_cut_text_and_tokens(tiny, fast):
    model, tok = tiny
    s = Sampler(model, tok, fast=fast)
    free = s.generate(PROMPTS, SamplingParams(max_new_tokens=30, temperature=0), seed=0)
    # pick a stop string that occurs mid-way in the first completion
    text0 = free[0].text
    stop = text0[len(text0) // 2: len(text0) // 2 + 2]
    assert stop.strip()
    outs = s.generate(PROMPTS, SamplingParams(max_new_tokens=30, temperature=0, stop=(stop,)),
                      seed=0)
    o = outs[0]
    assert o.finish_reason == "stop"
    assert stop not in o.text and text0.startswith(o.text)
    full = tok.decode(o.token_ids, skip_special_tokens=True)
    assert full.startswith(o.text + stop)  # the stop-completing token is kept
    assert stop not in tok.decode(o.token_ids[:-1], skip_special_tokens=True)
    assert o.token_ids == free[0].token_ids[: len(o.token_ids)]
    assert len(o.logprobs) == len(o.token_ids)
    with_stop = s.generate(PROMPTS[:1], SamplingParams(
        max_new_tokens=30, temperature=0, stop=(stop,), include_stop=True), seed=0)[0]
    assert with_stop.text == o.text + stop
    for c in outs:  # every row's text is free of the stop string
        assert stop not in c.text


def test_edge_cases(tiny):
    model, tok = tiny
    s = Sampler(model, tok)
    assert s.generate([], SamplingParams()) == []
    outs = s.generate(["a", "b"], SamplingParams(max_new_tokens=0))
    assert [(o.text, o.token_ids, o.finish_reason) for o in outs] == [("", [], "length")] * 2
    one = s.generate([""], SamplingParams(max_new_tokens=3), seed=0)[0]
    assert one.prompt_ids == [tok.bos_token_id] and len(one.token_ids) == 3
    for bad in [dict(max_new_tokens=-1), dict(temperature=-1), dict(top_p=0), dict(top_k=-2)]:
        with pytest.raises(SpkitError):
            SamplingParams(**bad)
    with pytest.raises(SpkitError):
        Sampler(model, tok, backend="nope")
    with pytest.raises(SpkitError, match="strings"):
        s.generate([["a"]], SamplingParams())
    limit = model.config.max_position_embeddings
    with pytest.raises(SpkitError, match="positions"):
        s.generate(["a" * 5000], SamplingParams())
    # a row stops at the model's last position, as in vLLM
    long_ids = s.encode("0" * (limit - 5))
    short = s.generate(["0" * (limit - 5), "a"], SamplingParams(max_new_tokens=8), seed=0)
    assert len(short[0].token_ids) == limit - len(long_ids) and short[0].finish_reason == "length"
    assert len(short[1].token_ids) == 8
    assert isinstance(outs[0], Completion)


def test_eos_ends_row_and_is_kept(tiny):
    model, tok = tiny
    # make EOS the argmax by biasing the output layer, then check the stop bookkeeping
    model2, _ = tiny_random_model(seed=1)
    with torch.no_grad():
        model2.lm_head.weight[tok.eos_token_id] = model2.lm_head.weight[5] * 1.0
        model2.lm_head.weight[5] *= 0
    greedy = Sampler(model2, tok).generate(PROMPTS, SamplingParams(max_new_tokens=6, temperature=0))
    ref = _generate_ref(model2, tok, PROMPTS, 6)
    for g, r in zip(greedy, ref, strict=True):
        r = r[: r.index(tok.eos_token_id) + 1] if tok.eos_token_id in r else r
        assert g.token_ids == r
        if g.finish_reason == "eos":
            assert g.token_ids[-1] == tok.eos_token_id and "<|endoftext|>" not in g.text


def test_plan_layout_shares_prefix_and_dedups():
    lay = plan_layout([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4]])
    assert lay.prefix == [1, 2, 3] and lay.suffixes == [[4], [5]] and lay.row_to_suffix == [0, 1, 0]
    lay = plan_layout([[1, 2], [1, 2]])  # identical prompts keep one token to run
    assert lay.prefix == [1] and lay.suffixes == [[2]]
    lay = plan_layout([[1, 2], [3]], share_prefix=False)
    assert lay.prefix == [] and lay.suffixes == [[1, 2], [3]]


def test_cli_sample(tiny, monkeypatch, capsys):
    import spkit.generation as gen
    import spkit.models

    monkeypatch.setattr(spkit.models, "load_model", lambda name: tiny)
    p = argparse.ArgumentParser()
    gen.add_arguments(p)
    args = p.parse_args(["--prompt", "Your card: K.", "--n", "2", "--max-new-tokens", "5"])
    assert gen.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("--- [") == 2


def test_vllm_backend_errors_and_conversion(tiny):
    from types import SimpleNamespace as NS

    from spkit.vllm_backend import completion_from_vllm

    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(SpkitError, match="pip install"):
            Sampler(*tiny, backend="vllm")

    def out(reason, stop_reason):
        lp = [{5: NS(logprob=-0.5)}, {7: NS(logprob=-1.25)}]
        o = NS(text="ab", token_ids=[5, 7], logprobs=lp, finish_reason=reason,
               stop_reason=stop_reason)
        return NS(prompt_token_ids=[1, 2], outputs=[o])

    c = completion_from_vllm("p", out("stop", None))
    assert (c.token_ids, c.logprobs, c.finish_reason) == ([5, 7], [-0.5, -1.25], "eos")
    assert completion_from_vllm("p", out("stop", "}")).finish_reason == "stop"
    assert completion_from_vllm("p", out("length", None)).finish_reason == "length"
    bad = out("length", None)
    bad.outputs[0].logprobs = None
    with pytest.raises(SpkitError):
        completion_from_vllm("p", bad)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_fast_engine_gqa_bias_qknorm_architectures(tiny, arch):
    """Grouped-query attention (4 query heads per 2 kv heads), q/k/v biases (Qwen2) and
    per-head q/k norms (Qwen3) go through the fused engine and still match `generate`."""
    import transformers

    from spkit.engines.fused_llama import FusedLlamaEngine

    _, tok = tiny
    cls = {"qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
           "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM)}[arch]
    cfg = cls[0](vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 max_position_embeddings=256, tie_word_embeddings=True,
                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(3)
    model = cls[1](cfg).eval()
    with torch.no_grad():  # make biases and norms non-trivial so a mistake would show
        for p_name, p in model.named_parameters():
            if p_name.endswith(("bias", "norm.weight")):
                p.add_(torch.randn_like(p) * 0.3)
    assert FusedLlamaEngine.maybe(model) is not None
    prompts = [RULES + p for p in PROMPTS]
    for fast in ENGINES:
        outs = Sampler(model, tok, fast=fast).generate(
            prompts, SamplingParams(max_new_tokens=12, temperature=0))
        for o, r in zip(outs, _generate_ref(model, tok, prompts, 12), strict=True):
            r = r[: r.index(tok.eos_token_id) + 1] if tok.eos_token_id in r else r
            assert o.token_ids == r
    outs = Sampler(model, tok).generate(prompts, SamplingParams(max_new_tokens=12), seed=0)
    ref = token_logprobs(model, [o.prompt_ids for o in outs], [o.token_ids for o in outs])
    for o, r in zip(outs, ref, strict=True):
        assert torch.allclose(torch.tensor(o.logprobs), r, atol=1e-4)


def test_unsupported_models_use_the_generic_engine(tiny):
    from spkit.engines.fused_llama import FusedLlamaEngine
    from spkit.generation import Engine, HFEngine

    model, tok = tiny
    assert FusedLlamaEngine.maybe(torch.nn.Linear(2, 2)) is None
    with pytest.raises(SpkitError):
        Sampler(torch.nn.Linear(2, 2), tok, fast=True)._engine()
    assert isinstance(Sampler(model, tok, fast=False)._engine(), HFEngine)
    assert isinstance(HFEngine(model), Engine)
    assert isinstance(FusedLlamaEngine(model), Engine)  # the tiny model is a plain Llama
