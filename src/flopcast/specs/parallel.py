"""ParallelPlan: how a training step is split over devices, with every divisibility rule.

Degrees: tp (tensor), pp (pipeline), dp (data, including ZeRO/FSDP shards), cp (context), ep
(expert; its ranks are carved out of the dp x cp ranks as in Megatron-Core), vpp (virtual pipeline
stages per device, interleaved 1F1B). num_devices = tp x pp x dp x cp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flopcast.errors import InvalidScenario, UnknownName
from flopcast.specs.fields import check_keys, choice, flag
from flopcast.specs.model import LatentAttention, ModelSpec, MoEFFN

RECOMPUTE = ("none", "selective", "full")
# Megatron-Core --recompute-modules (with --recompute-granularity selective): what selective
# recompute repeats in the backward instead of keeping for it; default core attention only.
RECOMPUTE_MODULES = ("core_attn", "layernorm", "mla_up_proj", "moe_act")
OFFLOAD = ("none", "cpu", "nvme")
ZERO_STAGES = (0, 1, 2, 3)
PARALLEL_KEYS = ("tp", "pp", "dp", "cp", "ep", "sp", "vpp", "zero_stage", "recompute",
                 "microbatch_seqs", "offload", "ep_comm_overlap", "etp", "pipeline_layout", "pp_schedule",
                 "recompute_modules", "shard_group", "activation_offload")
PP_SCHEDULES = ("1f1b", "interleaved", "dualpipe", "zero_bubble")


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
    ep_comm_overlap: bool = False
    etp: int | None = None                         # expert tensor parallel; None = tp
    # layers per virtual stage (pp x vpp entries), or "balanced": the split that evens out the
    # stages' work with the embedding, the head and any MTP modules counted (estimate/training/layout.py)
    pipeline_layout: tuple[int, ...] | str | None = None
    pp_schedule: str = "1f1b"
    recompute_modules: tuple[str, ...] = ("core_attn",)
    # ZeRO/FSDP shard group (FSDP2 hybrid sharding, DeepSpeed MiCS): states sharded over this many
    # of the dp x cp ranks, replicated across the dp cp / shard_group groups; None = all of them
    shard_group: int | None = None
    # share of the kept activations moved to host memory during the forward and brought back for
    # the backward (Megatron-Core --cpu-offloading-num-layers / layers, torch save_on_cpu)
    activation_offload: float = 0.0

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def zero_group(self) -> int:
        """Ranks one ZeRO/FSDP shard of the model states is spread over."""
        return self.shard_group or self.dp * self.cp

    @property
    def expert_tp(self) -> int:
        return self.etp or self.tp

    @property
    def expert_dp(self) -> int:
        """Ranks holding the same experts (ZeRO shards expert state over them): tp cp dp / (ep etp)."""
        return max(1, self.tp * self.cp * self.dp // (self.ep * self.expert_tp))

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in PARALLEL_KEYS}
        d["etp"] = self.expert_tp
        layout = self.pipeline_layout
        d["pipeline_layout"] = list(layout) if isinstance(layout, tuple) else layout
        d["recompute_modules"] = list(self.recompute_modules) if self.recompute == "selective" else None
        return d

    def recomputes(self, module: str) -> bool:
        """Whether selective recompute repeats this module (full recompute repeats everything)."""
        return self.recompute == "full" or (self.recompute == "selective" and module in self.recompute_modules)


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
        offload=offload, ep_comm_overlap=flag(data, "parallel", "ep_comm_overlap", False),
        etp=_pos_int(data, "etp", 1) if data.get("etp") is not None else None,
        pipeline_layout=_layout(data.get("pipeline_layout")),
        pp_schedule=choice(data, "parallel", "pp_schedule", "1f1b", PP_SCHEDULES),
        recompute_modules=_modules(data.get("recompute_modules"), recompute),
        shard_group=_pos_int(data, "shard_group", 1) if data.get("shard_group") is not None else None,
        activation_offload=_fraction(data.get("activation_offload", 0.0), "parallel.activation_offload"),
    )


def _fraction(value: Any, field: str) -> float:
    """A share in [0, 1]; true means 1 and false 0."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InvalidScenario(f"{field}: expected a share of the activations between 0 and 1 (or true/false), "
                              f"got {value!r}")
    return float(value)


def _modules(value: Any, recompute: str) -> tuple[str, ...]:
    """parallel.recompute_modules: a list drawn from RECOMPUTE_MODULES (selective recompute only)."""
    if value is None:
        return ("core_attn",)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidScenario("parallel.recompute_modules: expected a list such as [layernorm, mla_up_proj, moe_act]; "
                              f"accepted: {', '.join(RECOMPUTE_MODULES)}")
    for v in value:
        if v not in RECOMPUTE_MODULES:
            raise UnknownName("parallel.recompute_modules", str(v), RECOMPUTE_MODULES)
    if recompute != "selective":
        raise InvalidScenario(f"parallel.recompute_modules: applies to recompute: selective, not {recompute!r}")
    return tuple(dict.fromkeys(value))


def _layout(value: Any) -> tuple[int, ...] | str | None:
    """parallel.pipeline_layout: a list of transformer layers per virtual stage, or a Megatron-Core
    layout string: stages separated by `|`, `t` a transformer layer, `E` the embedding and `L` the
    loss (placement markers), `(...)*n` a repeated group; e.g. "Et|(tt|)*30L" = [1, 2 x 30, 0]."""
    import re

    if value is None:
        return None
    if value == "balanced":
        return "balanced"
    if isinstance(value, (list, tuple)):
        if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
            raise InvalidScenario("parallel.pipeline_layout: expected layer counts >= 0 per virtual stage, "
                                  f"e.g. [7, 8, 8, 7], got {value!r}")
        return tuple(value)
    if not isinstance(value, str):
        raise InvalidScenario("parallel.pipeline_layout: expected a list of layer counts, a layout string "
                              "such as \"Et|(tt|)*30L\", or balanced")
    text = value.replace(" ", "")
    pattern = re.compile(r"\(([^()]*)\)\*(\d+)")
    for _ in range(8):   # expand (group)*n, innermost first
        new = pattern.sub(lambda m: m.group(1) * int(m.group(2)), text)
        if new == text:
            break
        if len(new) > 100_000:
            raise InvalidScenario("parallel.pipeline_layout: the layout string expands beyond 100,000 characters")
        text = new
    if set(text) - set("EtL|"):
        bad = sorted(set(text) - set("EtL|"))
        raise InvalidScenario(f"parallel.pipeline_layout: unknown symbol(s) {''.join(bad)!r}; accepted: E (embedding), "
                              "t (transformer layer), L (loss), | (stage boundary), (...)*n (repeat)")
    return tuple(stage.count("t") for stage in text.split("|"))


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
        if L < p.pp * p.vpp and p.pipeline_layout is None:
            raise InvalidScenario(
                f"parallel.vpp: pp*vpp = {p.pp}*{p.vpp} = {p.pp * p.vpp} virtual stages exceed the {L} layers")
    experts = [lay.ffn.num_experts for lay in model.layers if isinstance(lay.ffn, MoEFFN)]
    if p.ep > 1:
        if not experts:
            raise InvalidScenario(f"parallel.ep: {p.ep} > 1 but {model.name} has no MoE layers")
        if experts[0] % p.ep:
            raise InvalidScenario(f"parallel.ep: {p.ep} must divide the {experts[0]} experts")
        if (p.tp * p.cp * p.dp) % (p.ep * p.expert_tp):
            raise InvalidScenario(
                f"parallel.ep: ep*etp = {p.ep}*{p.expert_tp} must divide tp*cp*dp = {p.tp}*{p.cp}*{p.dp} = "
                f"{p.tp * p.cp * p.dp} (MoE parallel folding, Megatron-Core)")
    if p.etp is not None and experts:
        f = next(lay.ffn.expert_d_ff for lay in model.layers if isinstance(lay.ffn, MoEFFN))
        if f % p.etp:
            raise InvalidScenario(f"parallel.etp: {p.etp} must divide the expert FFN width {f}")
    if isinstance(p.pipeline_layout, tuple):
        if len(p.pipeline_layout) != p.pp * p.vpp:
            raise InvalidScenario(
                f"parallel.pipeline_layout: {len(p.pipeline_layout)} virtual stages given, pp*vpp = "
                f"{p.pp}*{p.vpp} = {p.pp * p.vpp} needed")
        if sum(p.pipeline_layout) != L:
            raise InvalidScenario(
                f"parallel.pipeline_layout: {sum(p.pipeline_layout)} layers given, the model has {L}")
    if p.pp_schedule == "dualpipe" and p.pp % 2:
        raise InvalidScenario(f"parallel.pp_schedule: dualpipe runs two pipelines in opposite directions and "
                              f"needs an even pp, got {p.pp}")
    if p.pp_schedule in ("dualpipe", "zero_bubble") and p.pp == 1:
        raise InvalidScenario(f"parallel.pp_schedule: {p.pp_schedule} needs pp > 1")
    if p.pp_schedule in ("dualpipe", "zero_bubble") and p.vpp > 1:
        raise InvalidScenario(f"parallel.vpp: {p.pp_schedule} runs one stage per rank and direction; "
                              f"vpp must be 1, got {p.vpp} (interleaving is pp_schedule: 1f1b with vpp > 1)")
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
    if p.shard_group is not None:
        if (p.dp * p.cp) % p.shard_group:
            raise InvalidScenario(f"parallel.shard_group: {p.shard_group} must divide dp*cp = {p.dp}*{p.cp} = "
                                  f"{p.dp * p.cp} (hybrid sharding replicates whole shard groups)")
        if p.zero_stage == 0:
            raise InvalidScenario("parallel.shard_group: sharding needs zero_stage >= 1")
    if p.offload != "none" and p.zero_stage == 0:
        raise InvalidScenario("parallel.offload: offloading needs zero_stage >= 1 (ZeRO-Offload shards "
                              "the optimizer state it moves to the host)")
