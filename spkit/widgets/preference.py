"""Preference-game explorer: run every tabular learner on one matrix and compare to the exact winner.

`compare_learners` runs every learner for the lesson's convergence figure (`plot_convergence`); `PreferenceExplorer`
is the interactive widget's state and logic as a plain class (pick a family, edit the matrix,
re-run), so tests drive it from Python; `PreferenceExplorer.widget()` wraps it in ipywidgets.
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
