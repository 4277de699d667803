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

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
                f"embedded model missing at {path}; run `spkit pretrain --export {path}` "
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
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise SpkitError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
        mps = getattr(torch.backends, "mps", None)
        if (dev.type == "cuda" and not torch.cuda.is_available()) or (
                dev.type == "mps" and not (mps and mps.is_available())):
            raise SpkitError(f"device {device!r} is not available on this machine; "
                             "use cpu (or leave the device out to pick one automatically)")
        return dev
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
    check_tokenizer_files(path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - tokenizers, json and hub errors all mean "cannot load"
        raise SpkitError(_explain_load_error(path, e, what="tokenizer")) from None
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
    check_weights(path)
    tok = load_tokenizer(path, trust_remote_code=trust_remote_code)
    try:
        # safetensors only: a pickle (.bin) checkpoint never reaches torch.load
        with quiet_transformers_bars():
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=pick_dtype(dtype, dev), trust_remote_code=trust_remote_code,
                use_safetensors=True,
            )
    except Exception as e:  # safetensors, json, torch and hub errors all mean "cannot load"
        raise SpkitError(_explain_load_error(path, e)) from None
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    model.to(dev).eval()
    if lora:
        model = _wrap_lora(model, lora)
    return model, tok


@contextmanager
def quiet_transformers_bars() -> Iterator[None]:
    """Silence transformers' own progress bars ("Loading weights", "Writing model shards")
    for the duration.

    They finish in milliseconds for spkit's models, yet in a notebook each one is a widget that a
    static render (nbconvert, GitHub) shows as a stale ``0%`` bar. Only transformers' bars are
    affected: the hub's download bars (a real wait) are left alone. transformers >= 5 has a
    tqdm hook for this; older versions have no such bars to silence.
    """
    from transformers.utils import logging as hf_logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    if set_hook is None:
        yield
        return

    def disabled(factory: Any, args: tuple, kwargs: dict) -> Any:
        return factory(*args, **{**kwargs, "disable": True})

    previous = set_hook(disabled)
    try:
        yield
    finally:
        set_hook(previous)


def _wrap_lora(model: PreTrainedModel, lora: dict) -> PreTrainedModel:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise SpkitError("LoRA needs the peft package: pip install 'spkit[lora]'") from None
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))


# ---- LoRA in place, and the merged weights a plain transformers model loads -------------------
LORA_PREFIX = "base_model.model."  # how peft names a PeftModel's weights in adapter files


def add_lora(model: PreTrainedModel, r: int, alpha: float | None = None) -> list[torch.nn.Parameter]:
    """Put LoRA adapters (rank `r`, scale alpha/r with alpha = 2r by default) on every linear
    layer but the output head, in place: every reference to `model` (samplers, closures) sees
    the adapted model. Freezes the base weights; returns the adapters' parameters (the trainable
    ones). Needs the `[lora]` extra (peft)."""
    import torch

    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise SpkitError("--lora needs the peft package: pip install 'spkit[lora]'") from None
    out = model.get_output_embeddings()
    names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and m is not out})
    if not names:
        raise SpkitError(f"--lora: {type(model).__name__} has no linear layers to adapt")
    config = LoraConfig(r=r, lora_alpha=alpha if alpha is not None else 2 * r, target_modules=names,
                        lora_dropout=0.0, task_type="CAUSAL_LM")
    inject_adapter_in_model(config, model)
    model._spkit_lora_config = config  # what save_adapter writes as adapter_config.json
    trainable = []
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
        if "lora_" in n:
            trainable.append(p)
    return trainable


SHARDED_ATTR = "_spkit_sharded"  # a model sharded by spkit.run.fsdp: its `Sharded` (full copy: .inference)


def inference_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module sampling and policy tables run on: `model` itself, or, for a model sharded with
    FSDP2 (`--fsdp`, `spkit.run.fsdp`), its full copy, which follows every optimizer step. Every
    FSDP forward is a collective; sampling, whose forwards differ in number across ranks, must
    not run on the sharded model."""
    sharded = getattr(model, SHARDED_ATTR, None)
    return sharded.inference if sharded is not None else model


def is_sharded(model: torch.nn.Module) -> bool:
    """True for a model sharded with FSDP2 by `spkit.run.fsdp.shard`."""
    return getattr(model, SHARDED_ATTR, None) is not None


def has_lora(model: torch.nn.Module) -> bool:
    return any("lora_" in n for n, _ in model.named_parameters())


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights of `model` as the plain (adapter-free) architecture names them, each LoRA
    delta B·A·alpha/r added to its base weight; the model itself is not changed. Equal to
    `model.state_dict()` (detached) for a model without adapters. A `PeftModel` is unwrapped."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    sd = {k: v.detach() for k, v in inner.state_dict().items() if "lora_" not in k}
    for name, m in inner.named_modules():
        base = getattr(m, "base_layer", None)
        if base is None or not hasattr(m, "get_delta_weight"):
            continue
        w = base.weight.detach()
        for a in m.active_adapters:
            if a in getattr(m, "lora_A", {}):
                w = w + m.get_delta_weight(a).detach().to(w.dtype)
        sd.pop(f"{name}.base_layer.weight", None)
        sd[f"{name}.weight"] = w
    return {k.replace(".base_layer.", "."): v for k, v in sd.items()}


def save_merged(model: torch.nn.Module, tokenizer: Any, path: str | os.PathLike) -> None:
    """`save_pretrained` of the merged weights: a directory plain transformers, lm-eval and vLLM
    load without peft (`AutoModelForCausalLM.from_pretrained(path)`)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    with quiet_transformers_bars():
        if has_lora(model):
            inner.save_pretrained(path, state_dict=merged_state_dict(model), safe_serialization=True)
        else:
            inner.save_pretrained(path, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def save_adapter(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """The LoRA adapters of an `add_lora` model as peft writes them (adapter_config.json +
    adapter_model.safetensors): `PeftModel.from_pretrained(base, path)` loads them."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    model._spkit_lora_config.save_pretrained(str(p))
    sd = get_peft_model_state_dict(model)
    save_file({LORA_PREFIX + k: v.detach().contiguous() for k, v in sd.items()},
              str(p / "adapter_model.safetensors"))


# ---- checks of a local model directory (cheap: file names, JSON, safetensors headers)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.tiktoken")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
CONVERT_HINT = ("convert it once, in an environment you trust with the file: "
                "AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(DIR) writes "
                "model.safetensors")


def check_tokenizer_files(path: str | os.PathLike) -> None:
    """A local directory has tokenizer files, and its JSON ones parse (else one SpkitError)."""
    p = Path(path)
    if not p.is_dir():
        return  # a hub id: transformers resolves it
    _check_json(p / "config.json")  # AutoTokenizer reads it too
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise SpkitError(f"no tokenizer files in {p} (expected tokenizer.json or similar); "
                         "save the tokenizer next to the model with tokenizer.save_pretrained(DIR)")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        _check_json(p / name)


def _check_json(f: Path) -> None:
    if f.is_file():
        try:
            json.loads(f.read_bytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            why = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8"
            raise SpkitError(f"{f} is corrupt or truncated (not valid JSON: {why}); copy it "
                             "again from the original model") from None


def check_weights(path: str | os.PathLike) -> None:
    """A local directory has complete safetensors weights; pickle-only checkpoints are refused.

    Reads only file sizes and safetensors headers, so a truncated copy fails in milliseconds
    with the file's name, before any backend (spkit, lm-eval's hf, vLLM) loads it.
    """
    p = Path(path)
    if not p.is_dir():
        return
    _check_json(p / "config.json")
    files = sorted(p.glob("*.safetensors"))
    if not files:
        pickles = sorted(f.name for f in p.iterdir() if f.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise SpkitError(f"{p} has only pickle weights ({', '.join(pickles[:3])}); spkit loads "
                             f"safetensors only, since unpickling can run code. {CONVERT_HINT}")
        raise SpkitError(f"no weights file (*.safetensors) in {p}")
    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SpkitError(f"{index} is corrupt (no weight_map); copy the model again") from None
        missing = sorted(s for s in shards if not (p / s).is_file())
        if missing:
            raise SpkitError(f"{p} is incomplete: weight shard(s) {', '.join(missing[:3])} listed "
                             f"in {index.name} are missing")
    for f in files:
        _check_safetensors(f)


def _check_safetensors(f: Path) -> None:
    size = f.stat().st_size
    bad = f"{f} is corrupt or incomplete (not a valid safetensors file); copy or download it again"
    try:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if size < 8 or n > size - 8:
                raise SpkitError(bad)
            header = json.loads(fh.read(n).decode("utf-8"))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                  default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise SpkitError(bad) from None
    if 8 + n + end > size:
        raise SpkitError(f"{f} is incomplete (truncated: {size:,} of {8 + n + end:,} bytes); "
                         "copy or download it again")


def _explain_load_error(path: str, e: Exception, what: str = "model") -> str:
    """Turn the many ways loading fails into one actionable line."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if Path(path).is_dir():
        if what == "tokenizer":
            return f"could not load the tokenizer in {path} (corrupt or incomplete files?): {msg}"
        weights = [f.name for f in Path(path).glob("*.safetensors")]
        if not weights and not list(Path(path).glob("*.bin")):
            return f"no weights file (*.safetensors) in {path}"
        return f"could not load the checkpoint in {path} (corrupt or incomplete weights?): {msg}"
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in msg.lower() or "connect" in msg.lower():
        return (f"model {path!r} is not in the local cache and the hub is unreachable (offline); "
                "download it elsewhere and pass its local directory to --model")
    if what == "model" and "safetensors" in msg.lower():
        return (f"model {path!r} has no safetensors weights; spkit does not unpickle .bin "
                f"checkpoints: download it, then {CONVERT_HINT}")
    return f"could not load {what} {path!r}: {msg}"
