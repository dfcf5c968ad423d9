"""Estimators: pure functions of resolved specs."""
