"""spkit.tasks"""
