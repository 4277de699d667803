r"""ReST-MCTS* — self-training of a policy and a value model from process-reward-guided tree search.

Zhang, Zhoubian, Hu, Yue, Dong, Tang (2024), "ReST-MCTS*: LLM Self-Training via Process Reward
Guided Tree Search", arXiv:2406.03816.

Idea: search over reasoning *steps* (here: one line ``a op b = c`` of an arithmetic solution)
with MCTS guided by a value model V_φ(prefix) ∈ [0, 1], the quality of a partial solution.
After the search, the checker labels the complete solutions of the tree; every node on a branch
that reaches a correct answer gets a value that rises step by step toward 1, every node off such
a branch a value that falls toward 0 (no human step labels). The correct solutions train the
policy (SFT), the inferred node values train the value model (MSE); both search better next time.

Equations (the paper's Sec. 3; numbered here):
  (1) UCT(s') = V(s') + c·√(2 ln N(s) / N(s')),  c = 0.4; an unvisited child scores V(s') + 1
  (2) look-ahead: from the chosen new child s', sample `lookahead` steps greedily by value,
      v* = max of V_φ along them;   V(s') ← (1 − α)·V_φ(s') + α·v*,  α = 0.5
  (3) backup: V(s) = Σ_{s'} N(s')·V(s') / Σ_{s'} N(s')  over s's children (visit-weighted mean)
  (4) inferred value of node k (root v_0 = 0):
        v_k = max(0, v_{k−1} + (1 − v_{k−1})·r_k / m_k)
      r_k = +1 if node k has a descendant with a correct answer, else −1; m_k = steps from node k
      to its nearest correct leaf (a correct leaf has m = 1); a node off every correct branch
      takes the m of its nearest ancestor that is on one. Trees with no correct leaf give no targets.
  (5) value loss L(φ) = mean_k (V_φ(x, s_{1..k}) − v_k)²
  (6) policy loss L(θ) = −(1/Σ|y|) Σ_{verified y} Σ_t log π_θ(y_t | x, y_<t)   (`verifiable.sft_update`)

Algorithm (one step t of `spkit train rest_mcts`):
  1. `problems` train-split problems; one tree per problem, searched in lock-step (one batched
     sampler call per phase for all trees):
     repeat `iterations` times: select a leaf by (1) from the root; expand it with `k` sampled
     next steps (distinct texts), each valued by V_φ; simulate (2) from the child (1) picks;
     back up (3) from the expanded node. A complete solution (a ``#### n`` line) is not expanded.
  2. Label every complete solution in the tree with the task's checker; infer (4) for the tree.
  3. Value training: `value_epochs` passes of (5) over the step's (prefix, v_k) pairs.
  4. Policy training: (6) on the distinct correct solutions of each problem (verified traces).
  5. Every `eval_every` steps: greedy held-out accuracy, the `spkit eval --tasks spkit_arith`
     number (`spkit.rl.verifiable.evaluate_heldout`).
At test time (`search(..., until_solved=True)`) a tree stops once a complete node has
V ≥ `end_gate` (0.9); otherwise the answer is the complete solution of highest V (step 1's
look-aheads included); if no solution is complete, a greedy completion of the highest-valued node.

The value model is a second copy of the policy's starting weights with a scalar head
(`transformers`' `*ForSequenceClassification`, num_labels = 1, the reward-model convention), read
at the last token of ``prompt + partial solution`` through a sigmoid. Why a second model and not a
head on the policy: the paper trains a separate process reward / value model, and here the
policy's SFT would otherwise move the features the value head reads (and the value loss would
move the policy); a frozen head on the start model's features would be cheaper but cannot learn
to check a step the start model gets wrong. It saves with `save_pretrained` (safetensors) as
``OUT/value/`` beside ``OUT/final/``, checkpoints with every step (weights + Adam state) and
loads back with `ValueModel.load` (no pickle).

Deviations from the paper:
  1. A 3.3M-parameter policy (spkit-tiny) and a same-size value model on generated arithmetic,
     instead of 6-8B models on math/science; a step is one line (a newline ends it).
  2. Online: every step searches a fresh batch, then trains both models once on it (the paper
     searches a whole dataset per self-training iteration).
  3. The value model starts from the policy's weights with a zero head (V_φ = 0.5 everywhere), not
     from a value model trained on annotated data: the first search is UCT with uninformative values.
  4. Look-ahead samples one step per look-ahead step (the reference code's roll_branch = 1), and
     complete solutions met in a look-ahead are kept as candidates (final answer, SFT traces).
  5. Compute is counted in sampled policy tokens; value-model forwards are not counted.
  6. A complete child picked for the look-ahead is neither simulated nor counted as visited (the
     reference code adds a visit); the backup reaches it when the selection picks it.

Metrics: train/solved (share of trees with a correct complete solution), train/value_targets,
train/traces (SFT rows), train/tokens (sampled tokens so far), train/samples (sampler rows so far:
expansions and look-ahead steps), train/nodes, losses/value, losses/sft, losses/grad_norm;
eval/strict (the headline), eval/strict/level_<s>.

Commands:
  spkit train rest_mcts --steps 8 --threads 1 --out runs/rest_mcts
  spkit train rest_mcts --out runs/rest_mcts --steps 16 --resume       # continue (value model too)
  spkit eval --model runs/rest_mcts/final --tasks spkit_arith          # the same number
  python assets/results/rest_mcts.py                                   # accuracy vs compute
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from spkit.config import param
from spkit.generation import Sampler
from spkit.models import inference_model
from spkit.rl import verifiable as V
from spkit.run import History
from spkit.run.checkpoint import load_optimizer_state, load_weights, replace_dir
from spkit.run.distributed import all_reduce_grads
from spkit.sampling import SamplingParams
from spkit.seeding import derive_seed
from spkit.tasks import arithmetic

PAPER = {
    "title": "ReST-MCTS*: LLM Self-Training via Process Reward Guided Tree Search",
    "arxiv": "2406.03816",
    "citation": "Zhang, Zhoubian, Hu, Yue, Dong, Tang. ReST-MCTS*. arXiv:2406.03816, 2024.",
}
UNVISITED = 1.0  # the UCT bonus of a child never visited (the reference code's `inf`)
NO_CORRECT = 1 << 30  # m of a node with no correct leaf in reach


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(V.VerifiableConfig):
    """ReST-MCTS* settings (model, task, problems, temperature ... from `VerifiableConfig`; `k` is
    the branching of an expansion); defaults sized for spkit-tiny on a CPU."""

    steps: int = param(8, "self-training steps (search, value training, policy SFT)", ge=0, identity=False)
    k: int = param(3, "children sampled per expansion (the paper's branch)", ge=1)
    iterations: int = param(12, "MCTS iterations per tree (select, expand, look ahead, back up)", ge=1)
    c: float = param(0.4, "UCT exploration constant c, Eq. (1)", ge=0)
    alpha: float = param(0.5, "weight of the look-ahead value in a node's value, Eq. (2)", ge=0, le=1)
    lookahead: int = param(2, "greedy look-ahead steps after an expansion, Eq. (2)", ge=0)
    end_gate: float = param(0.9, "at test time a tree stops at a complete node with V >= end_gate", gt=0, le=1)
    step_tokens: int = param(32, "tokens per sampled step", ge=1)
    max_depth: int = param(8, "steps after which a node counts as complete", ge=1)
    lr: float = param(2e-5, "policy learning rate (Adam), RFT's", gt=0)
    epochs: int = param(1, "policy optimizer steps over each step's verified traces", ge=1)
    value_lr: float = param(1e-4, "value-model learning rate (Adam)", gt=0)
    value_epochs: int = param(4, "passes of the value loss (5) over each step's targets", ge=1)
    value_batch: int = param(64, "value targets per value-model update", ge=1)
    micro_batch: int = param(64, "completions per forward/backward (gradient accumulation)", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping of both models (0 = off)", ge=0)


# ---- The value model -----------------------------------------------------------------------------
class ValueModel:
    """V_φ(text) ∈ [0, 1]: sigmoid of a scalar head on the last token's hidden state of a causal
    LM's backbone (`*ForSequenceClassification`, num_labels = 1). Tracked by `Run` like any state:
    `save_files` / `load_files` put its weights (safetensors) and Adam state in each checkpoint."""

    def __init__(self, model, tokenizer, lr: float = 1e-4) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    @classmethod
    def from_policy(cls, policy, tokenizer, lr: float = 1e-4) -> ValueModel:
        """The policy's backbone weights and a zero head: V_φ = 0.5 for every input."""
        from transformers import AutoModelForSequenceClassification

        config = copy.deepcopy(policy.config)
        config.num_labels, config.architectures = 1, None
        config.pad_token_id = tokenizer.pad_token_id
        model = AutoModelForSequenceClassification.from_config(config)
        model.base_model.load_state_dict(inference_model(policy).base_model.state_dict())
        torch.nn.init.zeros_(model.score.weight)
        return cls(model.to(next(policy.parameters()).device), tokenizer, lr)

    @classmethod
    def load(cls, path: str | Path, lr: float = 1e-4) -> ValueModel:
        """A value model written by `save_pretrained` (safetensors only, nothing unpickled)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
        return cls(model, AutoTokenizer.from_pretrained(path), lr)

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    # checkpoint hooks of `spkit.run.Run.track`
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def save_files(self, path: Path) -> None:
        self.save_pretrained(path)
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")

    def load_files(self, path: Path) -> None:
        load_weights(self.model, path)
        self.optimizer.load_state_dict(load_optimizer_state(path))

    def _logits(self, texts: Sequence[str]) -> torch.Tensor:
        """(B,) head outputs at each text's last token (right-padded batch)."""
        ids = [self.tokenizer(t)["input_ids"] for t in texts]
        dev = next(self.model.parameters()).device
        L = max(len(x) for x in ids)
        inp = torch.zeros(len(ids), L, dtype=torch.long)
        mask = torch.zeros(len(ids), L, dtype=torch.long)
        for i, x in enumerate(ids):
            inp[i, :len(x)], mask[i, :len(x)] = torch.tensor(x), 1
        h = self.model.base_model(input_ids=inp.to(dev), attention_mask=mask.to(dev)).last_hidden_state  # (B, L, H)
        last = h[torch.arange(len(ids), device=dev), mask.sum(1).to(dev) - 1]  # (B, H)
        return self.model.score(last).squeeze(-1).float()  # (B,)

    @torch.no_grad()
    def __call__(self, texts: Sequence[str], batch: int = 64) -> list[float]:
        out: list[float] = []
        for i in range(0, len(texts), batch):
            out += torch.sigmoid(self._logits(texts[i:i + batch])).tolist()
        return out

    def fit(self, texts: Sequence[str], targets: Sequence[float], epochs: int, batch: int, seed: int,
            max_grad_norm: float = 1.0) -> float:
        """`epochs` passes of Eq. (5) over (texts, targets) in seeded minibatches; the mean loss."""
        if not texts:
            return math.nan
        g = torch.Generator().manual_seed(seed)
        y = torch.tensor(targets, dtype=torch.float32)
        losses = []
        self.model.train()
        for _ in range(epochs):
            order = torch.randperm(len(texts), generator=g).tolist()
            for i in range(0, len(order), batch):
                idx = order[i:i + batch]
                v = torch.sigmoid(self._logits([texts[j] for j in idx]))
                loss = ((v - y[idx].to(v.device)) ** 2).mean()  # Eq. (5)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                all_reduce_grads(self.model)  # the value model is not the run's tracked model
                if max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_grad_norm)
                self.optimizer.step()
                losses.append(loss.item())
        self.model.eval()
        return sum(losses) / len(losses)


# ---- The search tree -----------------------------------------------------------------------------
@dataclass(eq=False)
class Node:
    """One reasoning step. `V` is the search's quality value, `N` its visits, `v_model` V_φ's own
    estimate; `target` the inferred value (4) after labelling; `m` steps to the nearest correct leaf."""

    step: str = ""
    parent: Node | None = None
    depth: int = 0
    V: float = 0.0
    N: int = 0
    v_model: float = 0.0
    complete: bool = False
    correct: bool | None = None
    children: list[Node] = field(default_factory=list)
    m: int = NO_CORRECT
    target: float | None = None

    @property
    def expanded(self) -> bool:
        return bool(self.children)

    def solution(self) -> str:
        """The solution text from the root to this node (the completion after ``Answer:``)."""
        steps, n = [], self
        while n.parent is not None:
            steps.append(n.step)
            n = n.parent
        return "\n".join(reversed(steps))

    def nodes(self) -> list[Node]:
        """This node and all below it, depth first."""
        out = [self]
        for c in self.children:
            out += c.nodes()
        return out


@dataclass(eq=False)
class Tree:
    """One problem's search: its root, the complete solutions met (tree nodes and look-ahead
    ends, as (text, value)), the tokens sampled, and the answer node once solved."""

    problem: dict
    root: Node = field(default_factory=Node)
    candidates: list[tuple[str, float]] = field(default_factory=list)
    tokens: int = 0
    rows: int = 0
    solved: Node | None = None

    @property
    def prompt(self) -> str:
        return arithmetic.prompt(self.problem["question"])

    def context(self, node_or_text: Node | str) -> str:
        """The policy's prompt to continue from a node (or a solution prefix)."""
        text = node_or_text if isinstance(node_or_text, str) else node_or_text.solution()
        return self.prompt + (text + "\n" if text else "")

    def answer(self) -> str | None:
        """The final solution: the solved node, else the complete candidate of highest value."""
        if self.solved is not None:
            return self.solved.solution()
        return max(self.candidates, key=lambda c: c[1])[0] if self.candidates else None


def uct(child: Node, parent_visits: int, c: float) -> float:
    """Eq. (1)."""
    if child.N == 0:
        return child.V + UNVISITED
    return child.V + c * math.sqrt(2 * math.log(max(parent_visits, 1)) / child.N)


def best_child(node: Node, c: float, rng: random.Random) -> Node:
    """The child maximising Eq. (1); ties broken by `rng`."""
    scores = [uct(ch, node.N, c) for ch in node.children]
    top = max(scores)
    return rng.choice([ch for ch, s in zip(node.children, scores, strict=True) if s == top])


def select(root: Node, c: float, rng: random.Random) -> Node:
    """Descend by Eq. (1) to a node that is not expanded."""
    node = root
    while node.expanded:
        node = best_child(node, c, rng)
    return node


def backup(node: Node) -> None:
    """Eq. (3) from `node` to the root, counting one visit on the way."""
    while node is not None:
        node.N += 1
        visits = sum(ch.N for ch in node.children)
        if visits:
            node.V = sum(ch.N * ch.V for ch in node.children) / visits
        node = node.parent


# ---- 1. Search (all trees in lock-step) ----------------------------------------------------------
def _step_params(cfg: Config, task: V.Task) -> SamplingParams:
    return SamplingParams(max_new_tokens=cfg.step_tokens, temperature=cfg.temperature, stop=("\n", *task.stop))


def _sample_steps(sampler: Sampler, trees: Sequence[Tree], texts: Sequence[str], params: SamplingParams,
                  seed: int) -> list[tuple[str, bool]]:
    """One next step per (tree, solution prefix): (step text, complete?). A step is complete when
    it is the ``#### n`` line or the model stopped other than at a newline. Tokens are counted on
    the trees."""
    outs = sampler.generate([t.context(x) for t, x in zip(trees, texts, strict=True)], params, seed=seed)
    res = []
    for t, o in zip(trees, outs, strict=True):
        t.tokens += len(o.token_ids)
        t.rows += 1
        raw = sampler.tokenizer.decode(o.token_ids, skip_special_tokens=True)
        newline = o.finish_reason == "stop" and raw[len(o.text):].startswith("\n")
        res.append((o.text, "####" in o.text or not newline or not o.text.strip()))
    return res


def search(sampler: Sampler, value: ValueModel, problems: Sequence[dict], cfg: Config, seed: int,
           until_solved: bool = False, task: V.Task | None = None,
           on_iteration: Callable[[int, list[Tree]], None] | None = None) -> list[Tree]:
    """MCTS* on each problem (step 1), the trees advanced together. `until_solved`: a tree stops at
    a complete node with V ≥ end_gate (test time); otherwise it spends all `iterations` (training)."""
    task = task or V.load_task(cfg.task, cfg.data_dir or None)
    params = _step_params(cfg, task)
    rng = random.Random(seed)
    trees = [Tree(p) for p in problems]
    for it in range(cfg.iterations):
        leaves: list[tuple[Tree, Node]] = []
        for t in trees:
            if t.solved is not None:
                continue
            node = select(t.root, cfg.c, rng)
            if node.complete:
                if until_solved and cfg.end_gate <= node.V:
                    t.solved = node
                else:
                    backup(node)  # nothing to expand: count the visit, move on
            else:
                leaves.append((t, node))
        if not leaves:
            break
        # expansion: k steps from each leaf, one sampler call for all trees
        rows = [(t, n) for t, n in leaves for _ in range(cfg.k)]
        steps = _sample_steps(sampler, [t for t, _ in rows], [n.solution() for _, n in rows], params,
                              derive_seed(seed, "expand", it))
        new: list[tuple[Tree, Node]] = []
        for (t, n), (text, done) in zip(rows, steps, strict=True):
            if any(ch.step == text for ch in n.children):
                continue  # distinct children only
            ch = Node(text, n, n.depth + 1, complete=done or n.depth + 1 >= cfg.max_depth)
            n.children.append(ch)
            new.append((t, ch))
        vals = value([t.context(ch.solution()).rstrip("\n") for t, ch in new])
        for (t, ch), v in zip(new, vals, strict=True):
            ch.V = ch.v_model = v
            if ch.complete:
                t.candidates.append((ch.solution(), v))
        # simulation: greedy look-ahead from the child UCT picks, Eq. (2)
        rolls = [(t, best_child(n, cfg.c, rng)) for t, n in leaves]
        live = [(t, ch, ch.solution(), 0.0) for t, ch in rolls if not ch.complete]
        best = {id(ch): 0.0 for _, ch in rolls}
        for j in range(cfg.lookahead):
            if not live:
                break
            steps = _sample_steps(sampler, [t for t, *_ in live], [s for _, _, s, _ in live], params,
                                  derive_seed(seed, "lookahead", it, j))
            texts = [s + "\n" + step for (_, _, s, _), (step, _) in zip(live, steps, strict=True)]
            vals = value([t.context(x).rstrip("\n") for (t, *_), x in zip(live, texts, strict=True)])
            nxt = []
            for (t, ch, _, _), x, (_, done), v in zip(live, texts, steps, vals, strict=True):
                best[id(ch)] = max(best[id(ch)], v)
                if done:
                    t.candidates.append((x, v))
                else:
                    nxt.append((t, ch, x, v))
            live = nxt
        for _, ch in rolls:
            if not ch.complete and cfg.lookahead:
                ch.V = (1 - cfg.alpha) * ch.V + cfg.alpha * best[id(ch)]  # Eq. (2)
                ch.N += 1
        for _, n in leaves:
            backup(n)  # Eq. (3)
        if on_iteration is not None:
            on_iteration(it, trees)
    return trees


def final_answers(sampler: Sampler, trees: Sequence[Tree], task: V.Task, seed: int,
                  max_new_tokens: int = 0) -> list[tuple[str, int]]:
    """Test time: each tree's (final solution, sampled tokens). A tree with no complete solution
    answers with a greedy completion of its highest-valued node, whose tokens count too (the
    trees are not changed, so a search can be read at several iteration budgets)."""
    todo = [i for i, t in enumerate(trees) if t.answer() is None]
    out = [(t.answer() or "", t.tokens) for t in trees]
    if not todo:
        return out
    starts = [max(trees[i].root.nodes(), key=lambda n: (n.V, n.depth)) for i in todo]
    params = SamplingParams(max_new_tokens=max_new_tokens or task.max_new_tokens, temperature=0.0, stop=task.stop)
    outs = sampler.generate([trees[i].context(n) for i, n in zip(todo, starts, strict=True)], params, seed=seed)
    for i, n, o in zip(todo, starts, outs, strict=True):
        prefix = n.solution()
        out[i] = ((prefix + "\n" if prefix else "") + o.text, trees[i].tokens + len(o.token_ids))
    return out


# ---- 2. Labels and inferred values ---------------------------------------------------------------
def infer_values(tree: Tree) -> list[tuple[str, float]]:
    """Label the tree's complete nodes with the checker and infer Eq. (4); returns the value
    targets (value-model input text, v_k), root excluded, for nodes with a correct leaf in reach."""
    gold = tree.problem["answer"]
    nodes = tree.root.nodes()
    for n in nodes:
        if n.complete:
            n.correct = arithmetic.is_correct(n.solution(), gold)

    def steps_to_correct(n: Node) -> int:  # m: 1 at a correct leaf, NO_CORRECT where none is in reach
        below = [steps_to_correct(ch) for ch in n.children]
        n.m = 1 if n.correct else min([b + 1 for b in below if b < NO_CORRECT], default=NO_CORRECT)
        return n.m

    steps_to_correct(tree.root)
    on_branch = {id(n) for n in nodes if n.m < NO_CORRECT}
    for leaf in (n for n in nodes if n.complete and not n.correct):  # off-branch: the ancestor's m
        a = leaf.parent
        while a is not None and a.m >= NO_CORRECT:
            a = a.parent
        n = leaf
        while a is not None and n is not a:
            n.m = a.m
            n = n.parent
    out: list[tuple[str, float]] = []

    def down(n: Node, v: float) -> None:
        n.target = v
        if n.parent is not None:
            out.append((tree.context(n).rstrip("\n"), v))
        for ch in n.children:
            if ch.m < NO_CORRECT:
                r = 1.0 if id(ch) in on_branch else -1.0
                down(ch, max(0.0, v + (1 - v) * r / ch.m))  # Eq. (4)

    if tree.root.m < NO_CORRECT:
        down(tree.root, 0.0)
    return out


def verified_traces(tree: Tree) -> list[str]:
    """The distinct correct complete solutions of a tree (tree nodes and look-ahead ends)."""
    gold = tree.problem["answer"]
    texts = [n.solution() for n in tree.root.nodes() if n.complete] + [x for x, _ in tree.candidates]
    return sorted({x for x in texts if arithmetic.is_correct(x, gold)})


# ---- Train ---------------------------------------------------------------------------------------
class TokenCounter:
    """Sampled policy tokens so far (the compute axis); resumable state."""

    def __init__(self) -> None:
        self.tokens = 0

    def state_dict(self) -> dict:
        return {"tokens": self.tokens}

    def load_state_dict(self, state: dict) -> None:
        self.tokens = int(state["tokens"])


PLOT_KEYS = ["eval/strict", "train/solved", "losses/value", "losses/sft"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run ReST-MCTS* self-training; return every logged row. The value model is written to
    ``OUT/value/`` at the end."""
    ctx = V.start(cfg, "rest_mcts", callback, PLOT_KEYS, lr=cfg.lr)
    task, model, tok, optimizer, counter, sampler = (
        ctx.task, ctx.model, ctx.tokenizer, ctx.optimizer, ctx.counter, ctx.sampler)
    value = ValueModel.from_policy(model, tok, cfg.value_lr)
    tokens = TokenCounter()
    ctx.run.track(model=model, tokenizer=tok, optimizer=optimizer, counter=counter, value=value, tokens=tokens)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        problems = task.train_problems(cfg.problems, derive_seed(cfg.seed, "problems", t))
        trees = search(sampler, value, problems, cfg, derive_seed(cfg.seed, "search", t), task=task)  # 1
        counter.samples += sum(tr.rows for tr in trees)
        tokens.tokens += sum(tr.tokens for tr in trees)
        t_search = time.perf_counter() - t0
        targets = [x for tr in trees for x in infer_values(tr)]  # 2
        v_loss = value.fit([x for x, _ in targets], [v for _, v in targets], cfg.value_epochs, cfg.value_batch,
                           derive_seed(cfg.seed, "value", t), cfg.max_grad_norm)  # 3: Eq. (5)
        traces = [(tr.prompt, x) for tr in trees for x in verified_traces(tr)]
        prompt_ids = [sampler.encode(p) for p, _ in traces]
        completion_ids = [tok(" " + x.lstrip(" "), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                          for _, x in traces]  # as the policy ends a solution: EOS after `#### n`
        losses = V.sft_update(model, optimizer, prompt_ids, completion_ids, cfg.epochs, cfg.micro_batch,
                              cfg.max_grad_norm) if traces else {}  # 4: Eq. (6)
        return {"train/solved": sum(bool(verified_traces(tr)) for tr in trees) / len(trees),
                "train/value_targets": float(len(targets)), "train/traces": float(len(traces)),
                "train/nodes": sum(len(tr.root.nodes()) for tr in trees) / len(trees),
                "train/tokens": float(tokens.tokens), "train/samples": float(counter.samples),
                "train/rollout_seconds": t_search, "train/seconds_per_step": time.perf_counter() - t0,
                **({"losses/value": v_loss} if targets else {}), **{f"losses/{k}": v for k, v in losses.items()}}

    history = ctx.run.loop(step, ctx.evaluator(cfg), V.sample_budget(cfg))  # 5
    if history.out_dir is not None and ctx.run.writes:  # the value model beside final/
        replace_dir(history.out_dir / "value", value.save_pretrained)
    return history


def summary(history: History) -> str:
    """The line `spkit train rest_mcts` prints at the end."""
    return V.summary_line(history)


# ---- Accuracy against compute --------------------------------------------------------------------
def majority(answers: Sequence[str | None]) -> str | None:
    """The most frequent extracted answer (first seen wins a tie); None if none parsed."""
    got = [a for a in answers if a is not None]
    if not got:
        return None
    counts = Counter(got)
    top = max(counts.values())
    return next(a for a in got if counts[a] == top)


def accuracy_vs_compute(model, tokenizer, value: ValueModel, problems: Sequence[dict], ns: Sequence[int] = (1, 2, 4, 8),
                        iterations: Sequence[int] = (2, 4, 8), cfg: Config | None = None, seed: int = 0,
                        task: V.Task | None = None) -> list[dict]:
    """Greedy, best-of-N by majority vote, best-of-N ranked by V_φ and MCTS* with V_φ on the same
    problems, each with the policy tokens it sampled. One row per (method, setting):
    {method, setting, tokens (mean per problem), accuracy, accuracy/level_<s>, n}. Best-of-N uses
    the first N of one set of max(ns) samples per problem; MCTS runs one `search(until_solved=True)`
    of max(iterations) iterations, read after each budget (`final_answers`)."""
    cfg = cfg or Config()
    task = task or V.load_task(cfg.task, cfg.data_dir or None)
    sampler = Sampler(model, tokenizer)
    golds = [p["answer"] for p in problems]
    rows: list[dict] = []

    def row(method: str, setting: int, texts: Sequence[str | None], tokens: Sequence[int]) -> None:
        ok = [t is not None and arithmetic.is_correct(t, g) for t, g in zip(texts, golds, strict=True)]
        r = {"method": method, "setting": setting, "tokens": sum(tokens) / len(tokens),
             "accuracy": sum(ok) / len(ok), "n": len(ok)}
        for level in sorted({p.get("steps", 0) for p in problems}):
            sel = [o for o, p in zip(ok, problems, strict=True) if p.get("steps", 0) == level]
            r[f"accuracy/level_{level}"] = sum(sel) / len(sel)
        rows.append(r)

    prompts = [arithmetic.prompt(p["question"]) for p in problems]
    greedy = V.greedy_as_eval(model, sampler, prompts, task)
    row("greedy", 1, [o.text for o in greedy], [len(o.token_ids) for o in greedy])
    big = max(ns)
    params = SamplingParams(max_new_tokens=cfg.new_tokens(task), temperature=cfg.temperature, stop=task.stop)
    outs = sampler.generate([p for p in prompts for _ in range(big)], params, seed=derive_seed(seed, "best_of_n"))
    groups = [outs[i * big:(i + 1) * big] for i in range(len(problems))]
    scores = [value([prompts[i] + " " + o.text.lstrip(" ") for o in g]) for i, g in enumerate(groups)]
    for n in ns:
        toks = [sum(len(o.token_ids) for o in g[:n]) for g in groups]
        votes = [majority([arithmetic.extract_answer(o.text) for o in g[:n]]) for g in groups]
        row("best_of_n_majority", n, [f"#### {a}" if a is not None else None for a in votes], toks)
        ranked = [g[max(range(n), key=lambda j: s[j])].text for g, s in zip(groups, scores, strict=True)]
        row("best_of_n_value", n, ranked, toks)
    read: dict[int, list[tuple[str, int]]] = {}  # one search, read after each budget in `iterations`

    def at(it: int, trees: list[Tree]) -> None:
        if it + 1 in iterations:
            read[it + 1] = final_answers(sampler, trees, task, derive_seed(seed, "finish", it + 1), cfg.new_tokens(task))

    c = Config(**{**cfg.__dict__, "iterations": max(iterations)})
    trees = search(sampler, value, problems, c, derive_seed(seed, "mcts"), until_solved=True, task=task, on_iteration=at)
    for it in sorted(iterations):  # budgets after every tree was solved read the final trees
        got = read.get(it) or final_answers(sampler, trees, task, derive_seed(seed, "finish", it), cfg.new_tokens(task))
        row("mcts_value", it, [a for a, _ in got], [n for _, n in got])
    return rows


# ---- A live tree ---------------------------------------------------------------------------------
def plot_tree(tree: Tree, ax, max_chars: int = 14) -> None:
    """Draw one search tree on a matplotlib axis: nodes coloured by V (0 red → 1 green), sized by
    visits, edges labelled with the step text (truncated); complete solutions are squares, a
    ✓/✗ marks those the checker labelled."""
    import matplotlib.pyplot as plt

    pos: dict[int, tuple[float, float]] = {}
    leaves = [0]

    def place(n: Node) -> float:
        if not n.children:
            x = float(leaves[0])
            leaves[0] += 1
        else:
            x = sum(place(ch) for ch in n.children) / len(n.children)
        pos[id(n)] = (x, -n.depth)
        return x

    place(tree.root)
    cmap = plt.get_cmap("RdYlGn")
    for n in tree.root.nodes():
        x, y = pos[id(n)]
        for ch in n.children:
            cx, cy = pos[id(ch)]
            ax.plot([x, cx], [y, cy], color="0.7", lw=0.8, zorder=1)
            label = ch.step.strip()
            label = label if len(label) <= max_chars else label[:max_chars - 1] + "…"
            ax.text((x + cx) / 2, (y + cy) / 2, label, fontsize=6, ha="center", va="center",
                    bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.3}, zorder=2)
        ax.scatter([x], [y], s=30 + 12 * n.N, c=[cmap(n.V)], marker="s" if n.complete else "o",
                   edgecolors="k", linewidths=0.5, zorder=3)
        if n.correct is not None:
            ax.text(x, y - 0.28, "✓" if n.correct else "✗", ha="center", va="top", fontsize=8,
                    color="green" if n.correct else "red")
    ax.set_xticks([])
    ax.set_ylabel("depth (steps)")
    ax.set_yticks(sorted({-n.depth for n in tree.root.nodes()}))
    ax.set_yticklabels([str(-d) for d in sorted({-n.depth for n in tree.root.nodes()})])
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    ax.figure.colorbar(sm, ax=ax, label="V (search value)", fraction=0.03)


__all__ = ["PAPER", "Config", "ValueModel", "Node", "Tree", "uct", "best_child", "select", "backup", "search",
           "final_answers", "infer_values", "verified_traces", "train", "summary", "majority",
           "accuracy_vs_compute", "plot_tree"]
