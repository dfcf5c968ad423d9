"""Serving fleets over regions and hours: spec parsing (spec), unit capacities from the serving
estimator (capacity), the region x hour grid (sizing), aggregation and the choice among candidate
deployments (plan); the day's charts are rendered by report/fleet_plot.py. See docs/fleet.md."""

from flopcast.fleet.plan import FleetReport, plan_fleet

__all__ = ["FleetReport", "plan_fleet"]
