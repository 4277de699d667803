"""Model-specific forward passes behind `spkit.generation.Engine` (prefill / decode / select).

`spkit.generation.Sampler` picks one of these when the model allows it and otherwise runs the
model's own forward (`spkit.generation.HFEngine`, exact for any causal LM).

* `fused_llama.FusedLlamaEngine`: Llama / Qwen2 / Qwen3 / Mistral-style models.
"""
