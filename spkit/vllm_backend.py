"""`Sampler(..., backend="vllm")`: the same `Completion`s, sampled by vLLM on a GPU.

Optional: needs the `[vllm]` extra (`pip install 'spkit[vllm]'`) and a CUDA machine. The
conversion from vLLM's outputs to `Completion` is plain Python and tested without vLLM.

Conventions carried over from spkit's own sampler:
* per-row seeds derived from `(seed, row)` by `spkit.sampling.row_seed`, as spkit's sampler does, so row i's sample does not depend on the rest of the batch (vLLM's per-request seed);
* `logprobs` = log-probs of the sampled tokens (`SamplingParams(logprobs=0)`); vLLM v1 reports
  them from the raw model outputs (its default `logprobs_mode="raw_logprobs"`), i.e. untempered,
  like spkit's sampler;
* finish_reason: vLLM's "stop" is split into "eos" (no stop string matched) and "stop".
"""

from __future__ import annotations

from typing import Any

from spkit.errors import SpkitError
from spkit.sampling import Completion, row_seed


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


class VLLMBackend:
    """Holds a `vllm.LLM`; `model` is one already, or a model name/path to load."""

    def __init__(self, model: Any, tokenizer: Any = None, **llm_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError:
            raise SpkitError(
                "backend='vllm' needs vLLM (GPU): pip install 'spkit[vllm]' — or use backend='hf'"
            ) from None
        if isinstance(model, vllm.LLM):
            self.llm = model
        else:
            name = model if isinstance(model, str) else getattr(model, "name_or_path", None)
            if not name:
                raise SpkitError("backend='vllm' needs a vllm.LLM or a model name/path")
            self.llm = vllm.LLM(model=name, seed=0, **llm_kwargs)

    def generate(self, prompts: list[str], params, seed: int) -> list:
        if not prompts:
            return []
        if params.max_new_tokens == 0:
            tok = self.llm.get_tokenizer()
            return [Completion(p, "", tok(p)["input_ids"], [], [], "length", []) for p in prompts]
        sps = [to_vllm_params(params, row_seed(seed, i)) for i in range(len(prompts))]
        outs = self.llm.generate(prompts, sps, use_tqdm=False)
        return [completion_from_vllm(p, o) for p, o in zip(prompts, outs, strict=True)]
