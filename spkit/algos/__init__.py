"""spkit.algos"""
