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
# ZeRO-Infinity placement (DeepSpeed zero_optimization.offload_param.device and
# offload_optimizer.device) and memory-centric tiling: reported only when set, so a plan without
# them prints (and freezes) as before
INFINITY_KEYS = ("offload_param", "offload_optimizer", "tiling")
ALL_PARALLEL_KEYS = (*PARALLEL_KEYS, *INFINITY_KEYS)
# 1f1b is interleaved when vpp > 1; zero_bubble is ZB-H1; the micro-batch counts each schedule needs
# are checked by flopcast.estimate.pipeline.refusal once the step's micro-batch count is known
PP_SCHEDULES = ("1f1b", "interleaved", "dualpipe", "zero_bubble", "gpipe", "zb_h2", "dualpipev")
ONE_CHUNK_SCHEDULES = ("dualpipe", "zero_bubble", "gpipe", "zb_h2", "dualpipev")


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
    # ZeRO-Infinity (Rajbhandari et al., SC'21): where the 16-bit parameters live (none = on the
    # device; cpu/nvme need ZeRO-3), where the fp32 optimizer state and gradients live (None: as
    # `offload` says), and the memory-centric tiling factor of the largest operators (TiledLinear)
    offload_param: str = "none"
    offload_optimizer: str | None = None
    tiling: int = 1

    def __post_init__(self) -> None:
        """Refuse a plan that no model, cluster or batch could run (the model-, cluster- and
        batch-dependent rules are `validate_plan`'s), so no estimator ever sees one."""
        _check_degrees(self)
        _check_choices(self)
        _check_pipeline(self)
        _check_sharding(self)
        _check_infinity(self)

    @property
    def optimizer_device(self) -> str:
        """Where the optimizer state lives: offload_optimizer when given, else offload."""
        return self.offload_optimizer if self.offload_optimizer is not None else self.offload

    @property
    def infinity(self) -> bool:
        """Whether a ZeRO-Infinity key is set (estimate/training/infinity.py places the states)."""
        return self.offload_param != "none" or self.offload_optimizer not in (None, "none") or self.tiling > 1

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
        if self.infinity:
            d |= {k: getattr(self, k) for k in INFINITY_KEYS}
        return d

    def recomputes(self, module: str) -> bool:
        """Whether selective recompute repeats this module (full recompute repeats everything)."""
        return self.recompute == "full" or (self.recompute == "selective" and module in self.recompute_modules)


DEFAULT_RECOMPUTE_MODULES = ("core_attn",)


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_degrees(p: ParallelPlan) -> None:
    """Every degree and the micro-batch a positive integer; etp and shard_group None or one."""
    for key in ("tp", "pp", "dp", "cp", "ep", "vpp", "microbatch_seqs"):
        if not _positive(getattr(p, key)):
            raise InvalidScenario(f"parallel.{key}: expected a positive integer, got {getattr(p, key)!r}")
    for key in ("etp", "shard_group"):
        value = getattr(p, key)
        if value is not None and not _positive(value):
            raise InvalidScenario(f"parallel.{key}: expected a positive integer (or none), got {value!r}")
    for key in ("sp", "ep_comm_overlap"):
        if not isinstance(getattr(p, key), bool):
            raise InvalidScenario(f"parallel.{key}: expected true or false, got {getattr(p, key)!r}")


def _check_choices(p: ParallelPlan) -> None:
    """Named options from their closed sets; activation_offload a share in [0, 1]; recompute_modules
    from RECOMPUTE_MODULES, and other than the default only with selective recompute."""
    if p.zero_stage not in ZERO_STAGES or isinstance(p.zero_stage, bool):
        raise InvalidScenario(f"parallel.zero_stage: {p.zero_stage!r}; accepted: 0, 1, 2, 3 (3 = FSDP full shard)")
    for key, accepted in (("recompute", RECOMPUTE), ("offload", OFFLOAD), ("pp_schedule", PP_SCHEDULES)):
        if getattr(p, key) not in accepted:
            raise UnknownName(f"parallel.{key}", str(getattr(p, key)), accepted)
    share = p.activation_offload
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
        raise InvalidScenario(f"parallel.activation_offload: expected a share of the activations between 0 and 1, "
                              f"got {share!r}")
    if not isinstance(p.recompute_modules, tuple) or not p.recompute_modules:
        raise InvalidScenario("parallel.recompute_modules: expected a non-empty list drawn from "
                              f"{', '.join(RECOMPUTE_MODULES)}, got {p.recompute_modules!r}")
    for module in p.recompute_modules:
        if module not in RECOMPUTE_MODULES:
            raise UnknownName("parallel.recompute_modules", str(module), RECOMPUTE_MODULES)
    if p.recompute != "selective" and p.recompute_modules != DEFAULT_RECOMPUTE_MODULES:
        raise InvalidScenario(f"parallel.recompute_modules: applies to recompute: selective, not {p.recompute!r}")


def _check_pipeline(p: ParallelPlan) -> None:
    """Interleaving needs a pipeline; DualPipe an even pp; DualPipe(V), zero bubble (ZB-H1, ZB-H2)
    pp > 1; they and GPipe vpp 1; an explicit layout pp x vpp virtual stages of at least one
    transformer layer each."""
    if p.vpp > 1 and p.pp == 1:
        raise InvalidScenario("parallel.vpp: interleaving (vpp > 1) needs pp > 1")
    if p.pp_schedule == "dualpipe" and p.pp % 2:
        raise InvalidScenario(f"parallel.pp_schedule: dualpipe runs two pipelines in opposite directions and "
                              f"needs an even pp, got {p.pp}")
    if p.pp_schedule in ("dualpipe", "zero_bubble", "zb_h2", "dualpipev") and p.pp == 1:
        raise InvalidScenario(f"parallel.pp_schedule: {p.pp_schedule} needs pp > 1")
    if p.pp_schedule in ONE_CHUNK_SCHEDULES and p.vpp > 1:
        raise InvalidScenario(f"parallel.vpp: {p.pp_schedule} runs one stage per rank and direction; "
                              f"vpp must be 1, got {p.vpp} (interleaving is pp_schedule: 1f1b with vpp > 1)")
    layout = p.pipeline_layout
    if layout is None or layout == "balanced":
        return
    if not isinstance(layout, tuple):
        raise InvalidScenario(f"parallel.pipeline_layout: expected balanced or a list of transformer layers per "
                              f"virtual stage, got {layout!r}")
    # the first virtual stage holds the embedding and the last the head and loss (Megatron-Core's E
    # and L), so either may hold no transformer layer ("Et|(tt|)*30L"); a stage between them must
    bad = next((i for i, n in enumerate(layout) if not (_positive(n) or (n == 0 and not isinstance(n, bool)
                                                                          and i in (0, len(layout) - 1)))), None)
    if bad is not None:
        raise InvalidScenario(f"parallel.pipeline_layout: virtual stage {bad} holds {layout[bad]!r} transformer "
                              "layers; accepted: at least 1 per virtual stage, or 0 on the first (embedding only) "
                              "or the last (head and loss only)")
    if len(layout) != p.pp * p.vpp:
        raise InvalidScenario(f"parallel.pipeline_layout: {len(layout)} virtual stages given, pp*vpp = "
                              f"{p.pp}*{p.vpp} = {p.pp * p.vpp} needed")


def _check_sharding(p: ParallelPlan) -> None:
    """A shard group divides dp cp and, like optimizer offload, needs ZeRO (zero_stage >= 1). (The
    expert layout's folding rule is validate_plan's: only a MoE model has one, and a dense model
    with ep > 1 is told that first.)"""
    if p.shard_group is not None:
        if (p.dp * p.cp) % p.shard_group:
            raise InvalidScenario(f"parallel.shard_group: {p.shard_group} must divide dp*cp = {p.dp}*{p.cp} = "
                                  f"{p.dp * p.cp} (hybrid sharding replicates whole shard groups)")
        if p.zero_stage == 0:
            raise InvalidScenario("parallel.shard_group: sharding needs zero_stage >= 1")
    if p.offload != "none" and p.zero_stage == 0:
        raise InvalidScenario("parallel.offload: offloading needs zero_stage >= 1 (ZeRO-Offload shards "
                              "the optimizer state it moves to the host)")


def _check_infinity(p: ParallelPlan) -> None:
    """ZeRO-Infinity: parameter offload and tiling need ZeRO-3 (the parameters are partitioned and
    fetched operator by operator); optimizer offload needs ZeRO >= 1; offload and
    offload_optimizer, when both given, agree."""
    if p.offload_param not in OFFLOAD:
        raise UnknownName("parallel.offload_param", str(p.offload_param), OFFLOAD)
    if p.offload_optimizer is not None and p.offload_optimizer not in OFFLOAD:
        raise UnknownName("parallel.offload_optimizer", str(p.offload_optimizer), OFFLOAD)
    if not _positive(p.tiling):
        raise InvalidScenario(f"parallel.tiling: expected a positive integer (tiles per large operator), got {p.tiling!r}")
    if p.offload_param != "none" and p.zero_stage != 3:
        raise InvalidScenario(f"parallel.offload_param: parameter offload needs zero_stage: 3 (ZeRO-Infinity offloads "
                              f"the partitioned parameters), got zero_stage {p.zero_stage}")
    if p.tiling > 1 and p.zero_stage != 3:
        raise InvalidScenario(f"parallel.tiling: memory-centric tiling needs zero_stage: 3 (each tile's parameters are "
                              f"fetched and released in turn), got zero_stage {p.zero_stage}")
    if p.offload_optimizer not in (None, "none") and p.zero_stage == 0:
        raise InvalidScenario("parallel.offload_optimizer: offloading needs zero_stage >= 1")
    if p.offload_optimizer is not None and p.offload != "none" and p.offload != p.offload_optimizer:
        raise InvalidScenario(f"parallel.offload_optimizer: {p.offload_optimizer} contradicts parallel.offload: "
                              f"{p.offload} (give one of them)")


def _pos_int(data: Mapping[str, Any], key: str, default: int) -> int:
    v = data.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        if isinstance(v, float) and v.is_integer() and v >= 1:
            return int(v)
        raise InvalidScenario(f"parallel.{key}: expected a positive integer, got {v!r}")
    return v


def _optional_pos_int(data: Mapping[str, Any], key: str) -> int | None:
    return _pos_int(data, key, 1) if data.get(key) is not None else None


def _zero_stage(data: Mapping[str, Any], key: str) -> int:
    zero = data.get(key, 1)
    if zero not in ZERO_STAGES or isinstance(zero, bool):
        raise InvalidScenario(f"parallel.zero_stage: {zero!r}; accepted: 0, 1, 2, 3 (3 = FSDP full shard)")
    return int(zero)


# how each key of the `parallel` section is read, in the order its errors are reported
_READERS: dict[str, Any] = {
    "sp": lambda d, k: flag(d, "parallel", k, False),
    "zero_stage": _zero_stage,
    "recompute": lambda d, k: choice(d, "parallel", k, "selective", RECOMPUTE),
    "offload": lambda d, k: choice(d, "parallel", k, "none", OFFLOAD),
    **{k: (lambda d, k: _pos_int(d, k, 1)) for k in ("tp", "pp", "dp", "cp", "ep", "vpp", "microbatch_seqs")},
    "ep_comm_overlap": lambda d, k: flag(d, "parallel", k, False),
    "etp": _optional_pos_int,
    "pipeline_layout": lambda d, k: _layout(d.get(k)),
    "pp_schedule": lambda d, k: choice(d, "parallel", k, "1f1b", PP_SCHEDULES),
    "recompute_modules": lambda d, k: _modules(d.get(k), choice(d, "parallel", "recompute", "selective", RECOMPUTE)),
    "shard_group": _optional_pos_int,
    "activation_offload": lambda d, k: _fraction(d.get(k, 0.0), "parallel.activation_offload"),
    "offload_param": lambda d, k: choice(d, "parallel", k, "none", OFFLOAD),
    "offload_optimizer": lambda d, k: choice(d, "parallel", k, "none", OFFLOAD),
    "tiling": lambda d, k: _pos_int(d, k, 1),
}


def plan_fields(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keys a `parallel` mapping gives, each read and checked on its own (type, range, name; an
    unknown key gets suggestions), as ParallelPlan fields. The rules between keys are the plan's,
    checked when it is built, so a partial mapping (`--fix vpp=2`) reads here without a pp."""
    if data is not None and not isinstance(data, Mapping):
        raise InvalidScenario("parallel: expected a mapping such as {tp: 8, pp: 4, dp: 16}")
    data = dict(data or {})
    check_keys(data, "parallel", ALL_PARALLEL_KEYS)
    return {key: read(data, key) for key, read in _READERS.items() if key in data}


def plan_from_mapping(data: Mapping[str, Any] | None) -> ParallelPlan:
    """Parse the `parallel` section (unknown keys get suggestions) into a plan (defaults for the
    keys it leaves out); a plan no model could run is refused here (ParallelPlan.__post_init__)."""
    return ParallelPlan(**plan_fields(data))


def pinned_plan_keys(data: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A partial plan (`--fix` keys, a phase's parallel keys) as (name, value) pairs in `to_dict` form
    (lists for the layout and the recompute modules), in PARALLEL_KEYS order."""
    fields = plan_fields(data)
    return tuple((k, list(fields[k]) if isinstance(fields[k], tuple) else fields[k])
                 for k in ALL_PARALLEL_KEYS if k in fields)


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
    loss (placement markers), `(...)*n` a repeated group; e.g. "Et|(tt|)*30L" = [1, 2 x 30, 0]. Every
    virtual stage between the first and the last holds at least one transformer layer (the plan's
    constructor refuses a stage with none there)."""
    import re

    from flopcast.specs.limits import MAX_LAYERS, MAX_LAYOUT_CHARS

    if value is None:
        return None
    if value == "balanced":
        return "balanced"
    if isinstance(value, (list, tuple)):
        if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
            raise InvalidScenario("parallel.pipeline_layout: expected transformer-layer counts per virtual stage, "
                                  f"e.g. [7, 8, 8, 7], got {value!r}")
        return tuple(value)
    if not isinstance(value, str):
        raise InvalidScenario("parallel.pipeline_layout: expected a list of layer counts, a layout string "
                              "such as \"Et|(tt|)*30L\", or balanced")
    text = value.replace(" ", "")
    if len(text) > MAX_LAYOUT_CHARS:
        raise InvalidScenario(f"parallel.pipeline_layout: a layout string of {len(text):,} characters; "
                              f"at most {MAX_LAYOUT_CHARS:,}")
    pattern = re.compile(r"\(([^()]*)\)\*(\d+)")
    for _ in range(8):   # expand (group)*n, innermost first; the expanded length is checked before expanding
        matches = list(pattern.finditer(text))
        if not matches:
            break
        grown = len(text)
        for m in matches:
            if len(m.group(2)) > 6:
                raise InvalidScenario(f"parallel.pipeline_layout: repeat count {m.group(2)[:12]}... is past the "
                                      f"limit of {MAX_LAYOUT_CHARS:,}")
            grown += len(m.group(1)) * int(m.group(2)) - len(m.group(0))
        if grown > MAX_LAYOUT_CHARS:
            raise InvalidScenario(f"parallel.pipeline_layout: the layout string expands beyond "
                                  f"{MAX_LAYOUT_CHARS:,} characters (a model has at most {MAX_LAYERS:,} layers)")
        text = pattern.sub(lambda m: m.group(1) * int(m.group(2)), text)
    if set(text) - set("EtL|"):
        bad = sorted(set(text) - set("EtL|"))
        raise InvalidScenario(f"parallel.pipeline_layout: unknown symbol(s) {''.join(bad)!r}; accepted: E (embedding), "
                              "t (transformer layer), L (loss), | (stage boundary), (...)*n (repeat)")
    return tuple(stage.count("t") for stage in text.split("|"))


def validate_plan(plan: ParallelPlan, model: ModelSpec, *, num_devices: int, global_batch_seqs: int,
                  seq_len: int) -> None:
    """Raise InvalidScenario naming the rule and the numbers when the plan cannot run this model on
    this cluster with this batch (the rules of the plan alone are checked when it is built)."""
    if plan.num_devices != num_devices:
        raise InvalidScenario(
            f"parallel: tp*pp*dp*cp = {plan.tp}*{plan.pp}*{plan.dp}*{plan.cp} = {plan.num_devices} "
            f"must equal cluster.num_devices = {num_devices}")
    _check_heads(plan, model)
    _check_layers(plan, model)
    _check_experts(plan, model)
    _check_batch(plan, global_batch_seqs=global_batch_seqs, seq_len=seq_len)


def _check_heads(p: ParallelPlan, model: ModelSpec) -> None:
    """tp divides the attention heads and divides (or is a multiple of) the key/value heads."""
    attn = model.first_attention
    heads = attn.num_heads
    if heads % p.tp:
        raise InvalidScenario(f"parallel.tp: {p.tp} must divide the {heads} attention heads")
    if not isinstance(attn, LatentAttention) and attn.num_kv_heads % p.tp and p.tp % attn.num_kv_heads:
        raise InvalidScenario(
            f"parallel.tp: {p.tp} must divide the {attn.num_kv_heads} key/value heads "
            "(or be a multiple of them, replicating each kv head)")


def _check_layers(p: ParallelPlan, model: ModelSpec) -> None:
    """pp <= layers; the default split gives each virtual stage a layer; a layout holds every layer."""
    layers = model.num_layers
    if p.pp > layers:
        raise InvalidScenario(f"parallel.pp: {p.pp} pipeline stages exceed the {layers} layers")
    if p.vpp > 1 and layers < p.pp * p.vpp and p.pipeline_layout is None:
        raise InvalidScenario(
            f"parallel.vpp: pp*vpp = {p.pp}*{p.vpp} = {p.pp * p.vpp} virtual stages exceed the {layers} layers")
    if isinstance(p.pipeline_layout, tuple) and sum(p.pipeline_layout) != layers:
        raise InvalidScenario(
            f"parallel.pipeline_layout: {sum(p.pipeline_layout)} layers given, the model has {layers}")


def _check_experts(p: ParallelPlan, model: ModelSpec) -> None:
    """ep > 1 needs MoE layers, divides the experts and, times etp, divides tp cp dp (Megatron-Core
    MoE parallel folding); etp divides the expert FFN width."""
    moe = [lay.ffn for lay in model.layers if isinstance(lay.ffn, MoEFFN)]
    if p.ep > 1:
        if not moe:
            raise InvalidScenario(f"parallel.ep: {p.ep} > 1 but {model.name} has no MoE layers")
        if moe[0].num_experts % p.ep:
            raise InvalidScenario(f"parallel.ep: {p.ep} must divide the {moe[0].num_experts} experts")
        if (p.tp * p.cp * p.dp) % (p.ep * p.expert_tp):
            raise InvalidScenario(
                f"parallel.ep: ep*etp = {p.ep}*{p.expert_tp} must divide tp*cp*dp = {p.tp}*{p.cp}*{p.dp} = "
                f"{p.tp * p.cp * p.dp} (MoE parallel folding, Megatron-Core)")
    if p.etp is not None and moe and moe[0].expert_d_ff % p.etp:
        raise InvalidScenario(f"parallel.etp: {p.etp} must divide the expert FFN width {moe[0].expert_d_ff}")


def _check_batch(p: ParallelPlan, *, global_batch_seqs: int, seq_len: int) -> None:
    """cp splits each sequence into 2 cp chunks; dp divides the batch, the micro-batch the replica's
    share; the interleaved schedule needs micro-batches in multiples of pp."""
    if p.cp > 1 and seq_len % (2 * p.cp):
        raise InvalidScenario(
            f"parallel.cp: seq_len {seq_len} must be divisible by 2*cp = {2 * p.cp} "
            "(load-balanced causal context parallelism splits each sequence into 2*cp chunks)")
    if global_batch_seqs % p.dp:
        raise InvalidScenario(
            f"training.global_batch_seqs: {global_batch_seqs} is not divisible by dp = {p.dp}")
    per_replica = global_batch_seqs // p.dp
    if per_replica % p.microbatch_seqs:
        raise InvalidScenario(
            f"parallel.microbatch_seqs: {p.microbatch_seqs} must divide the per-replica batch "
            f"global_batch_seqs/dp = {global_batch_seqs}/{p.dp} = {per_replica}")
    m = per_replica // p.microbatch_seqs
    if p.vpp > 1 and m % p.pp:
        raise InvalidScenario(
            f"parallel.vpp: the interleaved schedule needs the number of micro-batches ({m}) "
            f"to be a multiple of pp ({p.pp})")
