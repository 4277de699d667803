"""Verifiable synthetic tasks sized for spkit-tiny, in the exact schemas of real benchmarks.

* ``arithmetic``   — GSM8K-format multi-step word problems, difficulty = number of steps.
* ``instructions`` — IFEval-format prompts with a learnable subset of verifiable instructions.
* ``steps``        — ProcessBench-format step-labelled solutions with injected errors.

Each module has ``generate(n, seed, ...)`` (same seed -> same records) and a hash-based
``split_of`` (arithmetic, instructions) so that pretraining corpora (``split="train"``) never
contain an eval item (``split="test"``).
"""
