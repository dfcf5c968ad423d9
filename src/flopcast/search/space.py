"""Every valid parallel plan for a model, a device count and a batch, built by construction.

The rules are those of `specs.parallel.validate_plan` (a test enumerates small spaces both ways and
checks they agree): num_devices = tp pp dp cp; tp divides the heads and divides (or is a multiple
of) the kv heads, within the scale-up domain unless allowed beyond it; pp <= layers; interleaving
needs pp > 1, at least one layer per virtual stage (uneven splits allowed) and micro-batches
divisible by pp; ep divides the experts and dp cp; cp keeps the sequence divisible by 2 cp; the
micro-batch divides the per-replica batch; offload needs ZeRO >= 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from flopcast.specs.model import LatentAttention, ModelSpec, MoEFFN
from flopcast.specs.parallel import OFFLOAD, RECOMPUTE, ZERO_STAGES, ParallelPlan


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
    # plan fields fixed by the user (the scenario's partial `parallel` section): (name, value) pairs
    pinned: tuple[tuple[str, object], ...] = ()

    def allowed(self, name: str, values):
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
    attn = model.layers[0].attention
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
                   space: SearchSpace = SearchSpace()) -> Iterator[ParallelPlan]:
    """Every valid plan with the given (tp, cp, pp), in a fixed order."""
    tp, cp, pp = group
    L = model.num_layers
    dp = num_devices // (tp * cp * pp)
    per_replica = global_batch_seqs // dp
    experts = next((lay.ffn.num_experts for lay in model.layers if isinstance(lay.ffn, MoEFFN)), None)
    eps = space.allowed("ep", [e for e in divisors(experts) if (dp * cp) % e == 0] if experts else [1])
    sps = space.allowed("sp", (False, True) if tp > 1 else (False,))
    recomputes = space.allowed("recompute", space.recompute)
    zeros = space.allowed("zero_stage", space.zero_stages)
    offloads = space.allowed("offload", space.offload)
    for mb in space.allowed("microbatch_seqs", divisors(per_replica)):
        m = per_replica // mb
        vpps = [1]
        if pp > 1 and m % pp == 0:
            vpps += [v for v in range(2, space.max_vpp + 1) if pp * v <= L]
        for ep in eps:
            for vpp in space.allowed("vpp", vpps):
                for sp in sps:
                    for recompute in recomputes:
                        for zero in zeros:
                            for offload in offloads:
                                if offload != "none" and zero == 0:
                                    continue
                                yield ParallelPlan(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, sp=sp, vpp=vpp,
                                                   zero_stage=zero, recompute=recompute, microbatch_seqs=mb,
                                                   offload=offload)


def enumerate_plans(model: ModelSpec, *, num_devices: int, global_batch_seqs: int, seq_len: int,
                    scale_up_domain: int, space: SearchSpace = SearchSpace()) -> Iterator[ParallelPlan]:
    """Yield every valid plan, grouped so that plans sharing tp, cp, pp come together."""
    for group in plan_groups(model, num_devices=num_devices, global_batch_seqs=global_batch_seqs, seq_len=seq_len,
                             scale_up_domain=scale_up_domain, space=space):
        yield from plans_in_group(model, group, num_devices=num_devices, global_batch_seqs=global_batch_seqs,
                                  space=space)


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
    experts = next((lay.ffn.num_experts for lay in model.layers if isinstance(lay.ffn, MoEFFN)), None)
    per_microbatch = ((len(divisors(experts)) if experts else 1) * space.max_vpp * 2 * len(space.recompute)
                      * len(space.zero_stages) * len(space.offload))
    total = 0
    for tp, cp, pp in plan_groups(model, num_devices=num_devices, global_batch_seqs=global_batch_seqs,
                                  seq_len=seq_len, scale_up_domain=scale_up_domain, space=space):
        total += len(divisors(global_batch_seqs // (num_devices // (tp * cp * pp)))) * per_microbatch
    return total
