"""One operation's time on one device: the roofline with measured efficiency curves.

    t = max(F / (eta(shape) x P), bytes / (eta_mem x W)) + a per-kernel tail      (Williams et al. 2009)

- GEMMs: eta(shape) = the measured best-shape fraction (catalog/efficiency.yaml `matmul`, mamf-finder)
  x the shape's efficiency relative to the measured shape: output-tile waves over the compute units
  (the library's best tiling, split-K when tiles are too few) x K / (K + K0), K0 = P/W + fill_k,
  capped at 1. A split-K GEMM also moves fp32 partial outputs. fill_k and the partial bytes are
  fitted to XLA's measured H100 table (`fit_gemm_shape`, efficiency.yaml `gemm_shape`).
- Attention kernels: a measured fraction of the 16-bit peak by kernel generation and direction.
- Element-wise and other streaming ops: bytes / (eta_mem W).
The DeviceCtx holds what one estimate needs: the device, its (calibrated) efficiencies, the peaks
of the precision in use, the achieved HBM bandwidth and the link tiers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from flopcast.estimate import comm
from flopcast.estimate.efficiency import Efficiency, _table

if TYPE_CHECKING:
    from flopcast.estimate.efficiency import Stack
    from flopcast.specs.hardware import AcceleratorSpec

ACT_BYTES = 2.0             # 16-bit activations
# Communication overlapped with compute still runs kernels on some SMs: DeepSeek-V3 (tech report
# sec. 3.2.2) needs 20 of an H800's 132 SMs to drive IB + NVLink at full rate.
COMM_UNITS = 20

# Output tiles of the GEMM kernels a library chooses from: (rows, cols, tiles resident per compute
# unit). Large 256x128 tiles in either orientation, or 128x128 tiles two per unit (CUTLASS/cuBLAS
# Ampere and Hopper kernels); 64- and 16-row tiles, which reuse loaded operands less, only for
# skinny GEMMs of fewer than 128 rows (decode, small batches), as the libraries' kernel heuristics
# do. When a GEMM has fewer tiles than units, the library splits K across units (>= 512 per split).
GEMM_TILES = ((256, 128, 1), (128, 256, 1), (128, 128, 2), (64, 128, 2), (16, 128, 4))
SKINNY_ROWS = 128           # GEMMs of fewer rows run the skinny (weight-streaming) kernels
SPLIT_K_MIN = 512
# Shape assumed for the measured matmul fraction where the benchmark's shape is not recorded.
DEFAULT_BEST_SHAPE = (8192, 8192, 8192)


def _gemm_shape_data() -> dict:
    return _table()["gemm_shape"]


GEMM_FILL_K = float(_gemm_shape_data()["fill_k"])
SPLITK_PARTIAL_BYTES = float(_gemm_shape_data()["splitk_partial_bytes"])
KERNEL_TAIL_S = float(_gemm_shape_data()["tail_s"])      # per kernel: launch ramp-up and tail wave


@dataclass(frozen=True, slots=True)
class DeviceCtx:
    """What one estimate needs to time operations on one device."""

    hw: AcceleratorSpec
    eff: Efficiency
    peak_flops_per_s: float       # matmul peak of the precision in use
    attn_peak_flops_per_s: float  # attention runs in 16-bit even under fp8
    mem_bytes_per_s: float        # achieved HBM bandwidth
    links: comm.Links
    tp_inside: bool
    stack: Stack | None = None


@lru_cache(maxsize=1 << 16)
def tiling(m: float, n: float, count: float, compute_units: int | None, k: float = 0.0) -> tuple[float, int]:
    """(fraction of the compute units doing useful work, K splits) for `count` GEMMs with (m x n)
    outputs cut into tiles (and K into splits when tiles are too few), in waves of one tile per unit;
    the library picks the best tiling. Devices without a published unit count: (1, 1)."""
    if not compute_units:
        return 1.0, 1
    best, best_splits = 0.0, 1
    for a, b, per_unit in GEMM_TILES:
        if a < SKINNY_ROWS and m >= SKINNY_ROWS:
            continue
        tiles = count * math.ceil(m / a) * math.ceil(n / b)
        slots = compute_units * per_unit
        splits = max(1, min(int(slots // tiles), int(k // SPLIT_K_MIN))) if tiles < slots else 1
        waves = math.ceil(tiles * splits / slots)
        e = count * m * n * splits / (waves * slots * a * b)
        if e > best:
            best, best_splits = e, splits
    return best, best_splits


def wave_efficiency(m: float, n: float, count: float, compute_units: int | None, k: float = 0.0) -> float:
    return tiling(m, n, count, compute_units, k)[0]


def shape_efficiency(m: float, n: float, k: float, count: float, compute_units: int | None, k0: float) -> float:
    """Relative GEMM efficiency of a shape: output-tile waves x K / (K + K0)."""
    return wave_efficiency(m, n, count, compute_units, k) * k / (k + k0)


@cache
def _anchor(compute_units: int | None, best_shape: tuple[int, int, int] | None, k0: float) -> float:
    m, n, k = best_shape or DEFAULT_BEST_SHAPE
    return shape_efficiency(m, n, k, 1, compute_units, k0)


def _k0(peak_flops_per_s: float, hbm_bytes_per_s: float, fill_k: float = GEMM_FILL_K) -> float:
    return peak_flops_per_s / hbm_bytes_per_s + fill_k


def matmul_fraction(ctx: DeviceCtx, m: float, n: float, k: float, count: float) -> float:
    """Achieved fraction of the dense peak for this GEMM shape: the measured best-shape fraction,
    scaled by this shape's relative efficiency against the measured shape's (at most 1)."""
    k0 = _k0(ctx.peak_flops_per_s, ctx.hw.hbm_bandwidth_bytes_per_s)
    units = ctx.hw.compute_units
    rel = shape_efficiency(m, n, k, count, units, k0) / _anchor(units, ctx.eff.best_shape, k0)
    return ctx.eff.matmul_frac * min(1.0, rel)


def gemm_time_s(ctx: DeviceCtx, m: float, n: float, k: float, count: float = 1.0, elem_bytes: float = ACT_BYTES,
                weight_bytes: float | None = None, mem_bytes_per_s: float | None = None,
                rate_frac: float = 1.0) -> float:
    """Time of `count` GEMMs (m x k) @ (k x n) run as one (batched or grouped) kernel: operands of
    `elem_bytes` (the weight operand of `weight_bytes` if given), 16-bit outputs, fp32 partials when
    split along K; `rate_frac` scales the compute rate (a grouped GEMM's per-group cost:
    efficiency.grouped_gemm_frac)."""
    if m <= 0 or n <= 0 or k <= 0 or count <= 0:
        return 0.0
    flops = 2.0 * m * n * k * count
    wb = elem_bytes if weight_bytes is None else weight_bytes
    moved = count * (elem_bytes * m * k + wb * k * n + ACT_BYTES * m * n)
    units = ctx.hw.compute_units
    splits = tiling(m, n, count, units, k)[1]
    if splits > 1:
        moved += count * SPLITK_PARTIAL_BYTES * m * n * splits
    rate = matmul_fraction(ctx, m, n, k, count) * ctx.peak_flops_per_s * rate_frac
    return max(flops / rate, moved / (mem_bytes_per_s or ctx.mem_bytes_per_s)) + KERNEL_TAIL_S


def gemm_fwd_bwd_s(ctx: DeviceCtx, m: float, n: float, k: float, count: float = 1.0,
                   elem_bytes: float = ACT_BYTES, rate_frac: float = 1.0) -> tuple[float, float]:
    """(forward, backward) times of a training GEMM: backward is the input gradient (m x n) @ (n x k)
    and the weight gradient (k x m) @ (m x n), each with its own tiling; `rate_frac` as gemm_time_s
    for all three (a grouped GEMM's input and weight gradients are grouped by the same tokens)."""
    if m <= 0 or n <= 0 or k <= 0 or count <= 0:
        return 0.0, 0.0
    fwd = gemm_time_s(ctx, m, n, k, count, elem_bytes, rate_frac=rate_frac)
    bwd = (gemm_time_s(ctx, m, k, n, count, elem_bytes, rate_frac=rate_frac)
           + gemm_time_s(ctx, k, n, m, count, elem_bytes, rate_frac=rate_frac))
    return fwd, bwd


def attention_time_s(ctx: DeviceCtx, flops: float, *, backward: bool = False) -> float:
    """A fused attention kernel at its measured fraction of the 16-bit peak."""
    frac = ctx.eff.attention_bwd_frac if backward else ctx.eff.attention_fwd_frac
    return flops / (frac * ctx.attn_peak_flops_per_s) + KERNEL_TAIL_S if flops > 0 else 0.0


def memory_time_s(ctx: DeviceCtx, nbytes: float) -> float:
    """A streaming (memory-bound) operation moving `nbytes`."""
    return nbytes / ctx.mem_bytes_per_s


# --------------------------------------------------------------------------- fitting the curve
def gemm_table_error(fill_k: float, partial_bytes: float, table=None, hw_id: str | None = None) -> list[float]:
    """Log errors of the GEMM model against a measured table [[M, N, K, TFLOP/s], ...] (default: the
    XLA H100 BF16 table in efficiency.yaml), at the given curve constants."""
    from flopcast import catalog
    from flopcast.estimate.efficiency import efficiency

    data = _gemm_shape_data()
    hw = catalog.get_hardware(hw_id or data["table_hardware"])
    eff = efficiency(hw.lookup_id, "bf16")
    peak = hw.peak_flops_per_s["bf16"]
    mem = hw.hbm_bandwidth_bytes_per_s * eff.memory_frac
    k0 = _k0(peak, hw.hbm_bandwidth_bytes_per_s, fill_k)
    bm, bn, bk = eff.best_shape or DEFAULT_BEST_SHAPE
    anchor = shape_efficiency(bm, bn, bk, 1, hw.compute_units, k0)
    out = []
    for m, n, k, tflops in table or data["table"]:
        frac = eff.matmul_frac * min(1.0, shape_efficiency(m, n, k, 1, hw.compute_units, k0) / anchor)
        splits = tiling(m, n, 1, hw.compute_units, k)[1]
        moved = ACT_BYTES * (m * k + k * n + m * n) + (partial_bytes * m * n * splits if splits > 1 else 0.0)
        t = max(2.0 * m * n * k / (frac * peak), moved / mem) + KERNEL_TAIL_S
        out.append(math.log(2.0 * m * n * k / t / 1e12 / tflops))
    return out


def fit_gemm_shape(table=None, hw_id: str | None = None) -> tuple[float, float]:
    """(fill_k, splitk_partial_bytes) minimising the squared log error on the measured table: a grid
    over fill_k 0..400 (step 16) and partial bytes 0, 4, 8, 16 (fp32 partials are 4 B written
    and read back; 0 if the library reduces in registers). Deterministic."""
    best: tuple[float, float, float] | None = None
    for fill in range(0, 401, 16):
        for pb in (0.0, 4.0, 8.0, 16.0):
            sse = sum(e * e for e in gemm_table_error(fill, pb, table, hw_id))
            if best is None or sse < best[0] - 1e-12:
                best = (sse, float(fill), pb)
    assert best is not None
    return best[1], best[2]


def grouped_gemm_ratios() -> list[tuple[float, float]]:
    """(tokens per group, measured / modelled rate) of each grouped GEMM of the `grouped_gemm` table,
    normalised by the same ratio of the table's dense GEMM of the same N x K: what grouping costs
    beyond the shape model (no group cost applied)."""
    from flopcast import catalog
    from flopcast.estimate.efficiency import efficiency

    data = _table()["grouped_gemm"]
    hw = catalog.get_hardware(data["table_hardware"])
    dtype = data["table_dtype"]
    eff = efficiency(hw.lookup_id, dtype)
    peak = hw.peak_flops_per_s[dtype]
    ctx = DeviceCtx(hw=hw, eff=eff, peak_flops_per_s=peak, attn_peak_flops_per_s=peak,
                    mem_bytes_per_s=hw.hbm_bandwidth_bytes_per_s * eff.memory_frac, links=None,  # type: ignore[arg-type]
                    tp_inside=True)

    def modelled(g: float, m: float, n: float, k: float) -> float:
        return 2.0 * g * m * n * k / gemm_time_s(ctx, m, n, k, g, 1.0) / 1e12

    dense = {(n, k): tflops / modelled(1, m, n, k) for m, n, k, tflops in data["dense"]}
    return [(m, tflops / modelled(g, m, n, k) / dense[(n, k)]) for g, m, n, k, tflops in data["grouped"]]


def fit_grouped_gemm() -> float:
    """group_m0 minimising the squared log error of m / (m + m0) against grouped_gemm_ratios (grid
    0..256 step 4). Deterministic."""
    ratios = grouped_gemm_ratios()
    best: tuple[float, float] | None = None
    for m0 in range(0, 257, 4):
        sse = sum(math.log(m / (m + m0) / r) ** 2 for m, r in ratios)
        if best is None or sse < best[0] - 1e-12:
            best = (sse, float(m0))
    assert best is not None
    return best[1]
