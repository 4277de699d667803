"""spkit.rl"""
