"""Serving schedulers, one class per file, registered by the name users write in
`inference.scheduler`: static, vllm, sarathi, disaggregated, splitfuse (DeepSpeed-FastGen), tgi."""

from flopcast.sim.schedulers import disaggregated, sarathi, splitfuse, static, tgi, vllm
from flopcast.sim.schedulers.base import SCHEDULERS, Scheduler

__all__ = ["SCHEDULERS", "Scheduler", "disaggregated", "sarathi", "splitfuse", "static", "tgi", "vllm"]
