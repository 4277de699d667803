"""Load any causal LM the same way: the embedded `spkit-tiny`, a local directory, or a hub id.

    model, tok = load_model("spkit-tiny")            # ships in assets/, works offline
    model, tok = load_model("runs/spiral/final")     # any save_pretrained directory
    model, tok = load_model("Qwen/Qwen3-0.6B", dtype="bfloat16", device="cuda")

Everything returned is plain `transformers`: checkpoints written by spkit load in transformers,
lm-eval and vLLM without importing spkit. `trust_remote_code` is off unless asked for.
Problems the user can fix (missing path, corrupt weights, offline hub) raise `SpkitError` with
one line that names the cause.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from spkit.errors import SpkitError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ROOT = Path(__file__).resolve().parents[1]
#: Where the embedded assets live (override with $SPKIT_ASSETS for a non-editable install).
ASSETS = Path(os.environ.get("SPKIT_ASSETS", ROOT / "assets"))
TINY = "spkit-tiny"


def resolve_model_path(name_or_path: str | os.PathLike) -> str:
    """Map "spkit-tiny" to its directory; keep local paths and hub ids as they are."""
    name = str(name_or_path)
    if name == TINY:
        path = ASSETS / "models" / TINY
        if not (path / "config.json").exists():
            raise SpkitError(
                f"embedded model missing at {path}; run `spkit pretrain --out {path}` "
                "or set SPKIT_ASSETS to the repository's assets/ directory"
            )
        return str(path)
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").exists():
            raise SpkitError(f"{p} is not a save_pretrained model directory (no config.json)")
        return str(p)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") != 1
    if looks_local:
        raise SpkitError(f"model {name!r} not found: not a directory and not a hub id (org/name)")
    return name  # a hub id: transformers resolves it (cache, or download where reachable)


def pick_device(device: str | None = None) -> torch.device:
    """cuda → mps → cpu, unless the caller names one."""
    import torch

    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float32 on CPU (exact tests, fast enough for small models); bf16 on GPUs that have it."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise SpkitError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer alone (cheap; used by evals and by the corpus builder)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise SpkitError(_explain_load_error(path, e)) from None
    if tok.pad_token is None:  # batched generation needs a pad token; EOS is the usual choice
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name_or_path: str | os.PathLike = TINY,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    lora: dict | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return `(model, tokenizer)` in eval mode on the chosen device.

    `lora` (optional, needs the `[lora]` extra) wraps the model with peft LoRA adapters, e.g.
    ``{"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}``.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    dev = pick_device(device)
    tok = load_tokenizer(path, trust_remote_code=trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=pick_dtype(dtype, dev), trust_remote_code=trust_remote_code
        )
    except Exception as e:  # safetensors, json, torch and hub errors all mean "cannot load"
        raise SpkitError(_explain_load_error(path, e)) from None
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    model.to(dev).eval()
    if lora:
        model = _wrap_lora(model, lora)
    return model, tok


def _wrap_lora(model: PreTrainedModel, lora: dict) -> PreTrainedModel:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise SpkitError("LoRA needs the peft package: pip install 'spkit[lora]'") from None
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))


def _explain_load_error(path: str, e: Exception) -> str:
    """Turn the many ways loading fails into one actionable line."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if Path(path).is_dir():
        weights = [f.name for f in Path(path).glob("*.safetensors")]
        if not weights and not list(Path(path).glob("*.bin")):
            return f"no weights file (*.safetensors) in {path}"
        return f"could not load the checkpoint in {path} (corrupt or incomplete weights?): {msg}"
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in msg.lower() or "connect" in msg.lower():
        return (f"model {path!r} is not in the local cache and the hub is unreachable (offline); "
                "download it elsewhere and pass its local directory to --model")
    return f"could not load model {path!r}: {msg}"
