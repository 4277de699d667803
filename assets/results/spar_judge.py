"""Why SPaR's self-judge rejects everything after its seed stage, measured (lesson 06, README).

    python assets/results/spar_judge.py [--seed 100] [--kind verdict|verdict01] [--balance exact] [--tag NAME]

Replays SPaR's seed stage exactly as `spkit train spar` runs it in the protocol
(`assets/results/alignment.py`: 48 seed prompts × 4 responses at T 0.9, checker-labelled, 30 SFT
steps at lr 3e-4, batch 32) on a dev seed, then measures the judge on fresh responses to
dev-split prompts (never the held-out ones): the seed data's label balance, the sampled
5-vote majority (accuracy, false-accept, false-reject: what `judge/*` logs in training), and, to
see why, the exact probabilities the judge puts on its two verdicts, split by the checkers'
label: P(" Yes") = P(" ")·P("Y")·P("es") (three tokens) and P(" No") (one token), or with
`--kind verdict01` P(" 1") and P(" 0") (one token each). Before and after the seed stage. Appends one JSON line per run to assets/results/spar_judge.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
from pathlib import Path

import torch

from spkit.generation import Sampler
from spkit.models import load_model
from spkit.rl import instruct
from spkit.rl import self_judge as J
from spkit.rl.pairs import sequence_logprobs
from spkit.rl.verifiable import rollout_params
from spkit.seeding import derive_seed

HERE = Path(__file__).parent


def verdict_probs(sampler: Sampler, kind: str, records: list[dict], texts: list[str], k: int
                  ) -> tuple[list[float], list[float]]:
    """Exact P(accept) and P(reject) (" Yes" / " No", or " 1" / " 0") after each response's judge
    prompt (teacher-forced)."""
    tok = sampler.tokenizer
    prompts = [sampler.encode(J.judge_prompt(kind, records[i // k], t)) for i, t in enumerate(texts)]
    out = []
    for word in (J.target(kind, 1), J.target(kind, 0)):
        ids = tok(word, add_special_tokens=False)["input_ids"]
        out.append(sequence_logprobs(sampler.model, prompts, [ids] * len(prompts)).exp().tolist())
    return out[0], out[1]


def measure(sampler: Sampler, kind: str, records: list[dict], texts: list[str], k: int, votes: int, seed: int
            ) -> dict:
    """The sampled majority judge against the checkers, and the verdict probabilities by label."""
    vals = J.values(kind, J.judge(sampler, kind, records, texts, votes, 1.0, seed, k), records, k)
    m = {key.split("/")[1]: round(v, 4) for key, v in J.accuracy(kind, vals, records, texts, k).items()}
    labels = J.oracle_labels(kind, records, texts, k)
    p_yes, p_no = verdict_probs(sampler, kind, records, texts, k)
    for y, name in ((1, "pass"), (0, "fail")):
        rows = [i for i, lab in enumerate(labels) if lab == y]
        if rows:
            m[f"p_yes_{name}"] = round(sum(p_yes[i] for i in rows) / len(rows), 4)
            m[f"p_no_{name}"] = round(sum(p_no[i] for i in rows) / len(rows), 4)
            m[f"yes_share_{name}"] = round(float(vals[rows].mean()), 4)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=100, help="a dev seed (the reported seeds are 0-2)")
    ap.add_argument("--balance", default="exact", choices=J.BALANCES)
    ap.add_argument("--kind", default="verdict", choices=list(J.VERDICTS), help="the judge's answer words")
    ap.add_argument("--seed-prompts", type=int, default=48)
    ap.add_argument("--seed-steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--measure-prompts", type=int, default=32)
    ap.add_argument("--tag", default="protocol")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok = load_model("spkit-tiny")
    sampler = Sampler(model, tok)
    params = rollout_params(128, 0.9, instruct.TASK)  # SPaR's T 0.9
    k = 4
    seed_recs = instruct.TASK.train_problems(args.seed_prompts, derive_seed(args.seed, "judge_seed"))
    dev_recs = instruct.TASK.dev_problems(args.measure_prompts)
    dev_outs = instruct.sample_groups(sampler, dev_recs, k, params, derive_seed(args.seed, "measure"))
    dev_texts = [o.text for o in dev_outs]
    row: dict = {"tag": args.tag, "seed": args.seed, "kind": args.kind, "balance": args.balance, "seed_prompts": args.seed_prompts,
                 "seed_k": k, "seed_steps": args.seed_steps, "lr": args.lr,
                 "measured_on": f"{args.measure_prompts} dev-split prompts x {k} responses at T 0.9, 5 votes at T 1.0"}
    row["before"] = measure(sampler, args.kind, dev_recs, dev_texts, k, 5, derive_seed(args.seed, "judge_before"))
    seed_outs = instruct.sample_groups(sampler, seed_recs, k, params, derive_seed(args.seed, "judge_seed_sample"))
    labels = J.oracle_labels(args.kind, seed_recs, [o.text for o in seed_outs], k)
    ex = J.seed_examples(args.kind, seed_recs, [o.text for o in seed_outs], k, balance=args.balance)
    row["seed_data"] = {"responses": len(labels), "pass": sum(labels), "examples": len(ex),
                        "yes_examples": sum(y == J.target(args.kind, 1) for _, y in ex)}
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    stats, _ = J.seed_finetune(model, opt, sampler, args.kind, seed_recs, k, params,
                               derive_seed(args.seed, "judge_seed_sample"), args.seed_steps, 32, balance=args.balance)
    row["seed_sft_loss"] = round(stats.get("sft", float("nan")), 4)
    row["after"] = measure(sampler, args.kind, dev_recs, dev_texts, k, 5, derive_seed(args.seed, "judge_after"))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    row["cpu_seconds"] = round(ru.ru_utime + ru.ru_stime, 1)
    print(json.dumps(row))
    with open(HERE / "spar_judge.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
