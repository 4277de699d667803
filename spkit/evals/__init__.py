"""spkit's evaluation suite on top of lm-eval.

* ``run``       — ``spkit eval``: lm-eval with the task YAMLs in ``evals/``, results/tables/plots
* ``report``    — ``spkit report``: compare runs (checkpoints) in one table and one plot
* ``data``      — ``spkit data prepare|check``: the local data layout and converters
* ``lm``        — the ``spkit`` lm-eval backend (spkit's Sampler; registered as "spkit")
* ``metrics``   — ProcessBench F1, MATH equivalence/normalised match, extractors
(NLTK's punkt_tab data for IFEval is written offline by ``spkit.tasks.nltk_data``.)
"""
