"""spkit.rl — the shared RL math: losses, advantages, self-play rollouts, preference-game updates,
tabular self-play policy gradient and average policies.

Import from the submodules (`spkit.rl.losses`, `spkit.rl.advantages`, `spkit.rl.preference_games`);
nothing heavy is imported here so `import spkit.rl` stays cheap.
"""
