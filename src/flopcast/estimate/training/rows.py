"""The op rows a training report lists (`flopcast train --json` `ops`): exactly the timed rows the
step summed, each with the number of times it repeats in the model (`layers`), its forward,
backward and recompute times, the activations it keeps for backward, and where it sits on the
device's roofline."""

from __future__ import annotations

from collections import Counter
from typing import Any

from flopcast.estimate.roofline import ACT_BYTES, DeviceCtx
from flopcast.estimate.training.layer import TimedOp


def _roofline_point(t: TimedOp, ctx: DeviceCtx, gemm_operand_bytes: float) -> dict[str, Any]:
    op = t.op
    if op.kind == "gemm":
        moved = op.count * (gemm_operand_bytes * (op.m * op.k + op.k * op.n) + ACT_BYTES * op.m * op.n)
    else:
        moved = op.bytes
    intensity = op.flops / moved if op.kind != "comm" and moved else None
    if op.kind == "comm":
        bound = "comm"
    elif op.kind == "elementwise":
        bound = "memory"
    else:
        ridge = ctx.peak_flops_per_s / ctx.mem_bytes_per_s
        bound = "compute" if intensity is None or intensity >= ridge else "memory"
    return {"time_s": t.fwd_s, "backward_s": t.bwd_s, "recompute_s": t.recompute_s, "saved_bytes": t.saved_bytes,
            "bytes_moved": moved, "achieved_flops_per_s": op.flops / t.fwd_s if t.fwd_s > 0 else 0.0,
            "arithmetic_intensity_flops_per_byte": intensity, "bound": bound}


def report_rows(layer_group_index: tuple[int, ...] | list[int], layer_rows: tuple[tuple[TimedOp, ...], ...],
                head_rows: tuple[TimedOp, ...], embed_rows: tuple[TimedOp, ...], mtp_rows: tuple[TimedOp, ...],
                n_mtp: int, ctx: DeviceCtx, gemm_operand_bytes: float) -> tuple[dict[str, Any], ...]:
    """Rows of one micro-batch on one device: every distinct layer's rows with its layer count, the
    head and loss, the embedding, and any MTP modules (the last layer's rows, the projection and the
    head again, n_mtp times each)."""
    n_of = Counter(layer_group_index)
    parts: list[tuple[str, int, tuple[TimedOp, ...]]] = [
        ("layers", n_of[i], rows) for i, rows in enumerate(layer_rows)]
    parts += [("head", 1, head_rows), ("embedding", 1, embed_rows)]
    if n_mtp:
        parts += [("mtp", n_mtp, layer_rows[layer_group_index[-1]] + mtp_rows + head_rows)]
    return tuple({"part": part, "layers": n, **t.op.to_dict(), **_roofline_point(t, ctx, gemm_operand_bytes)}
                 for part, n, rows in parts for t in rows)
