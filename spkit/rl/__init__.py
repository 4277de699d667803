"""spkit.rl — the shared RL math: advantages, losses, tabular preference-game machinery.

Import from the submodules (`spkit.rl.losses`, `spkit.rl.advantages`, `spkit.rl.preference_games`);
nothing heavy is imported here so `import spkit.rl` stays cheap.
"""
