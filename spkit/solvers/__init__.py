"""spkit.solvers"""
