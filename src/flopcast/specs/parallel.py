"""ParallelPlan: how a training step is split over devices, with every divisibility rule.

Degrees: tp (tensor), pp (pipeline), dp (data, including ZeRO/FSDP shards), cp (context), ep
(expert; its ranks are carved out of the dp x cp ranks as in Megatron-Core), vpp (virtual pipeline
stages per device, interleaved 1F1B). num_devices = tp x pp x dp x cp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flopcast.errors import InvalidScenario
from flopcast.specs.fields import check_keys, choice, flag
from flopcast.specs.model import LatentAttention, ModelSpec, MoEFFN

RECOMPUTE = ("none", "selective", "full")
OFFLOAD = ("none", "cpu", "nvme")
ZERO_STAGES = (0, 1, 2, 3)
PARALLEL_KEYS = ("tp", "pp", "dp", "cp", "ep", "sp", "vpp", "zero_stage", "recompute",
                 "microbatch_seqs", "offload")


@dataclass(frozen=True, slots=True, kw_only=True)
class ParallelPlan:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    sp: bool = False
    vpp: int = 1
    zero_stage: int = 1
    recompute: str = "selective"
    microbatch_seqs: int = 1
    offload: str = "none"

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in PARALLEL_KEYS}


def _pos_int(data: Mapping[str, Any], key: str, default: int) -> int:
    v = data.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        if isinstance(v, float) and v.is_integer() and v >= 1:
            return int(v)
        raise InvalidScenario(f"parallel.{key}: expected a positive integer, got {v!r}")
    return v


def plan_from_mapping(data: Mapping[str, Any] | None) -> ParallelPlan:
    """Parse the `parallel` section (unknown keys get suggestions)."""
    if data is not None and not isinstance(data, Mapping):
        raise InvalidScenario("parallel: expected a mapping such as {tp: 8, pp: 4, dp: 16}")
    data = dict(data or {})
    check_keys(data, "parallel", PARALLEL_KEYS)
    sp = flag(data, "parallel", "sp", False)
    zero = data.get("zero_stage", 1)
    if zero not in ZERO_STAGES or isinstance(zero, bool):
        raise InvalidScenario(f"parallel.zero_stage: {zero!r}; accepted: 0, 1, 2, 3 (3 = FSDP full shard)")
    recompute = choice(data, "parallel", "recompute", "selective", RECOMPUTE)
    offload = choice(data, "parallel", "offload", "none", OFFLOAD)
    return ParallelPlan(
        tp=_pos_int(data, "tp", 1), pp=_pos_int(data, "pp", 1), dp=_pos_int(data, "dp", 1),
        cp=_pos_int(data, "cp", 1), ep=_pos_int(data, "ep", 1), sp=sp, vpp=_pos_int(data, "vpp", 1),
        zero_stage=zero, recompute=recompute, microbatch_seqs=_pos_int(data, "microbatch_seqs", 1),
        offload=offload,
    )


def validate_plan(plan: ParallelPlan, model: ModelSpec, *, num_devices: int, global_batch_seqs: int,
                  seq_len: int) -> None:
    """Raise InvalidScenario naming the rule and the numbers when the plan cannot run."""
    p = plan
    if p.num_devices != num_devices:
        raise InvalidScenario(
            f"parallel: tp*pp*dp*cp = {p.tp}*{p.pp}*{p.dp}*{p.cp} = {p.num_devices} "
            f"must equal cluster.num_devices = {num_devices}")
    attn = model.layers[0].attention
    heads = attn.num_heads
    if heads % p.tp:
        raise InvalidScenario(f"parallel.tp: {p.tp} must divide the {heads} attention heads")
    if not isinstance(attn, LatentAttention) and attn.num_kv_heads % p.tp and p.tp % attn.num_kv_heads:
        raise InvalidScenario(
            f"parallel.tp: {p.tp} must divide the {attn.num_kv_heads} key/value heads "
            "(or be a multiple of them, replicating each kv head)")
    L = model.num_layers
    if p.pp > L:
        raise InvalidScenario(f"parallel.pp: {p.pp} pipeline stages exceed the {L} layers")
    if p.vpp > 1:
        if p.pp == 1:
            raise InvalidScenario("parallel.vpp: interleaving (vpp > 1) needs pp > 1")
        if L % (p.pp * p.vpp):
            raise InvalidScenario(
                f"parallel.vpp: {p.vpp} virtual stages must divide layers/pp = {L}/{p.pp}: "
                f"{L} layers is not a multiple of pp*vpp = {p.pp * p.vpp}")
    experts = [lay.ffn.num_experts for lay in model.layers if isinstance(lay.ffn, MoEFFN)]
    if p.ep > 1:
        if not experts:
            raise InvalidScenario(f"parallel.ep: {p.ep} > 1 but {model.name} has no MoE layers")
        if experts[0] % p.ep:
            raise InvalidScenario(f"parallel.ep: {p.ep} must divide the {experts[0]} experts")
        if (p.dp * p.cp) % p.ep:
            raise InvalidScenario(
                f"parallel.ep: {p.ep} must divide the data x context ranks dp*cp = {p.dp}*{p.cp} = {p.dp * p.cp}")
    if p.cp > 1 and seq_len % (2 * p.cp):
        raise InvalidScenario(
            f"parallel.cp: seq_len {seq_len} must be divisible by 2*cp = {2 * p.cp} "
            "(load-balanced causal context parallelism splits each sequence into 2*cp chunks)")
    per_replica = global_batch_seqs / p.dp
    if global_batch_seqs % p.dp:
        raise InvalidScenario(
            f"training.global_batch_seqs: {global_batch_seqs} is not divisible by dp = {p.dp}")
    if int(per_replica) % p.microbatch_seqs:
        raise InvalidScenario(
            f"parallel.microbatch_seqs: {p.microbatch_seqs} must divide the per-replica batch "
            f"global_batch_seqs/dp = {global_batch_seqs}/{p.dp} = {int(per_replica)}")
    m = int(per_replica) // p.microbatch_seqs
    if p.vpp > 1 and m % p.pp:
        raise InvalidScenario(
            f"parallel.vpp: the interleaved schedule needs the number of micro-batches ({m}) "
            f"to be a multiple of pp ({p.pp})")
    if p.offload != "none" and p.zero_stage == 0:
        raise InvalidScenario("parallel.offload: offloading needs zero_stage >= 1 (ZeRO-Offload shards "
                              "the optimizer state it moves to the host)")
