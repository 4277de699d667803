"""One file per paper. `spkit train ALGO ...` runs one of them.

Each algorithm module holds a `Config` dataclass (a `spkit.run.RunConfig` with the paper's own
fields; the command line is generated from it), `train(cfg, callback=None) -> History`, and,
where a run ends with a headline number, `summary(history) -> str`. `ALGOS` maps the command
name to the module; a module is imported only when its command runs.
"""

from __future__ import annotations

ALGOS: dict[str, tuple[str, str]] = {
    "spiral": ("spkit.algos.spiral", "SPIRAL: multi-turn zero-sum self-play with role-conditioned advantages"),
    # preference games over a finite response set (exact and sampled forms, no language model)
    "spo": ("spkit.algos.spo", "SPO: self-play preference optimisation (win-rate reward)"),
    "sppo": ("spkit.algos.sppo", "SPPO: self-play preference optimisation (squared loss)"),
    "inpo": ("spkit.algos.inpo", "INPO: iterative Nash policy optimisation (pairwise loss)"),
    "nash_md": ("spkit.algos.nash_md", "Nash-MD: mirror descent toward a geometric mixture"),
    "nash_mp": ("spkit.algos.nash_mp", "Nash-MP: mirror prox (extrapolated) preference learning"),
    "online_dpo": ("spkit.algos.online_dpo", "online iterative DPO (best vs worst of K samples)"),
    "rlhf_bt": ("spkit.algos.rlhf_bt", "classic RLHF with a Bradley-Terry reward (baseline)"),
    # self-improving reasoning on a verifiable task (spkit_arith)
    "rft": ("spkit.algos.rft", "RFT: rejection-sampling fine-tuning (sample K, keep the correct, SFT)"),
    "grpo": ("spkit.algos.grpo", "GRPO / Dr. GRPO / DAPO: group-relative policy optimisation"),
    "star": ("spkit.algos.star", "STaR: few-shot rationales + rationalisation, fine-tuned from the base each round"),
    "b_star": ("spkit.algos.b_star", "B-STaR: self-taught reasoning with (temperature, threshold) chosen by balance score"),
    "nft": ("spkit.algos.nft", "NFT: negative-aware fine-tuning (RFT that also learns from wrong answers)"),
    "sec": ("spkit.algos.sec", "SEC: self-evolving curriculum (a bandit over difficulty levels) on GRPO"),
    "rlsp": ("spkit.algos.rlsp", "RLSP: GRPO on correctness plus a bounded exploration reward"),
    # step critics (spkit_steps, ProcessBench's format)
    "spc": ("spkit.algos.spc", "SPC: self-play critic (a sneaky generator vs a step critic, zero-sum)"),
    "rest_mcts": ("spkit.algos.rest_mcts", "ReST-MCTS*: MCTS over steps with a self-trained value model; "
                  "policy SFT on verified traces"),
    # learning to self-correct: two attempts (spkit_arith_correct)
    "sft_corrections": ("spkit.algos.sft_corrections", "SFT on the model's own wrong -> right corrections "
                        "(the STaR baseline SCoRe shows collapsing)"),
    "rise": ("spkit.algos.rise", "RISE: multi-turn rollouts, best-of-N improvement targets, reward-weighted SFT"),
    "score": ("spkit.algos.score", "SCoRe: two-stage multi-turn RL for self-correction (KL pin, then a progress bonus)"),
    "self_refine": ("spkit.algos.self_refine", "SELF: feedback + refinement meta-skills, then SFT on the model's "
                    "own accepted refinements"),
    "evolve": ("spkit.algos.evolve", "EVOLVE: iterative DPO on self-refinement chains (refine pairs + direct pairs)"),
    # games beyond zero-sum
    "vision_zero": ("spkit.algos.vision_zero", "Vision-Zero (text): Who-is-the-Spy self-play, clue and vote "
                    "rewards, Iterative-SPO"),
    "epo": ("spkit.algos.epo", "EPO: a strategy model guides a frozen actor in negotiation; multi-turn RL with "
            "process rewards, iterative self-play"),
    "self_redteam": ("spkit.algos.self_redteam", "Self-RedTeam: one model as attacker and defender on a "
                     "synthetic red-teaming game (general-sum reward, --think hidden reasoning)"),
    "negotiation_feedback": ("spkit.algos.negotiation_feedback", "Negotiation with AI feedback: a critic's "
                             "suggestions in context over bargaining rounds (no weight update; meta-SFT first)"),
    # iterative alignment on instruction following (spkit_ifeval_lite, rule checkers as the oracle)
    "spar": ("spkit.algos.spar", "SPaR: self-judge (majority vote), tree-search refinement, DPO on refinement pairs"),
    "online_iterative_dpo": ("spkit.algos.online_iterative_dpo", "online iterative DPO on an LM (best vs worst of K, "
                             "checker reward)"),
    "self_rewarding": ("spkit.algos.self_rewarding", "Self-Rewarding LM: the model scores its own samples, DPO "
                       "(--temporal: Temporal Self-Rewarding)"),
    "self_consuming": ("spkit.algos.self_consuming", "self-consuming loop: retrain on curated own samples "
                       "(reward up, diversity down)"),
}
