"""A fused forward pass for Llama-family decoders: the same weights and the same math as the
model's own forward, with less work per step. `Sampler` uses it automatically when it applies.

Which models: `FusedLlamaEngine.maybe(model)` returns an engine only for an unwrapped model whose
`config.model_type` is llama, qwen2, qwen3 or mistral (without a sliding window), with full
attention in every layer, plain `nn.Linear` projections (q/k/v biases as in Qwen2 and Qwen3's
per-head q/k norms are handled; o/gate/down have no bias) and the model's own rotary module
(so any RoPE scaling is reproduced). Anything else — other architectures, peft/LoRA wrappers,
quantized linears — gets None, and `Sampler` runs the model's forward instead
(`spkit.generation.HFEngine`). `Sampler(fast=False)` forces that path.

Why it is faster (CPU, rollout batch sizes, where a decode step costs the weight matmuls plus
reading every row's keys/values):

* fewer, larger matmuls: q, k and v come from one matmul, gate and up from another, and there is
  no per-module Python overhead;
* the cache is written in place into a buffer grown by doubling (log T copies), where
  `DynamicCache` concatenates, i.e. copies the whole cache, at every step;
* the shared prompt prefix's keys/values are kept once, not once per row, and a decode step
  attends to them with one matmul for all rows; prefix and own-token scores share one softmax;
* attention reads the whole contiguous buffer with unwritten columns masked, which CPU matmuls
  run faster than a strided slice (that bmm would copy);
* prefill runs the linear layers on the packed real tokens of the prompts only (no padding).

`torch.compile` was measured on the fused step and does not pay on CPU (a minute of
compilation, then slower steps), so it is not used. tests/test_generation.py checks that greedy
decoding equals `model.generate` and that log-probs equal a fresh forward, for Llama, Qwen2
(grouped-query attention, biases) and Qwen3 (q/k norms).

Shapes: B rows, U unique prompt suffixes (see `spkit.sampling.Layout`), P shared-prefix
tokens, S0 longest suffix, C cache columns, Hq/Hkv query/key-value heads of size D,
G = Hq // Hkv query heads per kv head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from spkit.sampling import Layout

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_FAST_TYPES = ("llama", "qwen2", "qwen3", "mistral")


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as Llama computes it (in float32, weight applied in the input dtype)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, rotate-half convention. x: (N, heads, D); cos/sin: (N, 1, D)."""
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


@dataclass
class _Layer:
    """One decoder layer's weights, fused where that saves matmul calls."""

    ln1: torch.Tensor
    ln2: torch.Tensor
    w_qkv: torch.Tensor  # (Hq*D + 2*Hkv*D, H)
    b_qkv: torch.Tensor | None
    w_o: torch.Tensor  # (H, Hq*D)
    w_gu: torch.Tensor  # (2*I, H)
    w_down: torch.Tensor  # (H, I)
    q_norm: torch.Tensor | None  # (D,) Qwen3 per-head norms
    k_norm: torch.Tensor | None


class FusedLlamaEngine:
    """The fused forward of one `Sampler.generate` call (implements `spkit.generation.Engine`).

    Cache layout: the shared prefix's keys/values once per layer, (Hkv, P, D), and a per-row
    buffer (B, Hkv, C, D) for suffix + generated tokens, written in place and grown by
    doubling C (no per-step concatenation). A decode step attends to the prefix with one matmul
    for all rows and to each row's own tokens with a batched matmul; the two score blocks
    share one softmax. Prefill runs the linear layers on packed real tokens only.
    `Sampler` builds a new engine at every `generate` call, which reads (and fuses) the
    model's current weights, so training updates are seen.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        cfg, base = model.config, model.model
        self.model = model
        self.Hq, self.Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
        attn0 = base.layers[0].self_attn
        self.D = getattr(attn0, "head_dim", cfg.hidden_size // self.Hq)
        self.scale = getattr(attn0, "scaling", self.D**-0.5)
        self.eps = getattr(base.norm, "variance_epsilon", getattr(base.norm, "eps", 1e-6))
        self.act = base.layers[0].mlp.act_fn
        self.rotary = base.rotary_emb
        self.embed = base.embed_tokens.weight
        self.norm = base.norm.weight
        self.lm_head = model.lm_head.weight
        self.layers = [self._fuse(layer) for layer in base.layers]
        self.dtype, self.device = self.embed.dtype, self.embed.device

    @classmethod
    def maybe(cls, model) -> FusedLlamaEngine | None:
        """The engine if `model` is a plain (unwrapped) Llama-family model, else None."""
        cfg = getattr(model, "config", None)
        if getattr(cfg, "model_type", None) not in _FAST_TYPES:
            return None
        if cfg.model_type == "mistral" and getattr(cfg, "sliding_window", None):
            return None
        if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
            return None
        base = getattr(model, "model", None)
        linear = torch.nn.Linear
        try:
            ok = type(model.lm_head) is linear and hasattr(base, "rotary_emb")
            for layer in base.layers:
                a, m = layer.self_attn, layer.mlp
                mods = [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj]
                ok &= all(type(x) is linear for x in mods)
                ok &= a.o_proj.bias is None and m.gate_proj.bias is None and m.down_proj.bias is None
        except AttributeError:
            return None
        return cls(model) if ok else None

    def _fuse(self, layer) -> _Layer:
        a, m = layer.self_attn, layer.mlp
        biases = [a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]
        b_qkv = None
        if any(b is not None for b in biases):
            ws = [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]
            b_qkv = torch.cat([b if b is not None else w.new_zeros(w.shape[0])
                               for b, w in zip(biases, ws, strict=True)])
        qn, kn = getattr(a, "q_norm", None), getattr(a, "k_norm", None)
        return _Layer(
            ln1=layer.input_layernorm.weight, ln2=layer.post_attention_layernorm.weight,
            w_qkv=torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), b_qkv=b_qkv,
            w_o=a.o_proj.weight, w_gu=torch.cat([m.gate_proj.weight, m.up_proj.weight]),
            w_down=m.down_proj.weight,
            q_norm=qn.weight if qn is not None else None,
            k_norm=kn.weight if kn is not None else None,
        )

    # -- shared pieces --
    def _qkv(self, L: _Layer, x: torch.Tensor):
        """x: (N, H) packed tokens -> q (N, Hq, D), k, v (N, Hkv, D), rotated for the
        positions last given to `_set_positions`."""
        Hq, Hkv, D = self.Hq, self.Hkv, self.D
        qkv = F.linear(_rms(x, L.ln1, self.eps), L.w_qkv, L.b_qkv).view(-1, Hq + 2 * Hkv, D)
        qk, v = qkv[:, : Hq + Hkv], qkv[:, Hq + Hkv:]
        if L.q_norm is not None:
            qk = torch.cat([_rms(qk[:, :Hq], L.q_norm, self.eps),
                            _rms(qk[:, Hq:], L.k_norm, self.eps)], dim=1)
        cos, sin = self._cos_sin
        qk = _rope(qk, cos, sin)
        return qk[:, :Hq], qk[:, Hq:], v

    def _set_positions(self, pos: torch.Tensor) -> None:
        """cos/sin for positions pos (N,), from the model's own rotary module (any scaling)."""
        cos, sin = self.rotary(self.embed[:1][None], pos[None])  # (1, N, D) each
        self._cos_sin = (cos[0, :, None, :].to(self.dtype), sin[0, :, None, :].to(self.dtype))

    def _mlp(self, L: _Layer, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(_rms(x, L.ln2, self.eps), L.w_gu).chunk(2, dim=-1)
        return F.linear(self.act(gate) * up, L.w_down)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(_rms(x, self.norm, self.eps), self.lm_head)

    # -- prefill --
    def prefill(self, layout: Layout, max_new_tokens: int) -> torch.Tensor:
        """Run the prompts, fill the cache; return last-position logits per row (B, V)."""
        dev, Hkv, D = self.device, self.Hkv, self.D
        P = len(layout.prefix)
        self.P = P
        self.k_pre: list[torch.Tensor] = []
        self.v_pre: list[torch.Tensor] = []
        if P:
            self._prefill_prefix(torch.tensor(layout.prefix, device=dev))
        U, S0 = len(layout.suffixes), max(len(s) for s in layout.suffixes)
        lens = torch.tensor([len(s) for s in layout.suffixes], device=dev)
        valid = torch.arange(S0, device=dev)[None] >= (S0 - lens)[:, None]  # (U, S0) left pad
        flat = valid.flatten().nonzero().squeeze(1)  # packed token -> padded slot
        ids = torch.tensor([t for s in layout.suffixes for t in s], device=dev)
        pos = P + (valid.long().cumsum(1) - 1).flatten()[flat]
        cap = S0 + max_new_tokens
        self.max_cap = cap
        cap0 = min(cap, S0 + 16)  # the cache grows by doubling (see `_grow`)
        self.k = [torch.zeros(U, Hkv, cap0, D, dtype=self.dtype, device=dev) for _ in self.layers]
        self.v = [torch.zeros_like(k) for k in self.k]
        # keys/values of the prefix (all True) then the suffix: causal and not padding
        causal = torch.ones(S0, S0, dtype=torch.bool, device=dev).tril()
        mask = causal[None] & valid[:, None, :]  # (U, S0, S0)
        mask |= torch.eye(S0, dtype=torch.bool, device=dev)[None]  # pad queries: no empty row
        mask = torch.cat([mask.new_ones(U, S0, P), mask], dim=2)[:, None]  # (U, 1, S0, P+S0)
        x = self.embed[ids]  # (N, H)
        self._set_positions(pos)
        for i, L in enumerate(self.layers):
            q, k, v = self._qkv(L, x)
            qp, kp, vp = (self._scatter(t, flat, U, S0) for t in (q, k, v))  # (U, h, S0, D)
            self.k[i][:, :, :S0], self.v[i][:, :, :S0] = kp, vp
            if P:
                kp = torch.cat([self.k_pre[i].expand(U, -1, -1, -1), kp], dim=2)
                vp = torch.cat([self.v_pre[i].expand(U, -1, -1, -1), vp], dim=2)
            o = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask, scale=self.scale,
                                               enable_gqa=self.Hq != Hkv)  # (U, Hq, S0, D)
            o = o.transpose(1, 2).reshape(U * S0, -1)[flat]  # (N, Hq*D)
            x = x + F.linear(o, L.w_o)
            x = x + self._mlp(L, x)
        last = (lens.cumsum(0) - 1)  # last packed token of each suffix
        logits = self._logits(x[last])  # (U, V)
        rows = torch.tensor(layout.row_to_suffix, device=dev)
        if len(rows) != U or not torch.equal(rows, torch.arange(U, device=dev)):
            self.k = [k.index_select(0, rows) for k in self.k]
            self.v = [v.index_select(0, rows) for v in self.v]
            valid, logits = valid[rows], logits[rows]
        self.bias = torch.zeros(len(rows), 1, 1, cap, dtype=self.dtype, device=dev)
        self.bias[:, 0, 0, :S0].masked_fill_(~valid, float("-inf"))  # (B, 1, 1, cap)
        self.bias[:, 0, 0, S0:] = float("-inf")  # columns not written yet
        self.cur = S0  # next column to write (same for all rows)
        self.next_pos = P + lens[rows]  # (B,)
        return logits

    def _scatter(self, t: torch.Tensor, flat: torch.Tensor, U: int, S0: int) -> torch.Tensor:
        """Packed (N, h, D) -> left-padded (U, h, S0, D)."""
        out = t.new_zeros(U * S0, t.shape[1], t.shape[2])
        out[flat] = t
        return out.view(U, S0, t.shape[1], t.shape[2]).transpose(1, 2)

    def _prefill_prefix(self, ids: torch.Tensor) -> None:
        P = ids.shape[0]
        pos = torch.arange(P, device=self.device)
        x = self.embed[ids]
        self._set_positions(pos)
        for L in self.layers:
            q, k, v = self._qkv(L, x)
            q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))  # (1, h, P, D)
            self.k_pre.append(k[0].contiguous())
            self.v_pre.append(v[0].contiguous())
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale,
                                               enable_gqa=self.Hq != self.Hkv)
            x = x + F.linear(o[0].transpose(0, 1).reshape(P, -1), L.w_o)
            x = x + self._mlp(L, x)

    # -- decode --
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row (b live rows); return the next logits (b, V)."""
        b, Hq, Hkv, D, P = len(tokens), self.Hq, self.Hkv, self.D, self.P
        G = Hq // Hkv
        col = self.cur  # the cache column this step writes
        x = self.embed[tokens]  # (b, H)
        self._set_positions(self.next_pos)
        if col == self.k[0].shape[2]:
            self._grow()
        self.bias[:, 0, 0, col] = 0.0
        n, C = b * Hkv, self.k[0].shape[2]
        bias = self.bias[:, :, :, :C]  # (b, 1, 1, C)
        for i, L in enumerate(self.layers):
            q, k, v = self._qkv(L, x)
            K, V = self.k[i], self.v[i]  # (b, Hkv, C, D)
            K[:, :, col], V[:, :, col] = k, v
            # attend over the whole (contiguous) buffer; unwritten columns are masked. On CPU
            # this is faster than a strided [:col+1] view, which bmm would copy.
            Kr, Vr = K.view(n, C, D), V.view(n, C, D)
            q = (q * self.scale).view(n, G, D)
            s = torch.bmm(q, Kr.transpose(1, 2)).view(b, Hkv, G, C) + bias
            if P:  # the shared prefix: one matmul per kv-head for all rows
                qh = q.view(b, Hkv, G, D).transpose(0, 1).reshape(Hkv, b * G, D)
                sp = torch.bmm(qh, self.k_pre[i].transpose(1, 2))  # (Hkv, b*G, P)
                s = torch.cat([sp.view(Hkv, b, G, P).transpose(0, 1), s], dim=-1)
            p = torch.softmax(s.float(), dim=-1).to(self.dtype)  # (b, Hkv, G, P+C)
            o = torch.bmm(p[..., P:].reshape(n, G, C), Vr).view(b, Hkv, G, D)
            if P:
                pp = p[..., :P].transpose(0, 1).reshape(Hkv, b * G, P)
                o = o + torch.bmm(pp, self.v_pre[i]).view(Hkv, b, G, D).transpose(0, 1)
            x = x + F.linear(o.reshape(b, Hq * D), L.w_o)
            x = x + self._mlp(L, x)
        self.cur += 1
        self.next_pos = self.next_pos + 1
        return self._logits(x)

    def _grow(self) -> None:
        """Double the cache's columns (at most to prompt + max_new_tokens): log T copies."""
        old = self.k[0].shape[2]
        new = min(self.max_cap, 2 * old)
        for buf in (self.k, self.v):
            for i, t in enumerate(buf):
                buf[i] = F.pad(t, (0, 0, 0, new - old))

    def select(self, rows: torch.Tensor) -> None:
        """Keep only these rows (finished rows leave the batch)."""
        self.k = [k.index_select(0, rows) for k in self.k]
        self.v = [v.index_select(0, rows) for v in self.v]
        self.bias, self.next_pos = self.bias[rows], self.next_pos[rows]
