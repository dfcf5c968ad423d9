"""Every valid parallel plan for a model, a device count and a batch, built by construction.

The rules are those of `specs.parallel.validate_plan` (a test enumerates small spaces both ways and
checks they agree): num_devices = tp pp dp cp; tp divides the heads and divides (or is a multiple
of) the kv heads, within the scale-up domain unless allowed beyond it; pp <= layers; interleaving
needs pp > 1, at least one layer per virtual stage (uneven splits allowed) and micro-batches
divisible by pp; ep divides the experts and dp cp; cp keeps the sequence divisible by 2 cp; the
micro-batch divides the per-replica batch; offload needs ZeRO >= 1. The options of a group are
filtered by ParallelPlan's own rules before any plan is built (a pinned shard group must divide dp
cp and needs ZeRO; pinned recompute modules need selective recompute; a pinned layout needs
pp x vpp stages), so the search never builds a plan the constructor refuses.

Beyond the degrees the space holds the pipeline schedule (1F1B, interleaved 1F1B for every virtual
degree, ZB-H1 zero bubble, DualPipe for even pp) and, for MoE models, expert tensor parallelism
folded to 1 as well as equal to tp (Megatron-Core MoE parallel folding: ep * etp divides tp cp dp).
Expert all-to-all is overlapped whenever ep > 1 (Megatron-Core's 1F1B A2A overlap; a plan without
it is never faster in the model). Layouts are the default split (uneven where layers do not
divide).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from flopcast.specs.model import LatentAttention, ModelSpec, MoEFFN
from flopcast.specs.parallel import OFFLOAD, RECOMPUTE, ZERO_STAGES, ParallelPlan

PIPELINE_SCHEDULES = ("1f1b", "zero_bubble", "dualpipe")
# plan keys the search does not vary but takes from --fix when given
# (the ZeRO-Infinity keys too: NVMe and parameter placements are never searched, only carried)
CARRIED = ("recompute_modules", "pipeline_layout", "ep_comm_overlap", "shard_group", "activation_offload",
           "offload_param", "offload_optimizer", "tiling")


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSpace:
    """Which options the search may use (all of them by default)."""

    max_tp: int | None = None            # None: the scale-up domain
    zero_stages: tuple[int, ...] = ZERO_STAGES
    recompute: tuple[str, ...] = RECOMPUTE
    offload: tuple[str, ...] = OFFLOAD
    max_vpp: int = 8
    schedules: tuple[str, ...] = PIPELINE_SCHEDULES
    fold_experts: bool = True            # MoE: also etp = 1 when tp > 1
    # largest micro-batch in tokens per device (seq_len x micro-batch / cp); None: no cap
    max_microbatch_tokens: int | None = None
    # structure-first pass of a space too large to enumerate: sequence parallelism always on with
    # tp > 1 and power-of-two micro-batches only (the options are then refined per structure)
    coarse: bool = False
    # plan fields fixed by the user (the scenario's partial `parallel` section): (name, value) pairs
    pinned: tuple[tuple[str, object], ...] = ()

    def allowed(self, name: str, values: Iterable[Any]) -> list[Any]:
        """`values` restricted to the pinned value of `name`, if any."""
        for key, v in self.pinned:
            if key == name:
                return [x for x in values if x == v]
        return list(values)


def plan_groups(model: ModelSpec, *, num_devices: int, global_batch_seqs: int, seq_len: int,
                scale_up_domain: int, space: SearchSpace = SearchSpace()) -> Iterator[tuple[int, int, int]]:
    """The (tp, cp, pp) triples that admit plans: tp dividing the heads (and dividing or a multiple of
    the kv heads) within the scale-up domain, cp keeping the sequence divisible by 2 cp, pp <= layers,
    and dp = devices / (tp cp pp) dividing the batch."""
    attn = model.first_attention
    heads = attn.num_heads
    kv = heads if isinstance(attn, LatentAttention) else attn.num_kv_heads
    max_tp = space.max_tp or scale_up_domain
    pinned_tp = dict(space.pinned).get("tp")
    for tp in space.allowed("tp", divisors(num_devices)):
        if (tp > max_tp and tp != pinned_tp) or heads % tp or (kv % tp and tp % kv):
            continue
        rest = num_devices // tp
        for cp in space.allowed("cp", divisors(rest)):
            if cp > 1 and seq_len % (2 * cp):
                continue
            for pp in space.allowed("pp", divisors(rest // cp)):
                if pp > model.num_layers or global_batch_seqs % (rest // (cp * pp)):
                    continue
                if space.allowed("dp", [rest // (cp * pp)]) == []:
                    continue
                yield tp, cp, pp


def plans_in_group(model: ModelSpec, group: tuple[int, int, int], *, num_devices: int, global_batch_seqs: int,
                   space: SearchSpace = SearchSpace(), seq_len: int | None = None) -> Iterator[ParallelPlan]:
    """Every valid plan with the given (tp, cp, pp), in a fixed order: micro-batch, then expert
    layout, pipeline schedule, sp, recompute, ZeRO stage and offload. Only plans that ParallelPlan
    accepts are built (the options are filtered by its rules first)."""
    for block in plan_blocks(model, group, num_devices=num_devices, global_batch_seqs=global_batch_seqs,
                             space=space, seq_len=seq_len):
        yield from block.plans()


@dataclass(frozen=True, slots=True)
class Block:
    """Consecutive plans of a group that differ only in ZeRO stage and offload: they share the layer
    costs, the stage work, the stage times and the pipeline timeline (the search sizes them as one)."""

    fields: dict[str, Any]                 # every plan field but zero_stage and offload (carried keys included)
    options: tuple[tuple[int, str], ...]   # (zero_stage, offload) of each plan, in order

    def plan(self, i: int) -> ParallelPlan:
        zero, offload = self.options[i]
        return ParallelPlan(**({"zero_stage": zero, "offload": offload} | self.fields))

    def plans(self) -> Iterator[ParallelPlan]:
        return (self.plan(i) for i in range(len(self.options)))


def plan_blocks(model: ModelSpec, group: tuple[int, int, int], *, num_devices: int, global_batch_seqs: int,
                space: SearchSpace = SearchSpace(), seq_len: int | None = None) -> Iterator[Block]:
    """The plans of `plans_in_group`, in its order, as blocks of consecutive plans that differ only in
    ZeRO stage and offload."""
    tp, cp, pp = group
    dp = num_devices // (tp * cp * pp)
    per_replica = global_batch_seqs // dp
    moe = next((lay.ffn for lay in model.layers if isinstance(lay.ffn, MoEFFN)), None)
    expert_groups = _expert_groups(moe, tp, cp, dp, space)
    # pinned keys the space does not vary are carried into every plan
    carried = {k: tuple(v) if isinstance(v, list) else v for k, v in space.pinned if k in CARRIED}
    options = [(key, tuple((z, o) for _, _, z, o in opts))
               for key, opts in groupby(_options(space, tp=tp, dp=dp, cp=cp, carried=carried), key=lambda o: o[:2])]
    for mb in _microbatches(space, per_replica, cp=cp, seq_len=seq_len):
        pipes = _pipes(space, pp=pp, num_microbatches=per_replica // mb, num_layers=model.num_layers,
                       layout=carried.get("pipeline_layout"))
        for ep, etp in expert_groups:
            for sched, vpp in pipes:
                for (sp, recompute), zero_offload in options:
                    yield Block({"tp": tp, "pp": pp, "dp": dp, "cp": cp, "ep": ep, "sp": sp, "vpp": vpp,
                                 "recompute": recompute, "microbatch_seqs": mb, "etp": etp, "pp_schedule": sched,
                                 "ep_comm_overlap": ep > 1} | carried, zero_offload)


def _options(space: SearchSpace, *, tp: int, dp: int, cp: int,
             carried: dict[str, object]) -> list[tuple[bool, str, int, str]]:
    """(sp, recompute, zero_stage, offload) choices, in order, that the plan rules allow: sp only
    with tp > 1 (always on in a coarse pass), offload and a shard group only with ZeRO >= 1, the
    shard group dividing dp cp, recompute modules only with selective recompute; a carried
    parameter offload or tiling only with ZeRO-3, a carried optimizer offload with the same
    `offload` (or none) and ZeRO >= 1."""
    sps = space.allowed("sp", ((True,) if space.coarse else (False, True)) if tp > 1 else (False,))
    shard_group = carried.get("shard_group")
    opt = carried.get("offload_optimizer")
    zero3 = carried.get("offload_param", "none") != "none" or carried.get("tiling", 1) != 1
    if isinstance(shard_group, int) and (dp * cp) % shard_group:
        return []
    out = []
    for sp in sps:
        for recompute in space.allowed("recompute", space.recompute):
            if "recompute_modules" in carried and recompute != "selective":
                continue
            for zero in space.allowed("zero_stage", space.zero_stages):
                if (zero == 0 and (shard_group is not None or opt not in (None, "none"))) or (zero3 and zero != 3):
                    continue
                out += [(sp, recompute, zero, offload) for offload in space.allowed("offload", space.offload)
                        if (offload == "none" or zero > 0) and offload in ("none", opt or offload)]
    return out


def _microbatches(space: SearchSpace, per_replica: int, *, cp: int, seq_len: int | None) -> list[int]:
    """Micro-batch sizes dividing the replica's batch (powers of two in a coarse pass; at most the
    space's tokens per device when it caps them)."""
    out = []
    for mb in space.allowed("microbatch_seqs", divisors(per_replica)):
        if space.coarse and mb & (mb - 1):
            continue
        if space.max_microbatch_tokens and seq_len and mb > 1 and mb * seq_len / cp > space.max_microbatch_tokens:
            continue
        out.append(mb)
    return out


def _pipes(space: SearchSpace, *, pp: int, num_microbatches: int, num_layers: int,
           layout: object) -> list[tuple[str, int]]:
    """(pp_schedule, vpp) choices: 1F1B; with pp > 1 interleaving (micro-batches a multiple of pp,
    a layer per virtual stage), zero bubble and, for even pp, DualPipe; a pinned layout keeps those
    with pp x vpp virtual stages."""
    pipes = [("1f1b", 1)]
    if pp > 1:
        if num_microbatches % pp == 0:
            pipes += [("1f1b", v) for v in range(2, space.max_vpp + 1) if pp * v <= num_layers]
        pipes += [(s, 1) for s in space.schedules if s == "zero_bubble" or (s == "dualpipe" and pp % 2 == 0)]
    if dict(space.pinned).get("pp_schedule") == "interleaved":
        pipes = [("interleaved", v) for s, v in pipes if v > 1]
    pipes = [(s, v) for s, v in pipes if space.allowed("vpp", [v]) and space.allowed("pp_schedule", [s])]
    if isinstance(layout, tuple):
        pipes = [(s, v) for s, v in pipes if len(layout) == pp * v]
    return pipes


def _expert_groups(moe: MoEFFN | None, tp: int, cp: int, dp: int, space: SearchSpace) -> list[tuple[int, int | None]]:
    """(ep, etp) pairs: etp = tp (None) with ep dividing the experts and dp cp, and, folded, etp = 1
    with ep dividing the experts and tp cp dp (Megatron-Core MoE parallel folding)."""
    if moe is None:
        return [(e, None) for e in space.allowed("ep", [1])]
    experts = moe.num_experts
    out: list[tuple[int, int | None]] = [
        (e, None) for e in space.allowed("ep", [e for e in divisors(experts) if (dp * cp) % e == 0])]
    if space.fold_experts and tp > 1:
        out += [(e, 1) for e in space.allowed("ep", [e for e in divisors(experts) if (tp * cp * dp) % e == 0])]
    pinned_etp = dict(space.pinned).get("etp")
    if pinned_etp is not None:
        out = [(e, t) for e, t in out if (t or tp) == pinned_etp]
    return out


def enumerate_plans(model: ModelSpec, *, num_devices: int, global_batch_seqs: int, seq_len: int,
                    scale_up_domain: int, space: SearchSpace = SearchSpace()) -> Iterator[ParallelPlan]:
    """Yield every valid plan, grouped so that plans sharing tp, cp, pp come together."""
    for group in plan_groups(model, num_devices=num_devices, global_batch_seqs=global_batch_seqs, seq_len=seq_len,
                             scale_up_domain=scale_up_domain, space=space):
        yield from plans_in_group(model, group, num_devices=num_devices, global_batch_seqs=global_batch_seqs,
                                  space=space, seq_len=seq_len)


def nearest_valid_device_counts(model: ModelSpec, *, num_devices: int, global_batch_seqs: int, seq_len: int,
                                scale_up_domain: int, space: SearchSpace = SearchSpace(), k: int = 4) -> list[int]:
    """Device counts closest to `num_devices` that have at least one valid plan (within 256 of it:
    the look-up is bounded, so a far-off count gets no suggestion rather than a long wait)."""
    found: list[int] = []
    for delta in range(1, min(4 * num_devices, 256) + 1):
        for n in (num_devices - delta, num_devices + delta):
            if n < 1 or n in found:
                continue
            if next(enumerate_plans(model, num_devices=n, global_batch_seqs=global_batch_seqs, seq_len=seq_len,
                                    scale_up_domain=scale_up_domain, space=space), None) is not None:
                found.append(n)
        if len(found) >= k:
            break
    return sorted(found[:k])


def plan_space_bound(model: ModelSpec, *, num_devices: int, global_batch_seqs: int, seq_len: int,
                     scale_up_domain: int, space: SearchSpace = SearchSpace()) -> int:
    """An upper bound on the number of plans `enumerate_plans` yields, counted per (tp, cp, pp) group
    without building any plan (so a search past the limit is refused before it starts)."""
    moe = next((lay.ffn for lay in model.layers if isinstance(lay.ffn, MoEFFN)), None)
    options = (1 if space.coarse else 2) * len(space.recompute) * len(space.zero_stages) * len(space.offload)
    total = 0
    for tp, cp, pp in plan_groups(model, num_devices=num_devices, global_batch_seqs=global_batch_seqs,
                                  seq_len=seq_len, scale_up_domain=scale_up_domain, space=space):
        dp = num_devices // (tp * cp * pp)
        mbs = [mb for mb in divisors(global_batch_seqs // dp)
               if not (space.max_microbatch_tokens and mb > 1 and mb * seq_len / cp > space.max_microbatch_tokens)
               and not (space.coarse and mb & (mb - 1))]
        pipes = 1 + (space.max_vpp - 1 + len(space.schedules) if pp > 1 else 0)
        total += len(mbs) * pipes * len(_expert_groups(moe, tp, cp, dp, space)) * options
    return total
