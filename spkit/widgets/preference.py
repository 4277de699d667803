"""Preference-game explorer: run every tabular learner on one matrix and compare to the exact winner.

`compare_learners` runs every learner for the lesson's convergence figure (`plot_convergence`); `PreferenceExplorer`
is the interactive widget's state and logic as a plain class (pick a family, edit the matrix,
re-run), so tests drive it from Python; `PreferenceExplorer.widget()` wraps it in ipywidgets.
`LMPreferenceExplorer` is its LM mode: one prompt's class distribution across a learner's
iterations on spkit-tiny (`--mode lm`), against the class game's winner.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from spkit.algos import inpo, nash_md, nash_mp, online_dpo, rlhf_bt, spo, sppo
from spkit.algos.preference_game import plot_convergence
from spkit.errors import SpkitError
from spkit.games.preference_matrices import FAMILIES, make_preference
from spkit.solvers.matrix import check_preference_matrix, exploitability, von_neumann_winner

# name -> (module, the iterate its theory covers; "none": no claim to reach the winner)
LEARNERS = {
    "SPO": (spo, "avg"),
    "SPPO": (sppo, "avg"),
    "INPO": (inpo, "last"),
    "Nash-MD": (nash_md, "last"),
    "Nash-MP": (nash_mp, "last"),
    "online DPO": (online_dpo, "none"),
    "RLHF (BT)": (rlhf_bt, "none"),
}


def compare_learners(
    matrix: np.ndarray,
    mode: str = "exact",
    steps: int | None = None,
    seeds: tuple[int, ...] = (0,),
    learners: tuple[str, ...] | None = None,
) -> dict[str, dict]:
    """Run each learner on `matrix` and collect curves: {name: {"steps", "last", "avg"} (seeds × T)}.

    `steps=None` uses each learner's own default (what its theory needs: 2,000 for the Hedge and
    mirror-prox learners, 5,000 for INPO, 10,000 for Nash-MD's O(1/t) schedule)."""
    P = check_preference_matrix(matrix)
    out: dict[str, dict] = {}
    for name in learners or tuple(LEARNERS):
        mod, which = LEARNERS[name]
        over = {} if steps is None else {"steps": steps}
        runs = [mod.train(mod.Config(matrix=P.tolist(), mode=mode, seed=s, **over)) for s in seeds]
        out[name] = {
            "steps": np.array(runs[0].steps),
            "last": np.array([r.exploit_last for r in runs]),
            "avg": np.array([r.exploit_avg for r in runs]),
            "theory": which,
            "pi_last": np.array([r.pi_last for r in runs]),
            "pi_avg": np.array([r.pi_avg for r in runs]),
        }
    return out


def summary_table(results: dict[str, dict]) -> list[dict]:
    """Final exploitability per learner (mean ± std over seeds), last and average iterate."""
    rows = []
    for name, r in results.items():
        last, avg = r["last"][:, -1], r["avg"][:, -1]
        rows.append({
            "learner": name,
            "theory iterate": r["theory"],
            "last": float(last.mean()),
            "last_std": float(last.std()),
            "avg": float(avg.mean()),
            "avg_std": float(avg.std()),
        })
    return rows


@dataclass
class PreferenceExplorer:
    """State of the explorer: a preference matrix, the exact winner, and every learner's result."""

    family: str = "three_cycle"
    n: int = 5
    seed: int = 0
    steps: int = 500
    mode: str = "exact"
    P: np.ndarray = field(init=False)
    winner: np.ndarray = field(init=False)
    results: dict = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.set_family(self.family, self.n, self.seed)

    def set_family(self, family: str, n: int | None = None, seed: int | None = None) -> None:
        """Load a matrix of a named family (3-cycles ignore n)."""
        if family not in FAMILIES:
            raise SpkitError(f"unknown preference family {family!r}; choose one of {', '.join(FAMILIES)}")
        self.family, self.n, self.seed = family, n or self.n, self.seed if seed is None else seed
        self._set_matrix(make_preference(family, self.n, self.seed))

    def set_entry(self, i: int, j: int, p: float) -> None:
        """Edit P[i, j] = p and keep the matrix a preference matrix (P[j, i] = 1 − p)."""
        n = self.P.shape[0]
        if not (0 <= i < n and 0 <= j < n) or i == j:
            raise SpkitError(f"entry ({i}, {j}) is not an off-diagonal entry of a {n}×{n} matrix")
        if not 0.0 <= p <= 1.0:
            raise SpkitError(f"a preference probability must be in [0, 1], got {p}")
        P = self.P.copy()
        P[i, j], P[j, i] = p, 1.0 - p
        self.family = "custom"
        self._set_matrix(P)

    def _set_matrix(self, P: np.ndarray) -> None:
        self.P = check_preference_matrix(P)
        self.winner = von_neumann_winner(self.P)
        self.results = {}

    def run(self, learners: tuple[str, ...] | None = None) -> dict[str, dict]:
        """Run the learners on the current matrix (same code path as the lesson's figure)."""
        self.results = compare_learners(self.P, self.mode, self.steps, (self.seed,), learners)
        return self.results

    def table_html(self) -> str:
        """Final policies and exploitabilities as an HTML table (all text escaped)."""
        n = self.P.shape[0]
        head = "".join(f"<th>y{i}</th>" for i in range(n))
        rows = [f"<tr><td>von Neumann winner (LP)</td>{self._cells(self.winner)}"
                f"<td>{exploitability(self.P, self.winner):.4f}</td><td></td></tr>"]
        for name, r in self.results.items():
            rows.append(f"<tr><td>{html.escape(name)} (last)</td>{self._cells(r['pi_last'][0])}"
                        f"<td>{r['last'][0, -1]:.4f}</td><td>{html.escape(r['theory'])}</td></tr>")
            rows.append(f"<tr><td>{html.escape(name)} (avg)</td>{self._cells(r['pi_avg'][0])}"
                        f"<td>{r['avg'][0, -1]:.4f}</td><td></td></tr>")
        return (f"<table><tr><th>policy</th>{head}<th>exploitability</th><th>theory covers</th></tr>"
                + "".join(rows) + "</table>")

    @staticmethod
    def _cells(pi: np.ndarray) -> str:
        return "".join(f"<td>{p:.3f}</td>" for p in pi)

    def widget(self):  # pragma: no cover - exercised in the notebook / browser
        """ipywidgets UI: family picker, size, an editable matrix entry, run button, plot + table."""
        import ipywidgets as W
        from IPython.display import display

        fam = W.Dropdown(options=list(FAMILIES), value=self.family if self.family in FAMILIES else "three_cycle",
                         description="family")
        size = W.IntSlider(value=self.n, min=3, max=20, description="n")
        i_box, j_box = W.BoundedIntText(0, min=0, max=19, description="i"), W.BoundedIntText(1, min=0, max=19, description="j")
        p_box = W.BoundedFloatText(0.5, min=0.0, max=1.0, step=0.05, description="P[i,j]")
        set_btn, run_btn = W.Button(description="set entry"), W.Button(description="run learners")
        out_plot, out_tab, msg = W.Output(), W.HTML(), W.HTML()

        def refresh_matrix():
            msg.value = "<pre>" + html.escape(np.array2string(self.P, precision=2)) + "</pre>"

        def on_family(_):
            self.set_family(fam.value, size.value)
            refresh_matrix()
            out_tab.value = self.table_html()

        def on_set(_):
            try:
                self.set_entry(i_box.value, j_box.value, p_box.value)
            except SpkitError as e:
                msg.value = f"<b>{html.escape(str(e))}</b>"
                return
            refresh_matrix()
            out_tab.value = self.table_html()

        def on_run(_):
            self.run()
            out_plot.clear_output(wait=True)
            with out_plot:
                display(plot_convergence(self.results, title=f"{self.family}, n={self.P.shape[0]}").figure)
            out_tab.value = self.table_html()

        fam.observe(on_family, "value")
        size.observe(on_family, "value")
        set_btn.on_click(on_set)
        run_btn.on_click(on_run)
        refresh_matrix()
        out_tab.value = self.table_html()
        return W.VBox([W.HBox([fam, size, run_btn]), W.HBox([i_box, j_box, p_box, set_btn]), msg,
                       out_plot, out_tab])


# ---- the LM mode: a learner on spkit-tiny, one prompt at a time ----------------------------------------
LM_LEARNERS = {name: mod for name, (mod, _) in LEARNERS.items()}


@dataclass
class LMPreferenceExplorer:
    """The explorer's LM mode: pick a prompt, see how the class distribution of the model's answers
    to it moves across a learner's iterations (`spkit train <learner> --mode lm`), against the
    class game's exact winner.

    Built from a run's logged rows (`from_run(dir)` reads metrics.csv; `History.rows` of a run in
    this process), or `train(...)` runs a learner here. Each evaluation row holds every prompt's
    class shares (`preference_game.topic_key`), measured on fresh samples of π_t."""

    rows: list[dict] = field(default_factory=list)
    topic: int = 0
    P: np.ndarray = field(init=False)
    winner: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        from spkit.rl import lm_preference as lmp

        self.classes = lmp.CLASSES
        self.P = lmp.class_matrix()
        self.winner = von_neumann_winner(self.P)

    @classmethod
    def from_run(cls, run_dir) -> LMPreferenceExplorer:
        """The explorer over a finished (or running) `--mode lm` run directory."""
        from pathlib import Path

        from spkit.run.metrics import read_metrics

        path = Path(run_dir) / "metrics.csv"
        if not path.exists():
            raise SpkitError(f"{run_dir} holds no metrics.csv; give the --out of a `spkit train <learner> --mode lm` run")
        return cls(read_metrics(path))

    def train(self, learner: str = "SPPO", steps: int = 6, seed: int = 0, **overrides) -> None:
        """Run `learner` in LM mode here (in memory) and explore its rows."""
        if learner not in LM_LEARNERS:
            raise SpkitError(f"unknown learner {learner!r}; choose one of {', '.join(LM_LEARNERS)}")
        mod = LM_LEARNERS[learner]
        cfg = mod.Config(mode="lm", steps=steps, seed=seed, eval_every=1, **overrides)
        self.rows = mod.train(cfg).rows

    def topics(self) -> list[str]:
        """The prompts' topics this run evaluated (in `lm_preference.TOPICS` order)."""
        from spkit.algos.preference_game import topic_key
        from spkit.rl import lm_preference as lmp

        keys = set().union(*(r.keys() for r in self.rows)) if self.rows else set()
        return [t for g, t in enumerate(lmp.TOPICS) if topic_key(g, 0) in keys]

    def distribution(self, topic: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps (T,), class shares (T, C)) of one prompt at every evaluated iteration."""
        from spkit.algos.preference_game import topic_key

        g = self.topic if topic is None else topic
        if not 0 <= g < len(self.topics()):
            raise SpkitError(f"topic {g} was not evaluated; this run has {len(self.topics())} prompts")
        keys = [topic_key(g, c) for c in range(len(self.classes))]
        rows = [r for r in self.rows if all(k in r and np.isfinite(r[k]) for k in keys)]
        return (np.array([int(r["step"]) for r in rows]),
                np.array([[r[k] for k in keys] for r in rows]).reshape(len(rows), len(keys)))

    def exploitabilities(self, topic: int | None = None) -> np.ndarray:
        """(T,) exploitability of the prompt's measured class distribution at each iteration
        (the plug-in value: from finitely many samples it reads above the truth)."""
        return np.array([exploitability(self.P, q) for q in self.distribution(topic)[1]])

    def plot(self, topic: int | None = None, ax=None):
        """Stacked class shares of one prompt against the iteration; dashed: the winner's shares."""
        from matplotlib.figure import Figure

        steps, q = self.distribution(topic)
        if ax is None:
            ax = Figure(figsize=(7, 3.2)).subplots()
        colors = [f"C{c}" for c in range(len(self.classes))]
        if len(steps):
            ax.stackplot(steps, q.T, labels=self.classes, colors=colors, alpha=0.75)
        for c, w in enumerate(np.cumsum(self.winner)[:-1]):
            ax.axhline(w, color="k", ls="--", lw=0.8, label="winner's shares" if c == 0 else None)
        name = self.topics()[self.topic if topic is None else topic]
        ax.set(xlabel="iteration t", ylabel="share of π_t's answers", ylim=(0, 1),
               title=f'"Tell me about {name}." — class distribution of π_t')
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.figure.tight_layout()
        return ax

    def table_html(self, topic: int | None = None) -> str:
        """The prompt's class shares and exploitability per iteration, as an HTML table (escaped)."""
        steps, q = self.distribution(topic)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.classes)
        rows = [f"<tr><td>winner (LP)</td>{PreferenceExplorer._cells(self.winner)}"
                f"<td>{exploitability(self.P, self.winner):.3f}</td></tr>"]
        rows += [f"<tr><td>t = {t}</td>{PreferenceExplorer._cells(d)}<td>{e:.3f}</td></tr>"
                 for t, d, e in zip(steps, q, self.exploitabilities(topic), strict=True)]
        return f"<table><tr><th>policy</th>{head}<th>exploitability</th></tr>" + "".join(rows) + "</table>"

    def widget(self):  # pragma: no cover - exercised in the notebook / browser
        """ipywidgets UI: a prompt picker, a learner + steps + train button, the plot and the table."""
        import ipywidgets as W
        from IPython.display import display

        pick = W.Dropdown(options=[(t, g) for g, t in enumerate(self.topics())],
                          value=self.topic if self.topics() else None, description="prompt")
        learner = W.Dropdown(options=list(LM_LEARNERS), value="SPPO", description="learner")
        steps = W.IntSlider(value=6, min=1, max=40, description="steps")
        go, msg = W.Button(description="train (LM mode)"), W.HTML()
        out_plot, out_tab = W.Output(), W.HTML()

        def refresh(_=None):
            if not self.topics():
                out_tab.value = "<i>no evaluated rows yet: train a learner</i>"
                return
            self.topic = pick.value
            out_plot.clear_output(wait=True)
            with out_plot:
                display(self.plot().figure)
            out_tab.value = self.table_html()

        def on_train(_):
            msg.value = "<i>training…</i>"
            self.train(learner.value, steps.value)
            pick.options = [(t, g) for g, t in enumerate(self.topics())]
            msg.value = ""
            refresh()

        pick.observe(refresh, "value")
        go.on_click(on_train)
        refresh()
        return W.VBox([W.HBox([pick]), W.HBox([learner, steps, go]), msg, out_plot, out_tab])
