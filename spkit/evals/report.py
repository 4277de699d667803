"""Tables and plots of eval runs; `spkit report RUN_DIR...` compares checkpoints.

    spkit report runs/eval/step0 runs/eval/step200 runs/eval/step400 --out runs/eval/report

prints (and writes to ``--out/report.md``) one table — a row per headline metric, a column per
run, ordered by training step — and draws ``score_vs_step.png`` (one line per metric; runs
without a step are placed by their order on the command line). Scores are percentages. Runs
with ProcessBench-style groups add, per group and mode (greedy, or ``maj@8``: the majority of 8
sampled critiques, `spkit eval --samples 8`), every run's per-subset table, a table with a row
per subset x metric and a column per checkpoint, and ``processbench_vs_step.png`` (F1, accuracy
on erroneous and on correct items per subset across checkpoints).

Headline metrics: GSM8K/spkit_arith strict and flexible exact match; MATH-500 math_verify and
exact match; IFEval's four accuracies; ProcessBench/spkit_steps average F1 and accuracies over
subsets (the 8-sample mode's rows say ``maj@8``; per-subset numbers are in each run's
``table.md`` and in the ProcessBench sections of the report).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from spkit.errors import SpkitError

_GSM = [("exact_match,strict-match", "strict EM"), ("exact_match,flexible-extract", "flexible EM")]
_IFEVAL = [("prompt_level_strict_acc,none", "prompt strict"),
           ("inst_level_strict_acc,none", "inst strict"),
           ("prompt_level_loose_acc,none", "prompt loose"),
           ("inst_level_loose_acc,none", "inst loose")]
# ProcessBench-style groups -> the lm-eval filter their metrics are keyed by: greedy critiques
# ("none"), or the majority vote of 8 sampled ones ("maj@8", `spkit eval --samples 8`)
PROCESS_GROUPS = {"processbench_local": "none", "spkit_steps": "none",
                  "processbench_local_maj8": "maj@8", "spkit_steps_maj8": "maj@8"}
PB_METRICS = [("f1", "F1"), ("acc_error", "acc erroneous"), ("acc_correct", "acc correct"),
              ("unparsable", "unparsable")]


def _pb(flt: str) -> list[tuple[str, str]]:
    return [(f"f1,{flt}", "avg F1"), (f"acc_error,{flt}", "avg acc erroneous"),
            (f"acc_correct,{flt}", "avg acc correct")]


HEADLINE: dict[str, list[tuple[str, str]]] = {
    "gsm8k_local": _GSM, "spkit_arith": _GSM,
    "math500_local": [("math_verify,none", "math_verify"), ("exact_match,none", "exact match")],
    "ifeval_local": _IFEVAL, "spkit_ifeval_lite": _IFEVAL,
    **{g: _pb(f) for g, f in PROCESS_GROUPS.items()},
}
SKIP_KEYS = ("alias", "name", "sample_len", "sample_count")


def process_mode(group: str) -> str:
    """How a ProcessBench-style group predicts: ``greedy`` or ``maj@8`` (8-sample vote)."""
    flt = PROCESS_GROUPS.get(group, "none")
    return "greedy" if flt == "none" else flt


def task_label(task: str) -> str:
    """A task's name in tables: ``processbench_local`` -> ``processbench``; the majority-vote
    variants say so (``spkit_steps maj@8``), greedy and 8-sample results never share a name."""
    if PROCESS_GROUPS.get(task, "none") != "none":
        return f"{task.removesuffix('_maj8').removesuffix('_local')} {process_mode(task)}"
    return task.removesuffix("_local")


def _all_scores(res: dict) -> dict[str, dict]:
    scores = {k: dict(v) for k, v in res.get("results", {}).items()}
    for k, v in res.get("groups", {}).items():
        scores.setdefault(k, {}).update(v)
    return scores


def headline(res: dict) -> dict[str, float]:
    """``{"task · metric": value}`` for the run's headline metrics (fractions)."""
    scores = _all_scores(res)
    tasks = res.get("spkit", {}).get("tasks") or list(res.get("results", {}))
    out: dict[str, float] = {}
    for task in tasks:
        s = scores.get(task, {})
        pairs = HEADLINE.get(task) or [(k, k.replace(",none", "")) for k in s
                                       if k not in SKIP_KEYS and "_stderr" not in k]
        for key, name in pairs:
            v = s.get(key)
            if isinstance(v, (int, float)):
                out[f"{task_label(task)} · {name}"] = float(v)
    return out


def pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _run_name(res: dict) -> str:
    """A run's column name: label, step, and ``maj@8`` for an 8-sample ProcessBench run (so a
    checkpoint's greedy and voted runs get different columns)."""
    info = res.get("spkit", {})
    step, n = info.get("step"), info.get("processbench_samples") or 1
    notes = ([f"step {step}"] if step is not None else []) + ([f"maj@{n}"] if n > 1 else [])
    return f"{info.get('label', 'run')}" + (f" ({', '.join(notes)})" if notes else "")


def headline_markdown(runs: list[dict]) -> str:
    """One table: headline metrics (rows) x runs (columns), in percent."""
    heads = [headline(r) for r in runs]
    keys = list(dict.fromkeys(k for h in heads for k in h))
    lines = ["| metric (%) | " + " | ".join(_run_name(r) for r in runs) + " |",
             "|---|" + "---:|" * len(runs)]
    lines += [f"| {k} | " + " | ".join(pct(h.get(k)) for h in heads) + " |" for k in keys]
    return "\n".join(lines)


MODE_TEXT = {"greedy": "greedy", "maj@8": "majority vote of 8 sampled critiques"}


def process_groups(res: dict) -> list[str]:
    """The ProcessBench-style groups a run holds, in `PROCESS_GROUPS` order."""
    held = set(res.get("spkit", {}).get("tasks") or []) | set(res.get("group_subtasks", {}))
    return [g for g in PROCESS_GROUPS if g in held and res.get("group_subtasks", {}).get(g)]


def process_scores(res: dict, group: str) -> dict[str, dict[str, float | None]]:
    """``{subset: {metric: value}}`` of one ProcessBench-style group, plus ``"average"`` (the
    group's mean over subsets as lm-eval aggregates it; `unparsable`: the plain mean over
    subsets, which lm-eval does not aggregate). Metrics: `PB_METRICS`; fractions."""
    scores, flt = _all_scores(res), PROCESS_GROUPS.get(group, "none")
    out: dict[str, dict[str, float | None]] = {}
    for t in sorted(res.get("group_subtasks", {}).get(group, [])):
        s = scores.get(t, {})
        out[t.removeprefix(group + "_")] = {m: _num(s.get(f"{m},{flt}")) for m, _ in PB_METRICS}
    g = scores.get(group, {})
    avg = {m: _num(g.get(f"{m},{flt}")) for m, _ in PB_METRICS}
    unp = [v["unparsable"] for v in out.values() if v["unparsable"] is not None]
    avg["unparsable"] = sum(unp) / len(unp) if unp else None
    out["average"] = avg
    return out


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def processbench_markdown(res: dict, group: str, title: str | None = None) -> str:
    """ProcessBench's table for one group: per subset acc (erroneous), acc (correct), F1 and the
    unparsable share, with the mode (greedy or 8-sample vote) in the title."""
    n = res.get("n-samples", {})
    mode = process_mode(group)
    lines = [f"**{title or group}** ({MODE_TEXT.get(mode, mode)}; ProcessBench metrics, %)", "",
             "| subset | n | acc erroneous | acc correct | F1 | unparsable |",
             "|---|---:|---:|---:|---:|---:|"]
    for sub, v in process_scores(res, group).items():
        if sub == "average":
            lines.append(f"| **average** | | {pct(v['acc_error'])} | {pct(v['acc_correct'])} | "
                         f"**{pct(v['f1'])}** | {pct(v['unparsable'])} |")
        else:
            lines.append(f"| {sub} | {n.get(f'{group}_{sub}', {}).get('effective', '')} | "
                         f"{pct(v['acc_error'])} | {pct(v['acc_correct'])} | {pct(v['f1'])} | "
                         f"{pct(v['unparsable'])} |")
    return "\n".join(lines)


def processbench_steps_markdown(runs: list[dict], group: str) -> str:
    """Checkpoint by checkpoint: one row per subset x metric of ``group``, one column per run
    that holds the group (in the order given)."""
    runs = [r for r in runs if group in process_groups(r)]
    per_run = [process_scores(r, group) for r in runs]
    subsets = list(dict.fromkeys(s for p in per_run for s in p if s != "average"))
    mode = process_mode(group)
    lines = [f"**{task_label(group)}** across checkpoints ({MODE_TEXT.get(mode, mode)}; %)", "",
             "| subset | metric | " + " | ".join(_run_name(r) for r in runs) + " |",
             "|---|---|" + "---:|" * len(runs)]
    for sub in [*subsets, "average"]:
        for m, name in PB_METRICS:
            cells = [pct(p.get(sub, {}).get(m)) for p in per_run]
            bold = sub == "average" and m == "f1"
            lines.append(f"| {'**average**' if sub == 'average' else sub} | {name} | "
                         + " | ".join(f"**{c}**" if bold else c for c in cells) + " |")
    return "\n".join(lines)


def rate_interval(rate: float, n: int) -> tuple[float, float]:
    """Wilson 95% interval of an accuracy measured on ``n`` examples (``rate`` a fraction).

    Every accuracy table and bar chart of spkit uses it: with a few hundred examples per level a
    difference of a few points is noise, and the interval says so where the reader looks.
    """
    from spkit.games.policies import wilson_interval

    return wilson_interval(round(rate * n), n)


def pct_interval(rate: float | None, n: int) -> str:
    """``"15.0 [9.9, 22.1]"``: a rate and its Wilson 95% interval, in percent."""
    if rate is None or (isinstance(rate, float) and math.isnan(rate)) or n <= 0:
        return "n/a"
    lo, hi = rate_interval(rate, n)
    return f"{100 * rate:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def rates_markdown(rows: dict[str, tuple[float, int]], key: str = "", what: str = "accuracy") -> str:
    """A table of rates with their example counts and Wilson 95% intervals: ``{label: (rate, n)}``."""
    lines = [f"| {key} | n | {what} (%) | 95% interval (Wilson) |", "|---|---:|---:|---:|"]
    for label, (rate, n) in rows.items():
        lo, hi = rate_interval(rate, n) if n > 0 else (math.nan, math.nan)
        lines.append(f"| {label} | {n} | {pct(rate)} | {pct(lo)} – {pct(hi)} |")
    return "\n".join(lines)


def plot_rates(ax, rows: dict[str, tuple[float, int]], label: str | None = None, shift: float = 0.0,
               width: float = 0.8, **bar_kw) -> None:
    """Bars of rates ``{label: (rate, n)}`` with Wilson 95% error bars on a matplotlib ``ax``.

    ``shift`` and ``width`` place several series side by side (e.g. ``width=0.4``, shifts ±0.2)
    instead of on top of each other, where the front bar would hide the back one.
    """
    xs = [i + shift for i in range(len(rows))]
    rates = [r for r, _ in rows.values()]
    bounds = [rate_interval(r, n) for r, n in rows.values()]
    err = [[r - lo for r, (lo, _) in zip(rates, bounds, strict=True)],
           [hi - r for r, (_, hi) in zip(rates, bounds, strict=True)]]
    ax.bar(xs, rates, width=width, yerr=err, capsize=3, label=label, **bar_kw)
    ax.set_xticks(range(len(rows)), list(rows))
    ax.set_ylim(0, 1)


def arith_levels(res: dict, metric: str = "exact_match,strict-match") -> dict[str, tuple[float, int]]:
    """``{steps: (accuracy, n)}`` of spkit_arith per difficulty level (``metric``: strict by default)."""
    scores, n = _all_scores(res), res.get("n-samples", {})
    return {t.rsplit("_", 1)[-1]: (float(scores.get(t, {}).get(metric, math.nan)),
                                   int(n.get(t, {}).get("effective", 0)))
            for t in sorted(res.get("group_subtasks", {}).get("spkit_arith", []))}


def arith_levels_markdown(res: dict) -> str:
    """spkit_arith by number of steps: n, strict and flexible exact match with Wilson 95% intervals."""
    strict, flexible = arith_levels(res), arith_levels(res, "exact_match,flexible-extract")
    rows = ["**spkit_arith by difficulty** (exact match, % [Wilson 95% interval])", "",
            "| steps | n | strict | flexible |", "|---:|---:|---:|---:|"]
    for steps, (rate, n) in strict.items():
        rows.append(f"| {steps} | {n} | {pct_interval(rate, n)} | {pct_interval(flexible[steps][0], n)} |")
    return "\n".join(rows)


def throughput(info: dict) -> str:
    """'N samples in S s (R samples/s)', with the generations when an item has several (`--samples 8`)."""
    line = f"{info.get('samples')} samples in {info.get('seconds')} s ({info.get('samples_per_s')} samples/s"
    gens = info.get("generations")
    if gens is not None and gens != info.get("samples"):
        line += f"; {gens} generations, {info.get('generations_per_s')}/s"
    return line + ")"


def run_markdown(res: dict) -> str:
    """The full ``table.md`` of one run."""
    from lm_eval.utils import make_table

    info = res.get("spkit", {})
    parts = [f"# Eval: {info.get('model', '?')}",
             f"backend `{info.get('backend')}`, step {info.get('step')}, limit "
             f"{info.get('limit')}, seed {info.get('seed')}, {throughput(info)}",
             "", headline_markdown([res])]
    tasks = info.get("tasks", [])
    if "spkit_arith" in tasks:
        parts += ["", arith_levels_markdown(res)]
    for g in process_groups(res):
        parts += ["", processbench_markdown(res, g)]
    parts += ["", "## lm-eval table", "", make_table(res)]
    if res.get("groups"):
        parts += ["", make_table(res, "groups")]
    return "\n".join(parts) + "\n"


def plot_run(res: dict, png: Path) -> None:
    """Horizontal bars of the headline metrics of one run."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    h = {k: v for k, v in headline(res).items() if not math.isnan(v)}
    fig = Figure(figsize=(7, 0.35 * len(h) + 1.2))
    ax = fig.subplots()
    ax.barh(list(h)[::-1], [100 * v for v in h.values()][::-1], color="#4c72b0")
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (%)")
    ax.set_title(_run_name(res), fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


# ---- comparing runs


def load_run(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise SpkitError(f"{path} not found; point `spkit report` at `spkit eval --out` dirs")
    try:
        res = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise SpkitError(f"{path} is not valid UTF-8 text; re-run `spkit eval`") from None
    except json.JSONDecodeError as e:
        raise SpkitError(f"{path} is not valid JSON ({e.msg}); re-run `spkit eval`") from None
    def table(key: str) -> bool:  # {name: {metric: value}}
        v = res.get(key, {})
        return isinstance(v, dict) and all(isinstance(x, dict) for x in v.values())

    if not (isinstance(res, dict) and table("results") and table("groups") and table("n-samples")
            and isinstance(res.get("spkit", {}), dict)
            and isinstance(res.get("spkit", {}).get("tasks") or [], list)):
        raise SpkitError(f"{path} is not an `spkit eval` results file; re-run `spkit eval`")
    return res


def compare(run_dirs: list[str | Path], out: str | Path | None = None) -> str:
    """Tables (returned, and written to ``out/report.md``) and ``out/score_vs_step.png``.

    The headline table comes first. Runs holding ProcessBench-style groups (greedy or 8-sample
    vote) add, per group, its per-subset table for every run and a checkpoint-by-checkpoint
    table (`processbench_steps_markdown`), and ``out/processbench_vs_step.png``
    (`plot_processbench_steps`).
    """
    if out is not None:
        from spkit.run import ensure_writable_dir

        ensure_writable_dir(out)
    runs = [load_run(d) for d in run_dirs]
    order = sorted(range(len(runs)), key=lambda i: (runs[i].get("spkit", {}).get("step") is None,
                                                   runs[i].get("spkit", {}).get("step") or 0, i))
    runs = [runs[i] for i in order]
    table = headline_markdown(runs)
    groups = [g for g in PROCESS_GROUPS if any(g in process_groups(r) for r in runs)]
    for g in groups:
        table += f"\n\n### {task_label(g)} ({MODE_TEXT.get(process_mode(g), process_mode(g))})"
        table += "".join(f"\n\n{processbench_markdown(r, g, title=_run_name(r))}" for r in runs
                         if g in process_groups(r))
        table += "\n\n" + processbench_steps_markdown(runs, g)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(table + "\n")
        plot_steps(runs, out / "score_vs_step.png")
        if groups:
            plot_processbench_steps(runs, out / "processbench_vs_step.png")
    return table


def _x_axis(runs: list[dict]) -> tuple[list, bool]:
    """x positions of runs: their training steps when every run has a distinct one, else 0..n-1."""
    steps = [r.get("spkit", {}).get("step") for r in runs]
    use_steps = all(s is not None for s in steps) and len(set(steps)) == len(steps)
    return (steps if use_steps else list(range(len(runs)))), use_steps


def plot_processbench_steps(runs: list[dict], png: Path) -> None:
    """ProcessBench metrics across checkpoints: a row of panels (F1, acc erroneous, acc correct)
    per ProcessBench-style group (greedy and 8-sample vote apart), a line per subset and a thick
    one for the average, over the runs that hold the group (x: their training steps, else their
    order)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    groups = [g for g in PROCESS_GROUPS if any(g in process_groups(r) for r in runs)]
    fig = Figure(figsize=(11, 3.4 * max(1, len(groups))))
    axes = fig.subplots(max(1, len(groups)), 3, squeeze=False, sharey=True)
    for row, g in zip(axes, groups, strict=False):
        g_runs = [r for r in runs if g in process_groups(r)]
        xs, use_steps = _x_axis(g_runs)
        per_run = [process_scores(r, g) for r in g_runs]
        subsets = list(dict.fromkeys(s for p in per_run for s in p))
        for ax, (m, name) in zip(row, PB_METRICS[:3], strict=True):
            for sub in subsets:  # a missing number (a subset a run lacks) is bridged
                pts = [(x, 100 * v) for x, p in zip(xs, per_run, strict=True)
                       if (v := p.get(sub, {}).get(m)) is not None and not math.isnan(v)]
                avg = sub == "average"
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=sub,
                        lw=2.5 if avg else 1.2, color="black" if avg else None)
            ax.set_title(f"{task_label(g)} · {name}", fontsize=9)
            ax.set_ylim(-3, 103)
            ax.set_xlabel("training step" if use_steps else "run")
            if not use_steps:
                ax.set_xticks(xs, [_run_name(r) for r in g_runs], rotation=25, ha="right", fontsize=7)
        row[0].set_ylabel("%")
        row[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def plot_steps(runs: list[dict], png: Path) -> None:
    """Score vs training step, one line per headline metric."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    xs, use_steps = _x_axis(runs)
    heads = [headline(r) for r in runs]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for key in dict.fromkeys(k for h in heads for k in h):
        ax.plot(xs, [100 * h.get(key, math.nan) for h in heads], marker="o", label=key)
    ax.set_xlabel("training step" if use_steps else "run")
    if not use_steps:
        ax.set_xticks(xs, [_run_name(r) for r in runs], rotation=20, fontsize=8)
    ax.set_ylabel("score (%)")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="`spkit eval --out` directories")
    p.add_argument("--out", default=None, help="write report.md and score_vs_step.png here")


def main(args: argparse.Namespace) -> int:
    from spkit.text import terminal_safe

    print(terminal_safe(compare(args.runs, args.out)))  # labels come from shared files
    if args.out:
        pngs = [p for p in ("score_vs_step.png", "processbench_vs_step.png")
                if (Path(args.out) / p).exists()]
        print(f"\nwrote {args.out}/report.md and " + " and ".join(f"{args.out}/{p}" for p in pngs))
    return 0
