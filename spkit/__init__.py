"""spkit: self-play and self-improvement methods for language models, small enough to read.

Import what you need from the submodules (`spkit.models`, `spkit.generation`, `spkit.sampling`,
`spkit.games`, `spkit.solvers`, `spkit.algos.<paper>`, `spkit.evals`, `spkit.widgets`); the top
level stays light so `import spkit` never pulls in torch.
"""

__version__ = "0.1.0"
