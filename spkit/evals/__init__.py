"""spkit.evals"""
