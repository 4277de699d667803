"""Multi-step arithmetic word problems in GSM8K's exact format, sized for a tiny model.

A record is ``{"question": str, "answer": str, "steps": int}``. ``question`` and ``answer``
are GSM8K's schema (so lm-eval's ``gsm8k`` prompt, filters and metric apply unchanged);
``steps`` is the difficulty level (number of arithmetic operations) and is ignored by
lm-eval. Example (2 steps)::

    question: "Mia has 3 apples. She buys 4 more apples. Then she gives away 2 apples.
               How many apples does Mia have now?"
    answer:   "3 + 4 = 7\\n7 - 2 = 5\\n#### 5"

Answer format (decided here, kept stable because spkit-tiny is pretrained on it):

* one line per step, ``a OP b = c`` with OP in ``+ - * /`` and single spaces, in order;
* no GSM8K ``<<a+b=c>>`` calculator annotations by default (they double the length of a
  line and a 1024-token model gains nothing from them); ``annotate=True`` adds them in
  GSM8K's style (``3 + 4 = <<3+4=7>>7``) for users who want the literal upstream look;
* a last line ``#### <int>``.

All intermediate values stay in 0..``MAX_VALUE`` and division is always exact, so every
answer is a small non-negative integer a tiny model can partly learn.

Held-out split: ``split_of(question)`` hashes the question text (SHA-256) and puts ~10 % of
all questions in ``"test"``. The pretraining corpus only uses ``generate(..., split="train")``
and the ``spkit_arith`` eval only ``split="test"``, so no eval question is ever seen in
training, whatever seeds either side uses.

Dev split: ``in_dev(question)`` puts another ~10 % of the *train* questions (a second hash
bucket) aside for choosing settings (B-STaR's temperature grid, any hyper-parameter search):
``generate(..., split="dev")`` draws only those, and ``exclude_dev=True`` (what the RL trainers
use) never does. Pretraining drew from all train questions, the dev bucket included; the problem
space is large enough that a dev problem was seen verbatim only by chance.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

MAX_VALUE = 99  # every intermediate value stays in 0..MAX_VALUE
TEST_FRACTION = 10  # 1 in TEST_FRACTION questions (by hash) belongs to the test split

NAMES = [
    ("Mia", "she"), ("Tom", "he"), ("Ana", "she"), ("Ben", "he"), ("Lea", "she"),
    ("Sam", "he"), ("Zoe", "she"), ("Max", "he"), ("Ivy", "she"), ("Leo", "he"),
]
ITEMS = ["apples", "books", "coins", "pens", "cards", "stamps", "shells", "marbles",
         "cookies", "stickers"]


@dataclass(frozen=True)
class Step:
    """One operation ``a op b = c`` applied to the running total ``a``."""

    a: int
    op: str
    b: int
    c: int

    def line(self, annotate: bool = False) -> str:
        if annotate:
            return f"{self.a} {self.op} {self.b} = <<{self.a}{self.op}{self.b}={self.c}>>{self.c}"
        return f"{self.a} {self.op} {self.b} = {self.c}"


def _apply(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]


def _pick_step(a: int, rng: random.Random) -> Step:
    """A random operation on ``a`` whose result stays a small non-negative integer.

    Addition and subtraction are three times as likely as ``*`` (by 2 or 3) and exact ``/``
    (by 2..5): a tiny model learns small sums first, and the levels stay mostly additive.
    """
    weights: dict[str, int] = {}
    if a + 1 <= MAX_VALUE:
        weights["+"] = 3
    if a >= 1:
        weights["-"] = 3
    if a >= 1 and 2 * a <= MAX_VALUE:
        weights["*"] = 1
    divisors = [d for d in range(2, 6) if a % d == 0 and a >= d]
    if divisors:
        weights["/"] = 1
    op = rng.choices(list(weights), weights=list(weights.values()))[0]
    if op == "+":
        b = rng.randint(1, min(20, MAX_VALUE - a))
    elif op == "-":
        b = rng.randint(1, min(20, a))
    elif op == "*":
        b = rng.randint(2, 3 if 3 * a <= MAX_VALUE else 2)
    else:
        b = rng.choice(divisors)
    return Step(a, op, b, _apply(a, op, b))


def _sentence(step: Step, pronoun: str, item: str, first: bool) -> str:
    """The English for one step (the running total is implicit)."""
    then = "" if first else "Then "
    p = pronoun if then else pronoun.capitalize()
    verbs = {
        "+": f"{p} buys {step.b} more {item}.",
        "-": f"{p} gives away {step.b} {item}.",
        "*": f"{p} ends up with {step.b} times as many {item}.",
        "/": f"{p} splits them into {step.b} equal groups and keeps one group.",
    }
    return then + verbs[step.op]


def make_problem(rng: random.Random, steps: int, annotate: bool = False) -> dict:
    """One problem with exactly ``steps`` operations (drawn from ``rng``)."""
    name, pronoun = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    start = rng.randint(2, 20)
    chain: list[Step] = []
    total = start
    for _ in range(steps):
        step = _pick_step(total, rng)
        chain.append(step)
        total = step.c
    sentences = [f"{name} has {start} {item}."]
    sentences += [_sentence(s, pronoun, item, i == 0) for i, s in enumerate(chain)]
    sentences.append(f"How many {item} does {name} have now?")
    answer = "\n".join([s.line(annotate) for s in chain] + [f"#### {total}"])
    return {"question": " ".join(sentences), "answer": answer, "steps": steps}


def split_of(question: str) -> str:
    """``"test"`` for ~1/TEST_FRACTION of questions (by SHA-256 of the text), else ``"train"``."""
    h = int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:4], "big")
    return "test" if h % TEST_FRACTION == 0 else "train"


def in_dev(question: str) -> bool:
    """True for the ~1/TEST_FRACTION of *train* questions set aside as the dev split (a hash
    bucket independent of ``split_of``'s)."""
    h = int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[4:8], "big")
    return split_of(question) == "train" and h % TEST_FRACTION == 0


def _in_split(question: str, split: str | None, exclude_dev: bool) -> bool:
    if exclude_dev and in_dev(question):
        return False
    if split == "dev":
        return in_dev(question)
    return split is None or split_of(question) == split


def generate(
    n: int,
    seed: int,
    steps: int | tuple[int, ...] | list[int] = (1, 2, 3, 4),
    split: str | None = "test",
    annotate: bool = False,
    exclude_dev: bool = False,
) -> list[dict]:
    """``n`` distinct problems (same seed -> same list).

    ``steps`` is one difficulty level or a collection cycled through in order (so levels are
    balanced); ``split`` keeps only questions of that split (``"train"``, ``"test"``, ``"dev"``
    (a part of train) or ``None`` for all); ``exclude_dev`` also drops the dev questions.
    """
    if split not in (None, "train", "test", "dev"):
        raise ValueError(f"split must be 'train', 'test', 'dev' or None, not {split!r}")
    levels = [steps] if isinstance(steps, int) else list(steps)
    if not levels or min(levels) < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    rng = random.Random(f"spkit-arith-{seed}")
    out: list[dict] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 1000 * (n + 10):
            raise RuntimeError(f"could not find {n} distinct {split} problems")
        rec = make_problem(rng, levels[len(out) % len(levels)], annotate)
        if rec["question"] in seen or not _in_split(rec["question"], split, exclude_dev):
            continue
        seen.add(rec["question"])
        out.append(rec)
    return out


# ---- prompting and scoring (lm-eval's gsm8k conventions)

STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")  # lm-eval gsm8k "strict-match"
FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # lm-eval gsm8k "flexible-extract"
STOP = ["Question:", "</s>", "<|im_end|>"]  # lm-eval gsm8k `until`


def prompt(question: str) -> str:
    """lm-eval's zero-shot gsm8k prompt."""
    return f"Question: {question}\nAnswer:"


def document(record: dict) -> str:
    """The pretraining text of one record: exactly what lm-eval shows in a few-shot example
    (``prompt`` + its default target delimiter ``" "`` + the answer)."""
    return f"{prompt(record['question'])} {record['answer']}"


def target(record: dict) -> str:
    """The gold integer as a string (text after ``#### ``)."""
    return record["answer"].split("#### ")[-1].strip()


def extract_answer(text: str, mode: str = "strict") -> str | None:
    """The predicted answer as lm-eval's gsm8k filters extract it, or None.

    ``strict``: the first ``#### <number>``; ``flexible``: the last number-like token
    anywhere in the text. Both return the raw match (commas/``$`` are removed by
    ``normalize``), as lm-eval does before its exact-match metric.
    """
    if mode == "strict":
        m = STRICT_RE.search(text)
        return m.group(1) if m else None
    if mode == "flexible":
        matches = FLEXIBLE_RE.findall(text)
        if not matches:
            return None
        return next(g for g in matches[-1] if g)
    raise ValueError(f"mode must be 'strict' or 'flexible', not {mode!r}")


def normalize(ans: str) -> str:
    """lm-eval gsm8k's exact-match normalisation, in its order: drop ``,``, ``$``, everything
    up to ``#### ``, a trailing ``.``; then lower-case."""
    for pattern in (r",", r"\$", r"(?s).*#### ", r"\.$"):
        ans = re.sub(pattern, "", ans)
    return ans.lower()


def is_correct(text: str, gold: str, mode: str = "strict") -> bool:
    """True iff the answer extracted from ``text`` equals ``gold`` after normalisation.

    ``gold`` may be a bare number or a full GSM8K answer ending in ``#### <n>``.
    """
    pred = extract_answer(text, mode)
    return pred is not None and normalize(pred) == normalize(gold)


# ---- an exact step checker (a process reward with no model in it)

_START_RE = re.compile(r"^\w+ has (\d+) ")
_OP_RES = (  # the verb of each `_sentence`, read back
    (re.compile(r"buys (\d+) more "), "+"),
    (re.compile(r"gives away (\d+) "), "-"),
    (re.compile(r"ends up with (\d+) times as many "), "*"),
    (re.compile(r"splits them into (\d+) equal groups "), "/"),
)
_STEP_RE = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)$")


def parse_question(question: str) -> tuple[int, list[tuple[str, int]]]:
    """(start, [(op, b), ...]) of a generated question: the inverse of `make_problem`'s English.
    Raises ValueError for text this generator did not write."""
    m = _START_RE.match(question)
    if not m:
        raise ValueError(f"not a generated arithmetic question: {question[:60]!r}")
    found = [(mm.start(), op, int(mm[1])) for rx, op in _OP_RES for mm in rx.finditer(question)]
    return int(m[1]), [(op, b) for _, op, b in sorted(found)]


def check_steps(question: str, completion: str) -> list[bool]:
    """Whether each step of a completion is right, judged from the question alone (no gold answer).

    The steps are the non-empty lines before the first ``#### n`` line (ProcessBench's format in
    `spkit.tasks.steps`: the ``#### n`` line belongs to the last step). Step i is right iff it
    reads ``a op b = c``, ``a`` continues the chain (the question's starting number for the first
    step, the previous line's ``c`` after), ``op b`` is the question's i-th operation, and
    ``c = a op b`` exactly. The last step must also close the solution: a ``#### n`` line with
    ``n`` equal to its ``c``, after as many steps as the question has operations. A completion
    with no step line at all is one wrong step. Lines after the ``#### n`` line are ignored.
    """
    start, ops = parse_question(question)
    lines = [ln.strip() for ln in completion.split("\n") if ln.strip()]
    end = next((i for i, ln in enumerate(lines) if ln.startswith("####")), None)
    body = lines if end is None else lines[:end]
    ok: list[bool] = []
    running: int | None = start
    for i, ln in enumerate(body):
        m = _STEP_RE.match(ln)
        if not m:
            ok.append(False)
            running = None
            continue
        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        right = (i < len(ops) and a == running and (op, b) == ops[i]
                 and not (op == "/" and (b == 0 or a % b)) and c == _apply(a, op, b))
        ok.append(right)
        running = c
    final = STRICT_RE.match(lines[end]) if end is not None else None
    closed = (final is not None and bool(body) and len(body) == len(ops)
              and normalize(final.group(1)) == str(running))
    if not ok:
        return [False]
    ok[-1] = ok[-1] and closed
    return ok
