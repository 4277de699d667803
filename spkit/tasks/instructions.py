"""IFEval-format prompts with verifiable instructions a tiny model can learn.

A record has IFEval's exact schema (the ``google/IFEval`` jsonl)::

    {"key": 1003, "prompt": "Write a short note about the sea. Your entire response should
     be in English, and in all lowercase letters. No capital letters are allowed.",
     "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]}

so lm-eval's ``ifeval`` task (its ``process_results`` and four metrics) scores it unchanged.
Each prompt is one writing task plus one or two instructions from ``INSTRUCTIONS``, a
subset of IFEval's ids chosen because a few-million-parameter model can learn them (case,
commas, keywords, an end phrase, a word-count bound, a ``<<title>>``, quotation marks);
pairs that contradict each other are never combined. Instruction sentences use IFEval's
phrasing so skills transfer to the real benchmark.

``reference_response(record, rng)`` writes a response that satisfies every instruction
(the pretraining corpus uses it); ``check(record, response)`` returns IFEval's per-instruction
strict verdicts, using lm-eval's own instruction registry when it is importable and spkit's
equivalent checks otherwise.

Held-out split: keys ``< 100_000`` are for training corpora, ``spkit_ifeval_lite`` uses keys
``>= 100_000`` and the prompt text is hashed with ``split_of`` like the arithmetic tasks, so
the eval set never overlaps the corpus. ``in_dev`` sets aside a second hash bucket of the train
prompts (~10 %) as a dev split where trainers choose settings: ``generate(..., split="dev")``
draws only those, ``exclude_dev=True`` never does (the pretraining corpus drew from all of train).
"""

from __future__ import annotations

import hashlib
import random
import re

TEST_FRACTION = 10
TEST_KEY_OFFSET = 100_000

TOPICS = ["the sea", "a cat", "the city", "rain", "a garden", "music", "winter", "a train trip",
          "the moon", "a small dog", "bread", "a river", "the forest", "a friend", "summer"]
TASKS = ["Write a short note about {t}.", "Describe {t} in a few sentences.",
         "Write a short story about {t}.", "Tell me about {t}."]
# Per-topic vocabulary for the reference responses (plain English, no commas).
ADJECTIVES = ["calm", "bright", "quiet", "warm", "cold", "old", "green", "small", "big", "soft"]
VERBS = ["is", "feels", "looks", "seems"]
CLOSERS = ["I like it a lot.", "It makes me happy.", "We go there every week.",
           "People love to see it.", "It is good to think about.", "The day ends well."]
KEYWORDS = ["blue", "light", "home", "water", "bird", "stone", "tree", "song", "road", "sun"]
END_PHRASES = ["Is there anything else I can help with?", "Any other questions?",
               "That is all.", "The end."]

# id -> IFEval description template (IFEval's wording); kwargs are filled by _kwargs().
INSTRUCTIONS: dict[str, str] = {
    "change_case:english_lowercase": "Your entire response should be in English, and in all "
    "lowercase letters. No capital letters are allowed.",
    "change_case:english_capital": "Your entire response should be in English, and in all "
    "capital letters.",
    "punctuation:no_comma": "In your entire response, refrain from the use of any commas.",
    "keywords:existence": "Include keywords {keywords} in the response.",
    "startend:end_checker": "Finish your response with this exact phrase {end_phrase}. No other "
    "words should follow this phrase.",
    "length_constraints:number_words": "Answer with {relation} {num_words} words.",
    "detectable_format:title": "Your answer must contain a title, wrapped in double angular "
    "brackets, such as <<poem of joy>>.",
    "startend:quotation": "Wrap your entire response with double quotation marks.",
}
CONFLICTS = {
    frozenset({"change_case:english_lowercase", "change_case:english_capital"}),
    frozenset({"change_case:english_lowercase", "detectable_format:title"}),
}


def _kwargs(iid: str, rng: random.Random) -> dict:
    """IFEval kwargs for one instruction (only the keys that instruction takes)."""
    if iid == "keywords:existence":
        return {"keywords": sorted(rng.sample(KEYWORDS, 2))}
    if iid == "startend:end_checker":
        return {"end_phrase": rng.choice(END_PHRASES)}
    if iid == "length_constraints:number_words":
        if rng.random() < 0.5:
            return {"num_words": rng.randint(25, 45), "relation": "less than"}
        return {"num_words": rng.randint(8, 25), "relation": "at least"}
    return {}


def _describe(iid: str, kw: dict) -> str:
    fields = dict(kw)
    if "keywords" in fields:
        fields["keywords"] = ", ".join(fields["keywords"])
    return INSTRUCTIONS[iid].format(**fields)


def make_record(key: int, rng: random.Random, n_instructions: int | None = None) -> dict:
    """One IFEval-format record with 1–2 compatible instructions."""
    k = n_instructions or rng.choice([1, 1, 2])
    ids: list[str] = []
    while len(ids) < k:
        iid = rng.choice(sorted(INSTRUCTIONS))
        if iid in ids or any(frozenset({iid, j}) in CONFLICTS for j in ids):
            continue
        ids.append(iid)
    kwargs = [_kwargs(i, rng) for i in ids]
    task = rng.choice(TASKS).format(t=rng.choice(TOPICS))
    prompt = " ".join([task] + [_describe(i, kw) for i, kw in zip(ids, kwargs, strict=True)])
    return {"key": key, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs}


def split_of(prompt: str) -> str:
    """``"test"`` for ~1/TEST_FRACTION of prompts (by SHA-256 of the text), else ``"train"``."""
    h = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big")
    return "test" if h % TEST_FRACTION == 0 else "train"


def in_dev(prompt: str) -> bool:
    """True for the ~1/TEST_FRACTION of *train* prompts set aside as the dev split (a hash bucket
    independent of ``split_of``'s)."""
    h = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[4:8], "big")
    return split_of(prompt) == "train" and h % TEST_FRACTION == 0


def _in_split(prompt: str, split: str | None, exclude_dev: bool) -> bool:
    if exclude_dev and in_dev(prompt):
        return False
    if split == "dev":
        return in_dev(prompt)
    return split is None or split_of(prompt) == split


def generate(n: int, seed: int, split: str | None = "test", exclude_dev: bool = False) -> list[dict]:
    """``n`` distinct records of one split (same seed -> same list); keys count up. ``split``:
    ``"train"``, ``"test"``, ``"dev"`` (a part of train) or None; ``exclude_dev`` drops dev prompts."""
    if split not in (None, "train", "test", "dev"):
        raise ValueError(f"split must be 'train', 'test', 'dev' or None, not {split!r}")
    rng = random.Random(f"spkit-ifeval-{seed}")
    base = TEST_KEY_OFFSET if split == "test" else 0
    out: list[dict] = []
    seen: set[str] = set()
    for _ in range(1000 * (n + 10)):
        if len(out) == n:
            return out
        rec = make_record(base + len(out), rng)
        if rec["prompt"] in seen or not _in_split(rec["prompt"], split, exclude_dev):
            continue
        seen.add(rec["prompt"])
        out.append(rec)
    if len(out) == n:
        return out
    raise RuntimeError(f"could not find {n} distinct {split} prompts")


# ---- reference responses


def _topic_of(prompt: str) -> str:
    """The topic named in the prompt's first sentence (whole words: "rain" is not "refrain")."""
    first = prompt.split(". ")[0]
    for t in sorted(TOPICS, key=len, reverse=True):
        if re.search(rf"\b{re.escape(t)}\b", first):
            return t
    return "it"


def _sentences(topic: str, rng: random.Random, n: int) -> list[str]:
    subject = topic[0].upper() + topic[1:]
    out = []
    for _ in range(n):
        if rng.random() < 0.6:
            out.append(f"{subject} {rng.choice(VERBS)} {rng.choice(ADJECTIVES)} today.")
        else:
            out.append(rng.choice(CLOSERS))
    return out


def _assemble(record: dict, body: list[str], topic: str) -> str:
    ids = record["instruction_id_list"]
    kw = {i: k for i, k in zip(ids, record["kwargs"], strict=True)}
    words = list(body)
    if "keywords:existence" in kw:
        words.insert(1, f"I think of {' and '.join(kw['keywords:existence']['keywords'])}.")
    text = " ".join(words)
    if "detectable_format:title" in kw:
        text = f"<<{topic}>>\n{text}"
    if "startend:end_checker" in kw:
        text = f"{text} {kw['startend:end_checker']['end_phrase']}"
    if "change_case:english_lowercase" in kw:
        text = text.lower()
    if "change_case:english_capital" in kw:
        text = text.upper()
    if "startend:quotation" in kw:
        text = f'"{text}"'
    return text


def reference_response(record: dict, rng: random.Random) -> str:
    """A short response that follows every instruction of ``record`` (checked by ``check``).

    Tries bodies of 2..8 sentences in random order and returns the first that passes.
    """
    topic = _topic_of(record["prompt"])
    sizes = list(range(2, 9))
    rng.shuffle(sizes)
    for n in sizes:
        text = _assemble(record, _sentences(topic, rng, n), topic)
        if all(check(record, text)):
            return text
    raise RuntimeError(f"no reference response satisfies record {record['key']}")


def document(record: dict, rng: random.Random) -> str:
    """The pretraining text of one record: the prompt, a newline, a reference response.

    lm-eval's IFEval feeds the bare prompt (no chat template for a base model), so the model
    learns to start its response after the prompt's last sentence.
    """
    return f"{record['prompt']}\n{reference_response(record, rng)}"


# ---- checking (IFEval strict semantics)


def _lm_eval_registry() -> dict | None:
    try:
        from spkit.tasks.nltk_data import ensure_punkt_tab

        ensure_punkt_tab()  # before lm-eval's IFEval import, which would try to download
        from lm_eval.tasks.ifeval import instructions_registry
    except ImportError:
        return None
    import langdetect

    langdetect.DetectorFactory.seed = 0  # langdetect is random otherwise
    return instructions_registry.INSTRUCTION_DICT


def _fallback_check(iid: str, kw: dict, response: str) -> bool:
    """spkit's own version of IFEval's check for the ids in INSTRUCTIONS (no langdetect)."""
    if iid == "change_case:english_lowercase":
        return response.islower()
    if iid == "change_case:english_capital":
        return response.isupper()
    if iid == "punctuation:no_comma":
        return "," not in response
    if iid == "keywords:existence":
        return all(re.search(k, response, flags=re.IGNORECASE) for k in kw["keywords"])
    if iid == "startend:end_checker":
        return response.strip().strip('"').lower().endswith(kw["end_phrase"].strip().lower())
    if iid == "length_constraints:number_words":
        n = len(re.findall(r"\w+", response))
        return n < kw["num_words"] if kw["relation"] == "less than" else n >= kw["num_words"]
    if iid == "detectable_format:title":
        return any(t.strip() for t in re.findall(r"<<([^\n]+)>>", response))
    if iid == "startend:quotation":
        v = response.strip()
        return len(v) > 1 and v[0] == '"' and v[-1] == '"'
    raise KeyError(f"unknown instruction id {iid!r}")


def check(record: dict, response: str, use_lm_eval: bool = True) -> list[bool]:
    """IFEval's strict verdict for each instruction of ``record`` on ``response``.

    Mirrors lm-eval's ``test_instruction_following_strict``: kwargs with empty values are
    dropped, an empty response fails every instruction.
    """
    registry = _lm_eval_registry() if use_lm_eval else None
    verdicts = []
    for iid, kw in zip(record["instruction_id_list"], record["kwargs"], strict=True):
        kw = {k: v for k, v in (kw or {}).items() if v}
        if not response.strip():
            verdicts.append(False)
        elif registry is None:
            verdicts.append(bool(_fallback_check(iid, kw, response)))
        else:
            inst = registry[iid](iid)
            inst.build_description(**kw)
            args = inst.get_instruction_args()
            if args and "prompt" in args:
                inst.build_description(prompt=record["prompt"])
            verdicts.append(bool(inst.check_following(response)))
    return verdicts
