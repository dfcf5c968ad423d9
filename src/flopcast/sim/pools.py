"""The replica pools a scenario's simulation runs: one colocated pool (the inference section's dp
replicas), the section's replicas split into prefill and decode roles (`scheduler: disaggregated`,
`prefill_replicas`), or a prefill and a decode pool with their own layouts (`inference.prefill` and
`inference.decode`: tp, pp, ep, dp replicas, hardware, engine, dtypes, limits), as the fleet
planner's disaggregated deployments have them. A pool is validated like an inference section of
its own (its divisibility rules, its hardware's formats), and every error names the pool's field.
"""

from __future__ import annotations

from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.sim.engine import PoolSpec, colocated_pools


def cluster_devices_given(rs) -> bool:
    """Whether the scenario states cluster.num_devices (resolution records it when it fills it in)."""
    return not any(a.name == "cluster.num_devices" for a in rs.assumptions)


def scenario_pools(rs, spec, scheduler: str, prefill_replicas: int | None,
                   ) -> tuple[tuple[PoolSpec, ...], list[Assumption]]:
    """The pools of the resolved scenario `rs` (its inference `spec`, its `pools` layouts) and the
    assumptions they add; raises InvalidScenario naming the field for a bad layout."""
    from flopcast.specs.serving import validate_inference

    so = rs.cluster.scale_out_bandwidth_bytes_per_s
    if not rs.pools:
        validate_inference(spec, rs.model, num_devices=rs.cluster.num_devices)
        return colocated_pools(rs.hardware, spec, scheduler, prefill_replicas, so), []
    if rs.scheduler.given and scheduler != "disaggregated":
        raise InvalidScenario(f"inference.scheduler: {scheduler}, but inference.prefill and inference.decode are "
                              "disaggregated pools; drop scheduler or set it to disaggregated")
    if prefill_replicas is not None:
        raise InvalidScenario("inference.scheduler.prefill_replicas: with inference.prefill the prefill pool's "
                              "replicas are inference.prefill.dp")
    pools = explicit_pools(rs, rs.pools)
    total = sum(p.num_devices for p in pools)
    if cluster_devices_given(rs) and rs.cluster.num_devices != total:
        raise InvalidScenario(f"cluster.num_devices: {rs.cluster.num_devices}, but the prefill and decode pools hold "
                              f"{pools[0].num_devices} + {pools[1].num_devices} = {total} devices (tp*pp*dp each); "
                              "give their sum or leave cluster.num_devices out")
    notes = [Assumption("pools", "; ".join(
        f"{p.role}: {p.replicas} x {p.hw.id} tp {p.spec.tp} pp {p.spec.pp}" + (f" ep {p.spec.ep}" if p.spec.ep > 1 else "")
        for p in pools), "inference.prefill and inference.decode: each pool's iterations are timed by its own layout")]
    if not cluster_devices_given(rs):
        notes.append(Assumption("cluster.num_devices", total, "the devices of the prefill and decode pools"))
    return tuple(pools), notes


def explicit_pools(rs, layouts) -> list[PoolSpec]:
    """The prefill and decode pools (specs.serving.PoolLayout, in that order), each validated as its
    own inference section (replicas: its dp) on its hardware (resolved; the scenario's when not given)."""
    from flopcast.estimate import serving as sv_mod
    from flopcast.specs.scenario import resolve_hardware
    from flopcast.specs.serving import _in_pool, validate_inference

    so = rs.cluster.scale_out_bandwidth_bytes_per_s
    pools = []
    for layout in layouts:
        role, hw_value, pspec = layout.role, layout.hardware, layout.spec
        hw = rs.hardware
        if hw_value is not None:
            try:
                hw = resolve_hardware(hw_value, field_name=f"inference.{role}.hardware")
            except UnknownName as e:
                raise UnknownName(e.kind, e.name, e.known, message=f"inference.{role}.hardware: {e}") from None
        try:
            validate_inference(pspec, rs.model, num_devices=pspec.num_devices)
            sv_mod.prepare(rs.model, hw, pspec)          # formats the pool's hardware must support
        except InvalidScenario as e:
            raise _in_pool(e, role) from None
        pools.append(PoolSpec(role=role, hw=hw, spec=pspec, replicas=pspec.dp,
                              scale_out_bandwidth_bytes_per_s=so if hw_value is None else None))
    return pools


def kv_transfer_assumption() -> Assumption:
    from flopcast.sim.schedulers.disaggregated import kv_transfer_params

    x = kv_transfer_params()
    return Assumption("kv_transfer", f"{x['latency_s'] * 1e6:.0f} us + KV bytes / ({x['bandwidth_frac']:.3g} x the "
                      "slower side's NICs)", "prompt KV cache (decode pool's kv dtype) from the prefill replica's "
                      "devices to the decode replica's, each over its own scale-out NIC; the first token reaches the "
                      f"client with it. {x['source']}")
