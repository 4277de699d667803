"""Step-labelled solutions in ProcessBench's exact format, with errors injected at known steps.

A record has ProcessBench's schema (``Qwen/ProcessBench``)::

    {"id": "arith_3-7", "generator": "spkit-arith", "problem": "Mia has 3 apples. ...",
     "steps": ["3 + 4 = 7", "7 - 2 = 6", "6 * 2 = 12\\n#### 12"],
     "final_answer_correct": false, "label": 1}

``label`` is the index of the earliest wrong step (0-based) or -1 when every step is right.
The steps are the lines of a ``spkit.tasks.arithmetic`` answer (the last step also carries
the ``#### n`` line, as ProcessBench's last paragraph carries the final answer). Half of the
records (``error_rate``, spread evenly so every prefix of the list has that share) get one
injected error at a uniformly chosen step:

* ``slip`` (3 in 4): the step's result is off by 1..3 (``7 - 2 = 6``);
* ``operand`` (1 in 4): a number copied wrongly from the question, computed correctly
  (``7 - 3 = 4`` when the question said "gives away 2").

Later steps continue correctly from the wrong value (as a real solver would), so the label is
the first wrong step and the final answer is usually wrong too. Where carrying on is not
possible (an exact division no longer divides, a subtraction would go negative) the later
step becomes an addition of the same number; that step is also wrong, which leaves the label
(the *earliest* error) unchanged.

Subsets follow difficulty: ``arith_2``, ``arith_3``, ``arith_4`` (steps per problem), the
analogue of ProcessBench's gsm8k/math/olympiadbench/omnimath. Problems come from the
arithmetic test split (``split_of(question) == "test"``), never from the pretraining corpus.

``critic_prompt(record)`` is ProcessBench's critique template; the critic answers with the
index in ``\\boxed{}`` and ``extract_index`` reads the last one (unparsable -> None = wrong).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence

from spkit.tasks import arithmetic

SUBSETS = {"arith_2": 2, "arith_3": 3, "arith_4": 4}

# ProcessBench's critique template (QwenLM/ProcessBench, code/templates/critique_template.txt).
CRITIC_TEMPLATE = (
    "The following is a math problem and a solution (split into paragraphs, enclosed with "
    "tags and indexed from 0):\n\n[Math Problem]\n\n{problem}\n\n[Solution]\n\n"
    "{tagged_response}\n\nYour task is to review and critique the solution paragraph by "
    "paragraph. Once you identify an error in a paragraph, return the index of the paragraph "
    "where the earliest error occurs. Otherwise, return the index of -1 (which typically "
    'denotes "not found").\n\nPlease put your final answer (i.e., the index) in \\boxed{{}}.'
)

_LINE = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)$")


def parse_steps(answer: str) -> list[tuple[int, str, int, int]]:
    """The (a, op, b, c) steps of a `spkit.tasks.arithmetic` answer ("a op b = c" lines, then "#### n")."""
    body = answer.split("\n#### ")[0]
    out = []
    for line in body.split("\n"):
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"not a plain arithmetic step: {line!r}")
        out.append((int(m[1]), m[2], int(m[3]), int(m[4])))
    return out


def carry_on(a: int, op: str, b: int) -> tuple[str, int, int]:
    """Apply ``op b`` to a (possibly wrong) running value, falling back to ``+ b``: (op, b, result)."""
    if (op == "/" and a % b) or (op == "-" and a - b < 0):
        op = "+"
    return op, b, {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]


def inject_error(
    lines: list[tuple[int, str, int, int]], at: int, kind: str, rng: random.Random
) -> list[tuple[int, str, int, int]]:
    """The same chain with one error at step ``at`` and correct arithmetic afterwards."""
    a, op, b, c = lines[at]
    choices = [x for x in range(max(1, b - 3), b + 4) if x != b]
    if op == "/":
        choices = [x for x in (2, 3, 4, 5) if x != b and a % x == 0]
    elif op == "-":
        choices = [x for x in choices if x <= a]
    if kind == "operand" and choices:  # the right operation on a miscopied number
        b = rng.choice(choices)
        c = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
    else:  # slip (or no room for a miscopied operand): the result is off by 1..3
        c = c + rng.choice([d for d in (-3, -2, -1, 1, 2, 3) if c + d >= 0])
    return replace_step(lines, at, (a, op, b, c))


def replace_step(lines: list[tuple[int, str, int, int]], at: int, step: tuple[int, str, int, int]
                 ) -> list[tuple[int, str, int, int]]:
    """The chain with step ``at`` replaced by ``step`` and every later step carried on correctly
    from its result (`carry_on`), as a solver that trusts the replaced step would go on."""
    out = [*lines[:at], step]
    for _, op2, b2, _ in lines[at + 1 :]:
        op2, b2, c2 = carry_on(out[-1][3], op2, b2)
        out.append((out[-1][3], op2, b2, c2))
    return out


def render_steps(lines: list[tuple[int, str, int, int]]) -> list[str]:
    """ProcessBench paragraphs of a chain: one "a op b = c" per step, the last with "#### c"."""
    steps = [f"{a} {op} {b} = {c}" for a, op, b, c in lines]
    steps[-1] += f"\n#### {lines[-1][3]}"
    return steps


def first_wrong(good: list, bad: list) -> int:
    """Index of the first step where ``bad`` departs from ``good`` (-1: none)."""
    return next((i for i, (g, x) in enumerate(zip(good, bad, strict=True)) if g != x), -1)


def generate(
    n: int, seed: int, subset: str = "arith_3", error_rate: float = 0.5, split: str = "test",
    exclude_dev: bool = False,
) -> list[dict]:
    """``n`` ProcessBench-format records for one subset (same seed -> same list).

    ``split`` picks the arithmetic split the problems come from: ``"test"`` for the
    ``spkit_steps`` eval, ``"train"`` for pretraining corpora (never overlapping), ``"dev"``
    (a hash bucket of train that no RL trainer draws) for choosing a trainer's settings;
    ``exclude_dev`` drops that bucket from ``"train"`` (what a trainer's own records use).
    """
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; choose from {sorted(SUBSETS)}")
    k = SUBSETS[subset]
    if split not in ("train", "test", "dev"):
        raise ValueError(f"split must be 'train', 'test' or 'dev', not {split!r}")
    rng = random.Random(f"spkit-steps-{subset}-{split}-{seed}")
    problems = arithmetic.generate(n, seed=seed * 1000 + k, steps=k, split=split, exclude_dev=exclude_dev)
    out = []
    for i, prob in enumerate(problems):
        good = parse_steps(prob["answer"])
        lines = good
        if int((i + 1) * error_rate) > int(i * error_rate):  # evenly spread: any prefix
            # (e.g. an eval run with --limit) has the same share of erroneous items
            kind = "slip" if rng.random() < 0.75 else "operand"
            lines = inject_error(good, rng.randrange(k), kind, rng)
        out.append({
            "id": f"{subset}-{i}" if split == "test" else f"{split}-{subset}-{i}",
            "generator": "spkit-arith",
            "problem": prob["question"],
            "steps": render_steps(lines),
            "final_answer_correct": lines[-1][3] == good[-1][3],
            "label": first_wrong(good, lines),
        })
    return out


def critic_prompt(record: dict) -> str:
    """ProcessBench's critique prompt for one record (paragraphs tagged from 0)."""
    tagged = "\n\n".join(
        f"<paragraph_{i}>\n{step}\n</paragraph_{i}>" for i, step in enumerate(record["steps"])
    )
    return CRITIC_TEMPLATE.format(problem=record["problem"], tagged_response=tagged)


def reference_critique(record: dict) -> str:
    """A short correct critic answer (for the pretraining corpus): the label, boxed."""
    return f" \\boxed{{{record['label']}}}"


def recheck_critique(record: dict, numbers: bool = True) -> tuple[str, int]:
    """A checker's critique of a record and its verdict: paragraph by paragraph, the step's own
    arithmetic redone ("a op b" from the paragraph) and compared with the result it writes,
    " 19 ok, 16 ok, 30 no. \\boxed{2}", stopping at the first mismatch (the verdict; -1 if none);
    with ``numbers=False`` only the per-step verdicts, " good, good, no. \\boxed{2}" (one token
    each). Short enough for `spkit_steps`' 24 new tokens. It cannot see a miscopied operand (an
    ``operand`` error computes correctly), so its verdict is the label only on some records:
    `verified_critique` keeps those."""
    parts, verdict = [], -1
    for i, para in enumerate(record["steps"]):
        m = _LINE.match(para.split("\n")[0])
        if not m:
            raise ValueError(f"not a plain arithmetic step: {para!r}")
        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        if op == "/":
            redo = f"{a // b}" if b and a % b == 0 else "?"  # no whole quotient: wrong whatever it writes
        else:
            redo = str({"+": a + b, "-": a - b, "*": a * b}[op])
        ok = redo == str(c)
        parts.append(f"{redo} {'ok' if ok else 'no'}" if numbers else ("good" if ok else "no"))
        if not ok:
            verdict = i
            break
    return " " + ", ".join(parts) + f". \\boxed{{{verdict}}}", verdict


def verified_critique(record: dict, numbers: bool = True) -> str | None:
    """`recheck_critique` when its verdict is the record's label (a verified critique, as SPC's
    seed critic is trained only on critiques whose verdict matches the human label), else None."""
    text, verdict = recheck_critique(record, numbers)
    return text if verdict == record["label"] else None


def document(record: dict) -> str:
    """The pretraining text of one record: critic prompt + the correct boxed index."""
    return critic_prompt(record) + reference_critique(record)


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def extract_index(text: str) -> int | None:
    """The critic's predicted step index (int of the last ``\\boxed{}``), None if unparsable."""
    inner = last_boxed(text)
    if inner is None:
        return None
    try:
        return int(inner.strip())
    except ValueError:
        return None


def majority_vote(critiques: Sequence[str]) -> int | None:
    """Which of several sampled critiques carries ProcessBench's majority answer (its position).

    ProcessBench's voting mode (QwenLM/ProcessBench, ``code/run_eval.py --use_voting``, 8
    samples): every critique's answer is the stripped text of its last ``\\boxed{}``;
    critiques without one cast no vote; the answer given most often wins, a tie going to the
    answer sampled first (``Counter.most_common``); the winner is then read as an int, so a
    winning non-integer answer (``\\boxed{paragraph 2}``) leaves the item unparsable. Returns
    the position of the first critique that gave the winning answer (None: no critique voted),
    so `voted_index` reads the same answer from it. (`last_boxed` allows nested braces where
    the reference's regex stops at the first ``}``; they differ only on non-integer answers.)
    """
    answers = [None if (box := last_boxed(t)) is None else box.strip() for t in critiques]
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    return answers.index(counts.most_common(1)[0][0])


def voted_index(critiques: Sequence[str]) -> int | None:
    """The step index ProcessBench's majority vote predicts (None: unparsable, i.e. wrong)."""
    pos = majority_vote(critiques)
    return None if pos is None else extract_index(critiques[pos])


# ---- ProcessBench's scores (spkit.evals.metrics re-exports them; trainers score with them too)


def processbench_scores(labels: Sequence[int], preds: Sequence[int | None]) -> dict[str, float]:
    """ProcessBench's three numbers for one subset.

    ``labels[i]`` is the earliest wrong step (-1: all correct), ``preds[i]`` the critic's
    index or None when unparsable (wrong either way). An empty class gives NaN for its
    accuracy (and F1), as the benchmark's own script would.
    """
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    err = [p == y for y, p in zip(labels, preds, strict=True) if y != -1]
    cor = [p == -1 for y, p in zip(labels, preds, strict=True) if y == -1]
    acc_error = sum(err) / len(err) if err else math.nan
    acc_correct = sum(cor) / len(cor) if cor else math.nan
    return {"acc_error": acc_error, "acc_correct": acc_correct,
            "f1": harmonic_mean(acc_error, acc_correct)}


def harmonic_mean(a: float, b: float) -> float:
    """2ab/(a+b); 0 when both are 0; NaN if either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)
