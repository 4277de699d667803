"""spkit.widgets"""
