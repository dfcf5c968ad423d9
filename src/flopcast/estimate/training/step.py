"""One training step as a pipeline of pure stages over frozen intermediate results:

    layer costs -> stage layout and stage work -> memory per rank -> micro-batch times ->
    schedule (bubble, point-to-point) -> data-parallel and optimizer -> step time, FLOPs, MFU

A caller that estimates many plans of one (model, hardware, training, cluster) passes a `cache`
dict; every entry is keyed by a frozen dataclass naming the plan fields its value depends on.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flopcast import units
from flopcast.assumption import Assumption
from flopcast.dtypes import BYTES_PER_ELEMENT
from flopcast.errors import InvalidScenario
from flopcast.estimate import comm, counts
from flopcast.estimate.pipeline import chunks_per_rank
from flopcast.estimate.roofline import COMM_UNITS, DeviceCtx
from flopcast.estimate.training import dataparallel as dpm
from flopcast.estimate.training import infinity
from flopcast.estimate.training.constants import GEMM_OPERAND_BYTES
from flopcast.estimate.training.device import Prepared, device_ctx, prepare
from flopcast.estimate.training.layer import Cost, Env, TimedOp, embed_cost, head_cost, layer_cost, mtp_cost
from flopcast.estimate.training.layout import layer_counts, rank_layers
from flopcast.estimate.training.memory import (
    MEMORY_BAND_FRAC,
    MEMORY_PARTS,
    PER_OP_SAC_STACKS,
    RankMemory,
    memory_verdict,
    per_op_sac_costs,
    rank_activations,
    rank_memory,
    rank_transient_activations,
    stashed_acts_per_microbatch,
    worst_rank_candidates,
)
from flopcast.estimate.training.result import TrainingEstimate
from flopcast.estimate.training.rows import report_rows
from flopcast.estimate.training.schedule import (
    PipelineTimes,
    pipeline_refusal,
    pipeline_times,
    pp_comm_per_microbatch_s,
    schedule_name,
)
from flopcast.estimate.training.stage import StageTimes, compose_stages, timed_stages
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec

T = TypeVar("T")


# --------------------------------------------------------------------------- cache keys
@dataclass(frozen=True, slots=True)
class PrepKey:
    """The device preparation (one per cache: the cache belongs to one model, hardware, training
    spec and cluster)."""


@dataclass(frozen=True, slots=True)
class CtxKey:
    tp_inside: bool


@dataclass(frozen=True, slots=True)
class LayerKey:
    """The plan fields a layer's cost depends on (hash computed once: it is looked up per plan)."""

    tp: int
    cp: int
    sp: bool
    ep: int
    expert_tp: int
    microbatch_seqs: int
    recompute: str
    recompute_modules: tuple[str, ...]
    single_stage: bool
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.tp, self.cp, self.sp, self.ep, self.expert_tp,
                                                self.microbatch_seqs, self.recompute, self.recompute_modules,
                                                self.single_stage)))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def of(cls, plan: ParallelPlan) -> LayerKey:
        return cls(plan.tp, plan.cp, plan.sp, plan.ep, plan.expert_tp, plan.microbatch_seqs, plan.recompute,
                   tuple(plan.recompute_modules), plan.pp == 1)


@dataclass(frozen=True, slots=True)
class LayoutKey:
    """The plan fields a (not balanced) layout depends on."""

    pp: int
    vpp: int
    pipeline_layout: Any


@dataclass(frozen=True, slots=True)
class StageKey:
    """The plan fields the stage work and its timing depend on beyond the layer costs' (looked up
    in the layer costs' entry)."""

    pp: int
    vpp: int
    pipeline_layout: Any
    pp_schedule: str
    ep_comm_overlap: bool


@dataclass(frozen=True, slots=True)
class RankKey:
    rank: int
    dp: int


@dataclass(frozen=True, slots=True)
class DpKey:
    dp: int
    shard_group: int | None


@dataclass(frozen=True, slots=True)
class FlopsKey:
    """Forward and attention FLOPs per token (one per cache)."""


def _memo(cache: dict[Any, Any], key: Any, make: Callable[[], T]) -> T:
    value = cache.get(key)
    if value is None:
        value = cache[key] = make()
    return value


# --------------------------------------------------------------------------- stage work
@dataclass(frozen=True, slots=True)
class LayerWork:
    """Per-micro-batch costs of each distinct layer, the head, the embedding and the MTP modules,
    with the timed op rows each cost is the sum of."""

    layers: tuple[Cost, ...]
    head: Cost
    embed: Cost
    mtp: Cost | None
    layer_rows: tuple[tuple[TimedOp, ...], ...]
    head_rows: tuple[TimedOp, ...]
    embed_rows: tuple[TimedOp, ...]
    mtp_rows: tuple[TimedOp, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    """Layers per virtual stage, each rank's layer indices and its distinct layers with counts."""

    sizes: tuple[int, ...]
    stages: tuple[tuple[int, ...], ...]
    groups: tuple[Counter[int], ...]


@dataclass(frozen=True, slots=True)
class StageWork:
    """The layout and each rank's summed cost."""

    layout: Layout
    costs: tuple[Cost, ...]
    heavy: Cost                      # the rank with the most parameters (the optimizer shard's)

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.layout.sizes

    @property
    def stages(self) -> tuple[tuple[int, ...], ...]:
        return self.layout.stages

    @property
    def groups(self) -> tuple[Counter[int], ...]:
        return self.layout.groups


def _layer_work(model: ModelSpec, plan: ParallelPlan, train: TrainingSpec, ctx: DeviceCtx,
                memo: dict[Any, Any] | None = None) -> LayerWork:
    env = Env(model=model, plan=plan, train=train, ctx=ctx, tokens=plan.microbatch_seqs * train.seq_len / plan.cp,
              memo=memo)
    walked = [layer_cost(env, spec) for spec in model.distinct_layers]
    layers = tuple(c for c, _ in walked)
    head, head_rows = head_cost(env)
    embed, embed_rows = embed_cost(env)
    n_mtp = train.mtp_layers or 0     # opt-in: the model's own count is reported by the api
    mtp, mtp_rows = mtp_cost(env, layers[model.layer_group_index[-1]], head, n_mtp) if n_mtp else (None, ())
    return LayerWork(layers, head, embed, mtp, tuple(r for _, r in walked), head_rows, embed_rows, mtp_rows)


def _layout(model: ModelSpec, plan: ParallelPlan, lw: LayerWork) -> Layout:
    group_of = model.layer_group_index
    balance = None
    if plan.pipeline_layout == "balanced":
        last_extra = lw.head.work_s() + (lw.mtp.work_s() if lw.mtp is not None else 0.0)
        balance = ([lw.layers[g].work_s() for g in group_of], lw.embed.work_s(), last_extra)
    sizes = layer_counts(plan, model.num_layers, balance)
    stages = rank_layers(sizes, plan.pp)
    return Layout(tuple(sizes), tuple(tuple(s) for s in stages),
                  tuple(Counter(group_of[i] for i in idx) for idx in stages))


def _stage_work(plan: ParallelPlan, lw: LayerWork, layout: Layout) -> StageWork:
    costs = compose_stages(lw.layers, layout.groups, head=lw.head, embed=lw.embed, mtp=lw.mtp,
                           dualpipe=plan.pp_schedule in ("dualpipe", "dualpipev"))
    return StageWork(layout, tuple(costs), max(costs, key=lambda c: c.params))


@dataclass(frozen=True, slots=True)
class LayerEntry:
    """The cache entry of one LayerKey: the layer work and the stage entries built on it."""

    work: LayerWork
    stages: dict[StageKey, StageEntry]
    # what stage keys differing only in a schedule that keeps the same stage costs share: the stage
    # work (by layout and DualPipe) and the timed stages (also by ep_comm_overlap), in one-item lists
    shared: dict[tuple, list[Any]] = field(default_factory=dict)


@dataclass(slots=True)
class StageEntry:
    """The cache entry of one StageKey under a LayerEntry: the stage work and what plans sharing it
    also share (activations per rank and dp, the timed stages, data-parallel collectives)."""

    work: StageWork
    acts: dict[RankKey, float] = field(default_factory=dict)
    dp: dict[DpKey, dpm.DpCollectives] = field(default_factory=dict)
    timed: list[Any] = field(default_factory=lambda: [None])   # [timed stages], shared (LayerEntry.shared)
    worst: dict[int, tuple[int, ...]] = field(default_factory=dict)   # ranks that can be the most loaded, by m


@dataclass(frozen=True, slots=True)
class PlanWork:
    """Everything of one plan up to the stage work, with the device it runs on."""

    prep: Prepared
    ctx: DeviceCtx
    layers: LayerWork
    stages: StageWork
    entry: StageEntry


def _stage_entry(model: ModelSpec, plan: ParallelPlan, le: LayerEntry, cache: dict[Any, Any]) -> StageEntry:
    lw = le.work
    dual = plan.pp_schedule in ("dualpipe", "dualpipev")
    wkey = (plan.pp, plan.vpp, plan.pipeline_layout, dual)
    work = le.shared.get(wkey)
    if work is None:
        if plan.pipeline_layout == "balanced":
            layout = _layout(model, plan, lw)
        else:
            layout = _memo(cache, LayoutKey(plan.pp, plan.vpp, plan.pipeline_layout), lambda: _layout(model, plan, lw))
        work = le.shared[wkey] = [_stage_work(plan, lw, layout)]
    return StageEntry(work[0], timed=le.shared.setdefault((*wkey, plan.ep_comm_overlap), [None]))


_PREP_KEY, _FLOPS_KEY = PrepKey(), FlopsKey()
_CTX_KEYS = {True: CtxKey(True), False: CtxKey(False)}


def plan_work(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec,
              scale_out_bandwidth_bytes_per_s: float | None, cache: dict[Any, Any],
              memo: dict[Any, Any] | None = None) -> PlanWork:
    """The plan's device, layer work and stage work, from the cache where another plan built them
    (the search's hot path: plain look-ups, the builders only on a miss). `memo`: what no calibration
    parameter changes (op rows, fixed layouts), kept across profiles by step_time_s's caller."""
    prep = cache.get(_PREP_KEY)
    if prep is None:
        prep = cache[_PREP_KEY] = prepare(hw, train, scale_out_bandwidth_bytes_per_s)
    ckey = _CTX_KEYS[plan.tp <= prep.scale_up_group]
    ctx = cache.get(ckey)
    if ctx is None:
        ctx = cache[ckey] = device_ctx(hw, train, prep, plan.tp)
    lkey = LayerKey.of(plan)
    le = cache.get(lkey)
    if le is None:
        le = cache[lkey] = LayerEntry(_layer_work(model, plan, train, ctx, memo), {})
    skey = StageKey(plan.pp, plan.vpp, plan.pipeline_layout, plan.pp_schedule, plan.ep_comm_overlap)
    se = le.stages.get(skey)
    if se is None:   # a fixed layout depends on no profile: memo holds it across profiles
        se = le.stages[skey] = _stage_entry(model, plan, le, cache if memo is None else memo)
    return PlanWork(prep, ctx, le.work, se.work, se)


# --------------------------------------------------------------------------- memory
@dataclass(frozen=True, slots=True)
class MemoryResult:
    rank: RankMemory               # the most-loaded rank
    ranks: tuple[RankMemory, ...]  # every pipeline rank, in order (explain=False: the candidates only)
    host_bytes_per_node: float
    verdict: str                   # fits / marginal / does not fit (memory.memory_verdict)
    fits: bool                     # not "does not fit", and the host memory holds the offloaded state
    reason: str | None


def _rank_acts(w: PlanWork, plan: ParallelPlan, m: int, rank: int, states: dict[Any, Any]
               ) -> tuple[float, tuple[Cost, ...]]:
    """(activations of `rank` before offload, the layer costs they were summed from)."""
    lw = w.layers
    akey = RankKey(rank, plan.dp)
    acts = w.entry.acts.get(akey)
    assert w.ctx.stack is not None
    layers = lw.layers
    if plan.recompute == "selective" and w.ctx.stack.name in PER_OP_SAC_STACKS:
        layers = states.get("sac") or states.setdefault("sac", per_op_sac_costs(lw.layers, lw.layer_rows))
    if acts is None:
        acts = w.entry.acts[akey] = rank_activations(layers, w.stages.groups, lw.head, plan, m, rank)
    return acts, layers


def _rank_memory(w: PlanWork, plan: ParallelPlan, train: TrainingSpec, shard: dpm.OptimizerShard, m: int,
                 rank: int, states: dict[Any, Any]) -> RankMemory:
    sw = w.stages
    acts, layers = _rank_acts(w, plan, m, rank, states)
    assert w.ctx.stack is not None
    transient = (rank_transient_activations(layers, sw.groups, w.layers.head, plan, rank)
                 if plan.activation_offload else 0.0)
    return rank_memory(sw.costs[rank], plan, train, w.ctx.stack, shard, n_layers=len(sw.stages[rank]), acts=acts,
                       layer_costs=layers, here=sw.groups[rank], transient=transient, states=states)


@dataclass(frozen=True, slots=True)
class WorstKey:
    """What memory.worst_rank_candidates depends on for a layout that is not balanced: the layout
    (which ranks hold which layers, and so which share one stage Cost: compose_stages shares by
    layers held and ends), the schedule (micro-batches in flight, DualPipe's pairs) and m."""

    pp: int
    vpp: int
    pipeline_layout: Any
    pp_schedule: str
    m: int


def _candidate_ranks(w: PlanWork, plan: ParallelPlan, m: int, cache: dict[Any, Any] | None = None
                     ) -> tuple[int, ...]:
    """The ranks that can be the most loaded (memory.worst_rank_candidates, once per stage entry and
    m; with `cache`, once per layout, schedule and m)."""
    sized = w.entry.worst.get(m)
    if sized is None:
        if cache is not None and plan.pipeline_layout != "balanced":
            key = WorstKey(plan.pp, plan.vpp, plan.pipeline_layout, plan.pp_schedule, m)
            sized = cache.get(key)
            if sized is None:
                sized = cache[key] = worst_rank_candidates(plan, m, w.stages.costs, w.stages.groups)
        else:
            sized = worst_rank_candidates(plan, m, w.stages.costs, w.stages.groups)
        w.entry.worst[m] = sized
    return sized


def _memory(w: PlanWork, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, shard: dpm.OptimizerShard,
            m: int, devices_per_node: int, *, explain: bool) -> MemoryResult:
    """Memory on every pipeline rank, the most-loaded one, and the verdict against capacity within
    the memory error band (memory.MEMORY_BAND_FRAC)."""
    states: dict[Any, Any] = {}
    sized: Any = range(plan.pp)
    if not explain:   # the search: only the ranks that can be the most loaded (same maximum)
        sized = _candidate_ranks(w, plan, m)
    ranks = tuple(_rank_memory(w, plan, train, shard, m, r, states) for r in sized)
    mem = max(ranks, key=lambda r: r.total)
    host_bytes = shard.host_bytes_per_node
    if plan.activation_offload:
        host_bytes += max(r.offloaded_acts for r in ranks) * devices_per_node
    cap = hw.hbm_capacity_bytes
    verdict = memory_verdict(mem.total, cap, least_bytes=mem.total - mem.fragmentation)
    fits = verdict != "does not fit"
    reason = None
    if not fits and explain:
        parts = dict(zip(MEMORY_PARTS, mem.parts, strict=True))
        biggest = max(parts, key=lambda k: parts[k])
        reason = (f"needs {units.format_bytes(mem.total)} per device, {units.format_bytes(mem.total - cap)} "
                  f"more than the {units.format_bytes(cap)} of {hw.id} (beyond the {MEMORY_BAND_FRAC:.0%} memory "
                  f"error band); largest part: {biggest} ({units.format_bytes(parts[biggest])})")
    if host_bytes and hw.host_memory_bytes_per_node and host_bytes > hw.host_memory_bytes_per_node:
        fits = False
        verdict = "does not fit"
        reason = None if not explain else (
            f"offloaded state needs {units.format_bytes(host_bytes)} of host memory per node; "
            f"the {hw.id} reference node has {units.format_bytes(hw.host_memory_bytes_per_node)}")
    nvme_reason = infinity.nvme_shortfall(shard.nvme_bytes * devices_per_node, hw) if plan.infinity else None
    if nvme_reason:
        fits, verdict, reason = False, "does not fit", nvme_reason if explain else None
    return MemoryResult(mem, ranks, host_bytes, verdict, fits, reason)


# --------------------------------------------------------------------------- time
@dataclass(frozen=True, slots=True)
class StepTimes:
    breakdown_s: dict[str, float]
    slow: StageTimes
    pipe: PipelineTimes

    @property
    def step_s(self) -> float:
        return sum(self.breakdown_s.values())


def _comm_sm_frac(hw: AcceleratorSpec) -> float:
    return COMM_UNITS / hw.compute_units if hw.compute_units else COMM_UNITS / 132


def _timed(w: PlanWork, plan: ParallelPlan, train: TrainingSpec, hw: AcceleratorSpec) -> tuple[list[StageTimes], int]:
    """Each rank's micro-batch times and the slowest rank (computed once per stage entry)."""
    box = w.entry.timed
    if box[0] is None:
        assert w.ctx.stack is not None
        box[0] = timed_stages(w.stages.costs, plan, train, w.ctx.stack, _comm_sm_frac(hw), embed=w.layers.embed,
                              mem_bytes_per_s=w.ctx.mem_bytes_per_s)
    return box[0]


def _pp_transfer_s(w: PlanWork, model: ModelSpec, plan: ParallelPlan, train: TrainingSpec,
                   devices_per_node: int) -> float:
    """One point-to-point transfer between (virtual) stages, the simulator's p2p_s."""
    mb_tokens = plan.microbatch_seqs * train.seq_len / plan.cp
    pp_comm_mb = pp_comm_per_microbatch_s(plan, mb_tokens, model.hidden_size, w.prep.links, devices_per_node)
    return pp_comm_mb / (2 * plan.vpp)


def _off_pipeline_s(w: PlanWork, model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec,
                    shard: dpm.OptimizerShard, m: int, devices_per_node: int) -> tuple[float, float, float]:
    """(dp_comm, offload, other) of one step: what the step adds after the pipelined part."""
    stack = w.ctx.stack
    assert stack is not None
    per_stage, slow = _timed(w, plan, train, hw)
    st = per_stage[slow]
    dp_s = 0.0
    if plan.dp * plan.cp > 1:
        dkey = DpKey(plan.dp, plan.shard_group)
        col = w.entry.dp.get(dkey)
        if col is None:
            col = w.entry.dp[dkey] = dpm.dp_collectives(w.stages.costs[slow], plan, train, hw, w.prep.links)
        dp_s = dpm.dp_comm_s(col, plan, train, hw, stack, m=m, slow=st, n_layers=len(w.stages.stages[slow]),
                             comm_sm_frac=_comm_sm_frac(hw))
    optimizer_s = dpm.optimizer_step_s(shard, plan, w.ctx.mem_bytes_per_s, devices_per_node)
    stash_b = 0.0
    if plan.activation_offload:   # what one micro-batch's forward leaves on the slow stage (what is offloaded)
        layers = w.layers.layers
        if plan.recompute == "selective" and stack.name in PER_OP_SAC_STACKS:
            layers = per_op_sac_costs(layers, w.layers.layer_rows)
        stash_b = stashed_acts_per_microbatch(layers, w.stages.groups[slow], plan.recompute == "full")
    offload = dpm.offload_s(shard, plan, dpm.host_link_bytes_per_s(hw, w.prep.eff), m=m, slow=st,
                            slow_act_bytes=stash_b)
    # tied embeddings split over first and last stage: their gradients are all-reduced each step
    emb_sync = 0.0
    if model.tie_embeddings and plan.pp > 1:
        emb_bytes = model.vocab_size * model.embed_dim / plan.tp * BYTES_PER_ELEMENT[train.grad_reduce_dtype]
        emb_sync = comm.ring_all_reduce_s(2, emb_bytes, w.prep.links, False)
    return dp_s, offload, optimizer_s + emb_sync


def _step_times(w: PlanWork, model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec,
                shard: dpm.OptimizerShard, m: int, devices_per_node: int, cache: dict[Any, Any]) -> StepTimes:
    per_stage, slow = _timed(w, plan, train, hw)
    st = per_stage[slow]
    pipe = pipeline_times(plan, m, per_stage, _pp_transfer_s(w, model, plan, train, devices_per_node))
    pp_comm = pipe.p2p_s[slow]
    bubble = max(0.0, pipe.step_s - m * st.total_s - pp_comm)   # 0 up to rounding when no rank waits
    dp_s, offload, other = _off_pipeline_s(w, model, hw, plan, train, shard, m, devices_per_node)
    breakdown = {"compute": m * st.compute_s, "tp_comm": m * st.tp_comm_s, "pp_bubble": bubble,
                 "pp_comm": pp_comm, "dp_comm": dp_s, "ep_comm": m * st.ep_comm_s,
                 "cp_comm": m * st.cp_comm_s, "offload": offload, "other": other}
    return StepTimes(breakdown, st, pipe)


def step_lower_bound_s(w: PlanWork, model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec,
                       shard: dpm.OptimizerShard, m: int, devices_per_node: int, *, pipelined_only: bool = False
                       ) -> float:
    """A lower bound on the step time without simulating the schedule: the busiest rank's work and
    its transfers (the pipelined part is never shorter: pipeline_times clamps it there, and the
    bubble is >= 0) plus (unless `pipelined_only`, a cheaper and lower bound) what the step adds
    after the pipelined part, none of it negative. The exact step equals the whole bound up to
    rounding when the bubble is 0."""
    low_s = pipelined_lower_bound_s(w, model, hw, plan, train, m, devices_per_node)
    if pipelined_only:
        return low_s
    dp_s, offload, other = _off_pipeline_s(w, model, hw, plan, train, shard, m, devices_per_node)
    return low_s + dp_s + offload + other


def pipelined_lower_bound_s(w: PlanWork, model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan,
                            train: TrainingSpec, m: int, devices_per_node: int) -> float:
    """step_lower_bound_s(pipelined_only=True): the same for every plan of a search block (it does
    not depend on the ZeRO stage or the offload)."""
    per_stage, slow = _timed(w, plan, train, hw)
    n = chunks_per_rank(schedule_name(plan), plan.vpp)
    p2p = 2 * m * n * _pp_transfer_s(w, model, plan, train, devices_per_node) if plan.pp > 1 else 0.0
    return m * per_stage[slow].total_s + p2p


# --------------------------------------------------------------------------- the step
def _hardware_flops(model: ModelSpec, plan: ParallelPlan, train: TrainingSpec, cache: dict[Any, Any]) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) of one step: 3 x forward (fine-tuning: counts.finetune_flops_per_token),
    plus what recompute repeats."""
    fwd_per_token, attn_per_token = _memo(cache, _FLOPS_KEY, lambda: (
        counts.forward_flops_per_token(model, train.seq_len, "causal"),
        counts.attention_flops_per_token(model, train.seq_len, "causal")))
    tokens = train.tokens_per_step
    model_flops = 3 * fwd_per_token * tokens
    ft = train.finetune
    if ft is not None:   # frozen base: no weight-gradient GEMMs, the adapters train (about 4N per token)
        model_flops = tokens * counts.finetune_flops_per_token(model, train.seq_len, ft.rank, ft.target_modules)
    extra = 0.0
    if plan.recompute == "full":
        extra = fwd_per_token * tokens
    elif plan.recompute == "selective":
        extra = (attn_per_token if "core_attn" in plan.recompute_modules else 0.0) * tokens
        if "mla_up_proj" in plan.recompute_modules:
            extra += counts.mla_up_projection_flops_per_token(model) * tokens
    return model_flops, model_flops + extra


def _result(w: PlanWork, model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec,
            mem: MemoryResult, times: StepTimes, shard: dpm.OptimizerShard, m: int,
            assumptions: tuple[Assumption, ...], cache: dict[Any, Any]) -> TrainingEstimate:
    step = times.step_s
    model_flops, hardware_flops = _hardware_flops(model, plan, train, cache)
    n_dev = plan.num_devices
    peak_total = w.prep.mm_peak_flops_per_s * n_dev
    tokens_per_s = train.tokens_per_step / step
    ttt = dev_h = None
    if train.total_tokens:
        ttt = train.total_tokens / tokens_per_s
        dev_h = ttt * n_dev / units.HOUR_S
    if plan.pipeline_layout == "balanced":
        assumptions = (*assumptions, Assumption(
            "pipeline_layout", list(w.stages.sizes),
            "balanced: layers per virtual stage that even out the stages' work, the embedding on the first "
            "and the head, loss and MTP modules on the last counted"))
    return TrainingEstimate(
        fits=mem.fits, infeasible_reason=mem.reason, memory_per_device_bytes=mem.rank.total,
        memory_verdict=mem.verdict, memory_band_frac=MEMORY_BAND_FRAC,
        memory_per_rank=tuple(r.to_dict(i) for i, r in enumerate(mem.ranks)),
        memory_breakdown_bytes=dict(zip(MEMORY_PARTS, mem.rank.parts, strict=True)),
        memory_capacity_bytes=hw.hbm_capacity_bytes, step_time_s=step, step_time_breakdown_s=times.breakdown_s,
        compute_breakdown_s={k: m * v for k, v in times.slow.parts_s.items()},
        tokens_per_s=tokens_per_s, tokens_per_s_per_device=tokens_per_s / n_dev,
        model_flops_per_step=model_flops, hardware_flops_per_step=hardware_flops,
        mfu=model_flops / step / peak_total, hfu=hardware_flops / step / peak_total,
        time_to_train_s=ttt, device_hours=dev_h, num_microbatches=m, plan=plan,
        host_memory_per_node_bytes=mem.host_bytes_per_node, nvme_per_device_bytes=shard.nvme_bytes,
        assumptions=assumptions, ops=_ops(w, model, train), pipeline=times.pipe if plan.pp > 1 else None,
    )


def _ops(w: PlanWork, model: ModelSpec, train: TrainingSpec) -> tuple[dict[str, Any], ...]:
    lw = w.layers
    return report_rows(model.layer_group_index, lw.layer_rows, lw.head_rows, lw.embed_rows, lw.mtp_rows,
                       train.mtp_layers or 0, w.ctx, GEMM_OPERAND_BYTES[train.precision])


@dataclass(frozen=True, slots=True)
class Sized:
    """A plan sized for the search: its memory (inf when its schedule cannot run), whether it fits
    within capacity and, when it does, what timing it needs."""

    memory_bytes: float
    fits: bool
    work: PlanWork | None = None
    shard: dpm.OptimizerShard | None = None
    m: int = 0


def _shard(w: PlanWork, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec,
           devices_per_node: int) -> dpm.OptimizerShard:
    shard = dpm.optimizer_shard(w.stages.heavy, plan, train, devices_per_node)
    if plan.infinity:
        shard = infinity.with_node(shard, (*w.layers.layer_rows, w.layers.head_rows), hw, devices_per_node)
    return shard


def size_plan(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
              devices_per_node: int, scale_out_bandwidth_bytes_per_s: float | None, cache: dict[Any, Any]) -> Sized:
    """The search's first half of `estimate_step(summary=True)`: the plan's memory and verdict. The
    search keeps only plans predicted within capacity (a marginal plan is reported by train and plan,
    not recommended; the search adds its headroom on top)."""
    w = plan_work(model, hw, plan, train, scale_out_bandwidth_bytes_per_s, cache)
    m = train.global_batch_seqs // (plan.dp * plan.microbatch_seqs)
    if pipeline_refusal(plan, m):
        return Sized(math.inf, False)           # the search drops plans whose schedule cannot run
    shard = _shard(w, hw, plan, train, devices_per_node)
    mem = _memory(w, hw, plan, train, shard, m, devices_per_node, explain=False)
    if not (mem.fits and mem.rank.total <= hw.hbm_capacity_bytes):
        return Sized(mem.rank.total, False)     # the search drops plans that do not fit: no timing
    return Sized(mem.rank.total, True, w, shard, m)


def sized_lower_bound_s(sized: Sized, model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan,
                        train: TrainingSpec, *, devices_per_node: int, pipelined_only: bool = False) -> float:
    """step_lower_bound_s of a plan size_plan found fitting."""
    assert sized.work is not None and sized.shard is not None
    return step_lower_bound_s(sized.work, model, hw, plan, train, sized.shard, sized.m, devices_per_node,
                              pipelined_only=pipelined_only)


def sized_step_s(sized: Sized, model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
                 devices_per_node: int, cache: dict[Any, Any]) -> float:
    """The second half of `estimate_step(summary=True)`: the step time of a plan size_plan found fitting."""
    assert sized.work is not None and sized.shard is not None
    return _step_times(sized.work, model, hw, plan, train, sized.shard, sized.m, devices_per_node, cache).step_s


def step_time_s(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
                devices_per_node: int, scale_out_bandwidth_bytes_per_s: float | None,
                cache: dict[Any, Any], memo: dict[Any, Any] | None = None) -> float:
    """estimate_step's step_time_s (the same number, fitting or not) without the memory and the
    report: what a calibration fit re-times under each trial profile. `memo`: a dict the caller
    keeps across calls that differ in train.profile only (op rows, fixed layouts); results are
    identical with or without it."""
    w = plan_work(model, hw, plan, train, scale_out_bandwidth_bytes_per_s, cache, memo)
    m = train.global_batch_seqs // (plan.dp * plan.microbatch_seqs)
    refused = pipeline_refusal(plan, m)
    if refused:
        raise InvalidScenario(f"parallel.pp_schedule: {refused}")
    shard = _shard(w, hw, plan, train, devices_per_node)
    return _step_times(w, model, hw, plan, train, shard, m, devices_per_node, cache).step_s


def estimate_step(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
                  devices_per_node: int, scale_out_bandwidth_bytes_per_s: float | None,
                  assumptions: tuple[Assumption, ...], cache: dict[Any, Any],
                  summary: bool) -> TrainingEstimate | tuple[float, float, bool]:
    """The whole step; `summary`: (step_time_s, memory_per_device_bytes, fits) only, plans that do not
    fit untimed (step_time_s = inf)."""
    if summary:
        sized = size_plan(model, hw, plan, train, devices_per_node=devices_per_node,
                          scale_out_bandwidth_bytes_per_s=scale_out_bandwidth_bytes_per_s, cache=cache)
        if not sized.fits:
            return math.inf, sized.memory_bytes, False
        return (sized_step_s(sized, model, hw, plan, train, devices_per_node=devices_per_node, cache=cache),
                sized.memory_bytes, True)
    w = plan_work(model, hw, plan, train, scale_out_bandwidth_bytes_per_s, cache)
    m = train.global_batch_seqs // (plan.dp * plan.microbatch_seqs)
    refused = pipeline_refusal(plan, m)
    if refused:
        raise InvalidScenario(f"parallel.pp_schedule: {refused}")
    shard = _shard(w, hw, plan, train, devices_per_node)
    mem = _memory(w, hw, plan, train, shard, m, devices_per_node, explain=True)
    times = _step_times(w, model, hw, plan, train, shard, m, devices_per_node, cache)
    return _result(w, model, hw, plan, train, mem, times, shard, m, assumptions, cache)


# --------------------------------------------------------------------------- the search's blocks
@dataclass(frozen=True, slots=True)
class BlockSizing:
    """What the plans of one search block (plans differing only in ZeRO stage and offload) share for
    their memory: the plan work, the micro-batches, whether the schedule refuses them, and per
    candidate rank (memory.worst_rank_candidates) its parameters, expert parameters, layers and
    activations; the rank with the most parameters (the optimizer shard's) apart."""

    work: PlanWork
    m: int
    refused: bool
    params: tuple[float, ...] = ()
    expert_params: tuple[float, ...] = ()
    n_layers: tuple[int, ...] = ()
    acts: tuple[float, ...] = ()
    heavy_params: float = 0.0
    heavy_expert_params: float = 0.0
    optimizer_bytes: float = 0.0


def block_sizing(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
                 devices_per_node: int, scale_out_bandwidth_bytes_per_s: float | None,
                 cache: dict[Any, Any]) -> BlockSizing:
    """The shared part of `size_plan` for every plan of `plan`'s block (memory.rank_memory of each
    candidate rank is then array arithmetic over the block's ZeRO stages and offloads,
    estimate/training/arrays.py). Not for ZeRO-Infinity keys, fine-tuning or activation offload."""
    w = plan_work(model, hw, plan, train, scale_out_bandwidth_bytes_per_s, cache)
    m = train.global_batch_seqs // (plan.dp * plan.microbatch_seqs)
    if pipeline_refusal(plan, m):
        return BlockSizing(w, m, True)
    states: dict[Any, Any] = {}
    ranks = _candidate_ranks(w, plan, m, cache)
    sw = w.stages
    heavy = sw.heavy
    shard = dpm.optimizer_shard(heavy, plan, train, devices_per_node)
    return BlockSizing(w, m, False, tuple(sw.costs[r].params for r in ranks),
                       tuple(sw.costs[r].expert_params for r in ranks), tuple(len(sw.stages[r]) for r in ranks),
                       tuple(_rank_acts(w, plan, m, r, states)[0] for r in ranks), heavy.params,
                       heavy.expert_params, shard.optimizer_bytes)


def sized_fitting(block: BlockSizing, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec,
                  memory_bytes: float, *, devices_per_node: int) -> Sized:
    """The Sized of a plan of `block` that fits in `memory_bytes` (what size_plan returns for it)."""
    return Sized(memory_bytes, True, block.work, _shard(block.work, hw, plan, train, devices_per_node), block.m)
