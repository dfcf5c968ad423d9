"""Frozen specifications: models, hardware, scenarios."""
