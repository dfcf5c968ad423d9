"""Serving schedulers, one class per file, registered by the name users write in
`inference.scheduler`: static, vllm, sarathi, disaggregated."""

from flopcast.sim.schedulers import disaggregated, sarathi, static, vllm
from flopcast.sim.schedulers.base import SCHEDULERS, Scheduler

__all__ = ["SCHEDULERS", "Scheduler", "disaggregated", "sarathi", "static", "vllm"]
