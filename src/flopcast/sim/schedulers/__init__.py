"""Serving schedulers, one class per file, registered by the name users write in
`inference.scheduler`: static, vllm (V0), vllm-v1, sarathi, disaggregated, splitfuse (DeepSpeed-FastGen), tgi,
sglang (SGLang's prefill-first default)."""

from flopcast.sim.schedulers import disaggregated, sarathi, sglang, splitfuse, static, tgi, vllm, vllm_v1
from flopcast.sim.schedulers.base import SCHEDULERS, Scheduler

__all__ = ["SCHEDULERS", "Scheduler", "disaggregated", "sarathi", "sglang", "splitfuse", "static", "tgi", "vllm", "vllm_v1"]
