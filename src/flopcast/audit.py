"""Audit quantitative claims from industry reporting against flopcast's own numbers.

A claims file is a CSV with the columns of `validation/claims.csv` (id, claim_text, subject, quantity,
value, unit, stated_hardware, stated_devices, stated_duration, stated_cost_usd, notes). Each claim is
checked by the checker registered for its `quantity`, which computes what flopcast says from the
catalog and the estimators and returns a verdict:

- consistent: the claim matches flopcast within the checker's tolerance (stated in the explanation:
  10% for datasheet figures and exact counts, which are rounded in prose; a physically possible
  utilisation for compute-in-time claims);
- inconsistent: it does not, by the factor shown;
- unverifiable: flopcast has no sourced figure to check it with (a device or model not in the
  catalog, a quantity outside its scope), and says which.
Every verdict shows flopcast's figure and how it was obtained.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flopcast import catalog, units
from flopcast.errors import FlopcastError, InvalidScenario
from flopcast.estimate import counts

CLAIMS_PATH = Path(__file__).resolve().parent / "validation" / "claims.csv"
SPEC_TOLERANCE = 0.10          # datasheet figures and exact counts, rounded in prose
TRAINING_MFU = 0.40            # typical large-run MFU (Llama 3 405B: 38-43%) for "what a cluster does"
PLAUSIBLE_MFU = (0.05, 0.60)   # below: an order of magnitude of waste; above: beyond any published run
TRAINING_SEQ_LEN = 8192        # attention FLOPs of a published run counted at an 8K context
# Names in claims -> catalog ids, tried in order (first match wins): case-insensitive regular expressions that
# must not touch a letter or digit on either side (so "H20" is not "H200", "B200" is not "GB200",
# "Trainium2" is not "Trainium"); [\s_-]? lets "TPU v5p", "TPU-v5p" and "TPUv5p" all match.
HARDWARE_NAMES = (
    (r"GB300", "gb300"),
    (r"GB200", "gb200"),
    (r"B300", "b300"),
    (r"B200", "b200"),
    (r"H800", "h800-sxm"),
    (r"H200", "h200-sxm"),
    (r"H100", "h100-sxm"),
    (r"H20", "h20"),
    (r"A100", "a100-sxm-80gb"),
    (r"V100", "v100-sxm-32gb"),
    (r"MI455X", "mi455x"),
    (r"MI450X?", "mi455x"),
    (r"MI355X", "mi355x"),
    (r"MI325X", "mi325x"),
    (r"MI300X", "mi300x"),
    (r"MI250X", "mi250x"),
    (r"TPU[\s_-]?v6e?", "tpu-v6e"),
    (r"Trillium", "tpu-v6e"),
    (r"TPU[\s_-]?v5e", "tpu-v5e"),
    (r"TPU[\s_-]?v5p", "tpu-v5p"),
    (r"TPU[\s_-]?v4", "tpu-v4"),
    (r"TPU[\s_-]?7x", "tpu-7x"),
    (r"TPU[\s_-]?v7", "tpu-7x"),
    (r"Ironwood", "tpu-7x"),
    (r"Gaudi[\s_-]?3", "gaudi3"),
    (r"Gaudi[\s_-]?2", "gaudi2"),
    (r"Trainium[\s_-]?3", "trainium3"),
    (r"Trn[\s_-]?3", "trainium3"),
    (r"Trainium[\s_-]?2", "trainium2"),
    (r"Trn[\s_-]?2", "trainium2"),
    (r"Ascend[\s_-]?910[\s_-]?C", "ascend-910c"),
    (r"CloudMatrix([\s_-]?384)?", "ascend-910c"),
    (r"Ascend[\s_-]?910[\s_-]?B", "ascend-910b"),
    (r"Dojo([\s_-]?D1)?", "dojo-d1"),
    (r"Rubin", "rubin"),
    (r"A18[\s_-]?Pro", "apple-a18-pro-ane"),
    (r"A17[\s_-]?Pro", "apple-a17-pro-ane"),
    (r"M4[\s_-]?Max", "apple-m4-max"),
    (r"M4[\s_-]?Pro", "apple-m4-pro"),
    (r"Snapdragon[\s_-]?8[\s_-]?Elite", "snapdragon-8-elite-npu"),
    (r"Snapdragon[\s_-]?X[\s_-]?Elite", "qualcomm-snapdragon-x-elite-npu"),
)


@dataclass(frozen=True, slots=True)
class Verdict:
    id: str
    claim_text: str
    quantity: str
    claimed: str
    flopcast: str | None
    ratio: float | None          # claimed / flopcast where both are one number
    verdict: str                 # consistent | inconsistent | unverifiable
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


CHECKERS: dict[str, Callable[[Mapping[str, str]], tuple[str | None, float | None, str, str]]] = {}


def checker(*quantities: str):
    """Register a checker for claims of these quantities: f(row) -> (flopcast figure, ratio,
    verdict, explanation)."""
    def register(fn):
        for q in quantities:
            CHECKERS[q] = fn
        return fn
    return register


# ----------------------------------------------------------------------------------- parsing
def _num(text: str) -> float | None:
    m = re.search(r"[-+]?\d[\d,]*\.?\d*(?:e[-+]?\d+)?", (text or "").replace(" ", ""), flags=re.I)
    return float(m.group(0).replace(",", "")) if m else None


def _range(text: str) -> tuple[float, float] | None:
    """'10000-25000' or '150-200' or '1e25' -> (lo, hi)."""
    text = (text or "").replace(",", "").strip()
    m = re.match(r"^\s*([\d.e+]+)\s*-\s*([\d.e+]+)", text, flags=re.I)
    if m:
        return float(m.group(1)), float(m.group(2))
    x = _num(text)
    return (x, x) if x is not None else None


DURATION_S = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0, "month": 30.44 * 86400.0, "year": 365.25 * 86400.0}


def _duration_s(text: str) -> tuple[float, float] | None:
    """'90-100 days', '1-4 weeks', '1 year', '30 days' -> seconds (lo, hi)."""
    m = re.search(r"(hour|day|week|month|year)", text or "")
    r = _range(re.sub(r"[a-z ]+$", "", (text or "").strip()))
    if not (m and r):
        return None
    return r[0] * DURATION_S[m.group(1)], r[1] * DURATION_S[m.group(1)]


def _hardware(text: str):
    """The catalog accelerator a claim names (HARDWARE_NAMES), or None."""
    for key, hw_id in HARDWARE_NAMES:
        if re.search(rf"(?<![A-Za-z0-9]){key}(?![A-Za-z0-9])", text or "", flags=re.I):
            return catalog.get_hardware(hw_id)
    return None


def _model(subject: str):
    key = re.sub(r"\s+", "-", (subject or "").strip().lower())
    return catalog.get_model(key) if key in catalog.model_registry() else None


def _ratio_verdict(claimed: float, ours: float, tol: float = SPEC_TOLERANCE) -> tuple[float, str]:
    r = claimed / ours
    return r, "consistent" if abs(r - 1) <= tol else "inconsistent"


def _x(r: float) -> str:
    return f"{r:.2f}x" if 0.1 <= r < 10 else f"{r:.2g}x"


def _span(lo: float, hi: float, fmt: str) -> str:
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"


def _unverifiable(why: str) -> tuple[None, None, str, str]:
    return None, None, "unverifiable", why


# ---------------------------------------------------------------------------------- checkers
@checker("active_params")
def _active_params(row):
    spec = _model(row["subject"])
    if spec is None:
        return _unverifiable(f"{row['subject']!r} is not a catalog model (see `flopcast models`)")
    active, total = counts.params_active(spec), counts.params_total(spec)
    r, v = _ratio_verdict(float(row["value"]), active)
    why = f"exact count from the model's config: {active / 1e9:.2f}B active per token"
    claimed_total = re.search(r"total\s*([\d.e+]+)", row.get("notes", ""))
    if claimed_total:
        rt, vt = _ratio_verdict(float(claimed_total.group(1)), total)
        why += f"; total {total / 1e9:.2f}B (claimed {float(claimed_total.group(1)) / 1e9:g}B, {_x(rt)})"
        v = "inconsistent" if vt == "inconsistent" else v
    return f"{active:.4g} params", r, v, why + f"; tolerance {SPEC_TOLERANCE:.0%} (headline counts are rounded)"


@checker("peak_fp8", "chip_spec")
def _chip(row):
    hw = _hardware(row.get("stated_hardware") or row["subject"])
    if hw is None:
        return _unverifiable(f"{row.get('stated_hardware') or row['subject']!r} is not in the hardware catalog "
                             "(no sourced datasheet figures)")
    fp8 = hw.peak_flops_per_s.get("fp8")
    if fp8 is None:
        return None, None, "inconsistent", f"{hw.id} has no fp8 tensor mode in its datasheet (dense peaks: " \
                                           f"{', '.join(hw.peak_flops_per_s)})"
    r, v = _ratio_verdict(float(row["value"]), fp8)
    parts = [f"dense fp8 peak {fp8 / 1e15:g} PFLOP/s ({_x(r)})"]
    notes = row.get("notes", "")
    mem = re.search(r"memory\s*([\d.]+)\s*GB", notes)
    if mem:
        rm, vm = _ratio_verdict(float(mem.group(1)) * 1e9, hw.hbm_capacity_bytes)
        parts.append(f"memory {hw.hbm_capacity_bytes / 1e9:.0f} GB ({_x(rm)})")
        v = "inconsistent" if vm == "inconsistent" else v
    power = re.search(r"power\s*([\d.]+)\s*W", notes)
    if power and hw.tdp_w:
        rp, vp = _ratio_verdict(float(power.group(1)), hw.tdp_w)
        parts.append(f"TDP {hw.tdp_w:.0f} W ({_x(rp)})")
        v = "inconsistent" if vp == "inconsistent" else v
    elif power:
        parts.append(f"no published TDP for {hw.id} to compare {power.group(1)} W with")
    return f"{fp8:.3g} FLOP/s", r, v, f"{hw.id} catalog: " + "; ".join(parts) + f" (tolerance {SPEC_TOLERANCE:.0%})"


@checker("scale_up_bandwidth")
def _scale_up(row):
    hw = _hardware(row.get("stated_hardware") or row["subject"])
    if hw is None or not hw.scale_up_bandwidth_bytes_per_s:
        return _unverifiable("no catalog scale-up bandwidth for the stated device")
    claimed = units.parse(f"{row['value']} {row['unit']}", "bytes_per_s", field="claim")
    per_dir = hw.scale_up_bandwidth_bytes_per_s
    r1, v1 = _ratio_verdict(claimed, per_dir)
    r2, v2 = _ratio_verdict(claimed, 2 * per_dir)
    if v2 == "consistent" and v1 != "consistent":
        return (f"{2 * per_dir / 1e9:.0f} GB/s", r2, "consistent",
                f"{hw.id}: {per_dir / 1e9:.0f} GB/s per direction, {2 * per_dir / 1e9:.0f} GB/s both directions "
                "together: the claim is the bidirectional figure")
    return (f"{per_dir / 1e9:.0f} GB/s", r1, v1, f"{hw.id}: {per_dir / 1e9:.0f} GB/s per direction "
            f"({2 * per_dir / 1e9:.0f} bidirectional)")


@checker("efficiency")
def _tops_per_watt(row):
    hw = _hardware(row.get("stated_hardware") or row["subject"])
    if hw is None or not hw.tdp_w or "int8" not in hw.peak_flops_per_s:
        return _unverifiable("no catalog int8 peak and TDP for the stated device")
    ours = hw.peak_flops_per_s["int8"] / 1e12 / hw.tdp_w
    r, v = _ratio_verdict(float(row["value"]), ours)
    return (f"{ours:.2f} TOPS/W", r, v, f"{hw.id}: dense int8 {hw.peak_flops_per_s['int8'] / 1e12:,.0f} TOPS / "
            f"{hw.tdp_w:.0f} W TDP = {ours:.2f} TOPS/W ({2 * ours:.2f} with 2:4 sparsity, which is not a dense rate)")


@checker("peak_ratio")
def _peak_ratio(row):
    text = row["subject"]
    m = re.match(r"(.+?)\s+vs\s+(.+)", text)
    if not m:
        return _unverifiable("the subject does not name two devices ('A vs B')")
    a = _hardware(m.group(1))
    b_name = m.group(2).strip()
    b = _hardware(b_name if "tpu" in b_name.lower() or not a else f"{a.id.split('-')[0]} {b_name}")
    if a is None or b is None:
        return _unverifiable("one of the two devices is not in the catalog")
    pa, pb = a.peak_flops_per_s.get("bf16"), b.peak_flops_per_s.get("bf16")
    if not (pa and pb):
        return _unverifiable("no bf16 peak for both devices")
    r, v = _ratio_verdict(float(row["value"]), pa / pb)
    return f"{pa / pb:.2f}x", r, v, f"dense bf16 peaks: {a.id} {pa / 1e12:,.0f} vs {b.id} {pb / 1e12:,.0f} TFLOP/s"


@checker("facility_power")
def _facility_power(row):
    from flopcast.estimate import datacenter as dc
    from flopcast.specs.site import resolve_site

    n = _num(row.get("stated_devices", ""))
    claimed = _range(row["value"])
    if not n or not claimed:
        return _unverifiable("no device count or power in the claim")
    text = row.get("stated_hardware", "")
    devices = [h for key, h in (("H100", "h100-sxm"), ("B200", "b200")) if key in text] or ["h100-sxm"]
    lo, hi, parts = math.inf, 0.0, []
    for hw_id in devices:
        for cooling in ("air", "liquid"):
            site = resolve_site({"grid_intensity": 400, "electricity_price": 0.08, "cooling": cooling})
            p = dc.power(catalog.get_hardware(hw_id), int(n), 0.9, site).facility_w
            lo, hi = min(lo, p), max(hi, p)
            parts.append(f"{hw_id} {cooling} {p / 1e6:.0f} MW")
    scale = units.parse(f"1 {row['unit']}", "w", field="claim")
    c_lo, c_hi = claimed[0] * scale, claimed[1] * scale
    v = "consistent" if c_lo <= hi * 1.1 and c_hi >= lo * 0.9 else "inconsistent"
    return (f"{lo / 1e6:.0f}-{hi / 1e6:.0f} MW", None, v,
            f"flopcast facility power of {n:,.0f} devices at 90% busy (PUE 1.5 air, 1.2 liquid): " + ", ".join(parts))


def _capacity_flops(hw, n: tuple[float, float], dur: tuple[float, float]) -> tuple[float, float, float]:
    peak = hw.peak_flops_per_s.get("bf16") or max(hw.peak_flops_per_s.values())
    return peak, n[0] * peak * dur[0], n[1] * peak * dur[1]


HOUR_UNITS = re.compile(r"^(gpu|device|chip|accelerator|node|tpu|npu|[a-z]*\d+[a-z]*)[\s_-]*hours?$", re.I)


def _is_device_hours(unit: str) -> bool:
    """'gpu_hours', 'GPU-hours', 'device hours', 'H100-hours': a compute-time figure, not FLOPs."""
    return bool(HOUR_UNITS.search((unit or "").strip()))


def _claimed_flops(row) -> float | None:
    """The claim's FLOPs: a FLOP count, or PetaFLOP-days converted; None for any other unit (a
    device-hours figure is checked by _training_hours, never read as FLOPs)."""
    unit = (row.get("unit") or "").lower()
    v = _num(row["value"])
    if v is None or _is_device_hours(unit):
        return None
    if "petaflop_day" in unit:
        return v * 1e15 * 86400
    return v


def _training_hours(row):
    """A device-hours claim: the MFU it implies for the model's 6 N D on its published tokens, at the
    stated hardware's dense peak (plausible: PLAUSIBLE_MFU); without a catalog model, the stated
    devices x duration it should equal (25%)."""
    hours = _num(row["value"])
    hw = _hardware(row.get("stated_hardware") or row.get("unit") or "")
    if hours is None or hours <= 0 or hw is None:
        return _unverifiable("a device-hours figure needs a positive value and a catalog accelerator to check it")
    spec = _model(row["subject"])
    run = next((r for r in catalog.reference_runs().values() if spec and r.get("model") == spec.name), {})
    peak = hw.peak_flops_per_s.get("bf16") or max(hw.peak_flops_per_s.values())
    if spec is not None and run.get("tokens"):
        need = 6 * counts.params_active(spec) * float(run["tokens"])
        mfu = need / (hours * 3600 * peak)
        ours = need / (peak * TRAINING_MFU) / 3600
        v = "consistent" if PLAUSIBLE_MFU[0] <= mfu <= PLAUSIBLE_MFU[1] else "inconsistent"
        return (f"{ours:,.3g} device-hours", hours / ours, v,
                f"{hours:,.3g} {hw.id}-hours are device time, not FLOPs: they deliver 6 N D = {need:.2g} FLOPs "
                f"of {row['subject']} at {mfu:.1%} MFU (plausible {PLAUSIBLE_MFU[0]:.0%}-{PLAUSIBLE_MFU[1]:.0%}); "
                f"at {TRAINING_MFU:.0%} MFU flopcast needs {ours:,.3g} device-hours")
    n, dur = _range(row.get("stated_devices", "")), _duration_s(row.get("stated_duration", ""))
    if not (n and dur):
        return _unverifiable("a device-hours figure without a catalog model, or stated devices and duration, "
                             "has nothing to be checked against")
    ours = (n[0] * dur[0] + n[1] * dur[1]) / 2 / 3600
    r, v = _ratio_verdict(hours, ours, 0.25)
    return (f"{ours:,.3g} device-hours", r, v, f"{_span(*n, '{:,.0f}')} devices x "
            f"{_span(dur[0] / 86400, dur[1] / 86400, '{:g}')} days = {ours:,.3g} device-hours (tolerance 25%)")


@checker("training_compute", "training_run")
def _training(row):
    if _is_device_hours(row.get("unit") or ""):
        return _training_hours(row)
    flops = _claimed_flops(row)
    if flops is None:
        return _unverifiable("no FLOP figure in the claim")
    parts: list[str] = []
    verdict = "consistent"
    ratio = None
    ours = None
    spec = _model(row["subject"])
    if spec is not None:
        run = next((r for r in catalog.reference_runs().values() if r.get("model") == spec.name), {})
        tokens = float(run["tokens"]) if run.get("tokens") else None   # YAML reads 15.6e12 as text
        if tokens:
            n_active = counts.params_active(spec)
            ours = 6 * n_active * tokens   # the convention such claims use
            with_attention = 3 * counts.forward_flops_per_token(spec, TRAINING_SEQ_LEN) * tokens
            ratio, v = _ratio_verdict(flops, ours, 0.25)
            verdict = v
            parts.append(f"{row['subject']} on its published {tokens / 1e12:g}T tokens: 6 N D = {ours:.2g} FLOPs "
                         f"(N = {n_active / 1e9:.1f}B active; {with_attention:.2g} with attention at an "
                         f"{TRAINING_SEQ_LEN // 1024}K context), the claim is {_x(ratio)} (tolerance 25%)")
    hw = _hardware(row.get("stated_hardware", ""))
    if hw is None and (row.get("stated_hardware") or "").strip():
        hw = catalog.get_hardware("h100-sxm")
        parts.append("unspecified GPUs taken as H100")
    n, dur = _range(row.get("stated_devices", "")), _duration_s(row.get("stated_duration", ""))
    if hw is not None and n and dur:
        peak, cap_lo, cap_hi = _capacity_flops(hw, n, dur)
        mfu_lo, mfu_hi = flops / cap_hi, flops / cap_lo
        parts.append(f"{_span(*n, '{:,.0f}')} x {hw.id} for {_span(dur[0] / 86400, dur[1] / 86400, '{:g}')} days "
                     f"deliver {_span(cap_lo * TRAINING_MFU, cap_hi * TRAINING_MFU, '{:.2g}')} FLOPs at "
                     f"{TRAINING_MFU:.0%} MFU; the claim needs {_span(mfu_lo, mfu_hi, '{:.1%}')} MFU")
        if mfu_lo > PLAUSIBLE_MFU[1] or mfu_hi < PLAUSIBLE_MFU[0]:
            verdict = "inconsistent"
            parts.append(f"outside {PLAUSIBLE_MFU[0]:.0%}-{PLAUSIBLE_MFU[1]:.0%}, the range published runs span")
        cost = _num(row.get("stated_cost_usd", ""))
        if cost:
            from flopcast.estimate.datacenter import device_hour_price

            price, why = device_hour_price(hw, None)
            if price:
                c = (n[0] * dur[0] + n[1] * dur[1]) / 2 / 3600 * price
                parts.append(f"at ${price:.2f}/device-hour ({why}) the device time costs ${c / 1e6:,.0f}M vs "
                             f"${cost / 1e6:,.0f}M claimed")
        if ours is None:
            ours_text = f"{_span(cap_lo * TRAINING_MFU, cap_hi * TRAINING_MFU, '{:.2g}')} FLOPs at {TRAINING_MFU:.0%} MFU"
            return ours_text, ratio, verdict, "; ".join(parts)
    if not parts:
        return _unverifiable("no catalog model with a published token count, and no hardware, device count and "
                             "duration to check the compute against")
    return (f"{ours:.2g} FLOPs" if ours else None), ratio, verdict, "; ".join(parts)


@checker("trainable_params")
def _trainable_params(row):
    from flopcast.run.budget import budget

    m = re.search(r"([\d.]+)\s*(GWh|MWh|TWh)", row["subject"] + " " + row["claim_text"], flags=re.I)
    if not m:
        return _unverifiable("no energy budget in the claim")
    b = budget(energy=f"{m.group(1)} {m.group(2)}", hardware="h100-sxm", days=90)
    ours = b["optimal_params"]
    r, v = _ratio_verdict(float(row["value"]), ours, 1.0)
    return (f"{ours:.2g} params", r, v,
            f"{m.group(1)} {m.group(2)} at an H100 site (PUE 1.5, {TRAINING_MFU:.0%} MFU) buys "
            f"{b['compute_flops']:.2g} FLOPs; "
            f"the compute-optimal model (Chinchilla, D = 20 N) has {ours / 1e9:,.0f}B parameters; the claim is "
            f"{_x(r)} (tolerance 2x)")


@checker("ttft")
def _ttft(row):
    from flopcast.run.serving import estimate_serving

    spec = {"model": "llama-3.1-70b", "hardware": "apple-m4-max", "cluster": {"num_devices": 1},
            "inference": {"tp": 1, "weights_dtype": "int4", "kv_dtype": "bf16",
                          "batch_size": 1, "input_tokens": 128, "output_tokens": 16}}
    try:
        est = estimate_serving(spec)
    except Exception as e:   # pragma: no cover - a catalog change would surface here
        return _unverifiable(f"the on-device estimate failed: {e}")
    ttft = est.ttft_unloaded_s
    r, v = _ratio_verdict(float(row["value"]), ttft, 0.25)
    v = "consistent" if float(row["value"]) >= ttft else v
    return (f"{ttft * 1e3:,.0f} ms", r, v,
            f"Llama 3.1 70B in int4 on the largest laptop-class device in the catalog (Apple M4 Max, 128 GB): "
            f"a 128-token prompt takes {ttft * 1e3:,.0f} ms to the first token (prefill is compute-bound at "
            f"{est.spec.input_tokens} tokens); one decode step alone is {est.tpot_s * 1e3:,.0f} ms (memory-bound)")


@checker("equivalent_devices")
def _equivalent_devices(row):
    flops = re.search(r"~?([\d.]+e\d+)\s*FLOPs", row["claim_text"])
    rate = _range(re.sub(r"[^\d.\-]", " ", row.get("stated_hardware", "")).strip().replace(" ", ""))
    dur = _duration_s(row.get("stated_duration", ""))
    if not (flops and rate and dur):
        return _unverifiable("the claim lacks the FLOPs, per-device rate or duration to check")
    f = float(flops.group(1))
    need_lo, need_hi = f / (rate[1] * 1e12 * dur[0]), f / (rate[0] * 1e12 * dur[0])
    claimed = float(row["value"])
    util_lo, util_hi = need_lo / claimed, need_hi / claimed
    v = "consistent" if need_lo * 0.9 <= claimed <= need_hi * 1.1 else "inconsistent"
    return (f"{_span(need_lo, need_hi, '{:,.0f}')} devices", claimed / ((need_lo + need_hi) / 2), v,
            f"{f:.2g} FLOPs / ({rate[0]:g}-{rate[1]:g} TOPS x {dur[0] / DURATION_S['year']:g} year) at full "
            f"capacity; {claimed:,.0f} devices would run at {util_lo:.1%}-{util_hi:.1%} of capacity")


@checker("emissions")
def _emissions(row):
    runs = catalog.reference_runs()
    known = [(k, r["tco2e_location_based"]) for k, r in runs.items()
             if r.get("tco2e_location_based") and "total" not in k]   # single runs, not a family's sum
    if not known:
        return _unverifiable("no published training emissions in the catalog")
    k, t = max(((k, float(t)) for k, t in known), key=lambda kv: kv[1])
    claimed = float(row["value"])
    v = "consistent" if t >= claimed else "inconsistent"
    return (f"{t:,.0f} tCO2e", claimed / t, v,
            f"largest published run in the catalog: {k} {t:,.0f} tCO2e location-based (model card), "
            f"{'above' if t >= claimed else 'below'} the claimed {claimed:g} t")


@checker("inference_compute_rate")
def _inference_rate(row):
    tokens = re.search(r"~?([\d.]+e\d+)\s*tokens\s*/\s*week", row.get("notes", ""))
    if not tokens:
        return _unverifiable("no token rate to relate the FLOP rate to")
    per_token = float(row["value"]) * 168 / float(tokens.group(1))
    n_active = per_token / 2
    v = "consistent" if 1e9 <= n_active <= 2e12 else "inconsistent"
    return (f"{per_token:.2g} FLOPs/token", None, v,
            f"{float(row['value']):.2g} FLOPs/hour over {float(tokens.group(1)):.2g} tokens/week is "
            f"{per_token:.2g} FLOPs per token, 2 N for a model with N = {n_active / 1e9:,.0f}B active parameters: "
            f"{'the size of served frontier models' if v == 'consistent' else 'no served model is that size'}")


def _outside(why: str):
    def check(row):
        return _unverifiable(why)
    return check


for _q, _why in (("household_equivalent", "household electricity use is not in flopcast's catalog"),
                 ("annual_energy", "global demand forecasts are outside flopcast's scope"),
                 ("die_to_die_bandwidth", "the catalog has no sourced die-to-die bandwidth"),
                 ("decode_throughput", "the device is not in the catalog and the model is not named"),
                 ("compute_reduction", "algorithmic savings (pruning, routing) are outside flopcast's cost model")):
    CHECKERS[_q] = _outside(_why)


# ------------------------------------------------------------------------------------ driver
REQUIRED_COLUMNS = ("id", "claim_text", "subject", "quantity", "value", "unit")


def load_claims(path: str | Path | None = None) -> list[dict[str, str]]:
    import io

    from flopcast import inputs

    p = Path(path) if path else CLAIMS_PATH
    if not p.exists():
        raise InvalidScenario(f"claims: no such file {str(p)!r} (a CSV with columns {', '.join(REQUIRED_COLUMNS)}, ...)")
    try:
        rows = list(csv.DictReader(io.StringIO(inputs.read_text(p, what="claims"), newline="")))
    except csv.Error as e:
        raise InvalidScenario(f"claims: {str(p)!r} is not a readable CSV ({e}); expected columns "
                              f"{', '.join(REQUIRED_COLUMNS)}") from None
    missing = [c for c in REQUIRED_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise InvalidScenario(f"claims: {str(p)!r} needs a header with {', '.join(REQUIRED_COLUMNS)}"
                              + (f" (missing: {', '.join(missing)})" if missing else ""))
    return rows


def audit(rows: Iterable[Mapping[str, str]]) -> list[Verdict]:
    out = []
    for row in rows:
        fn = CHECKERS.get(row["quantity"])
        claimed = f"{row['value']} {row['unit']}".strip()
        if fn is None:
            ours, ratio, verdict, why = _unverifiable(
                f"no checker for quantity {row['quantity']!r} (known: {', '.join(sorted(CHECKERS))})")
        else:
            try:
                ours, ratio, verdict, why = fn(row)
            except (ValueError, TypeError, KeyError, FlopcastError) as e:   # a malformed claim row
                ours, ratio, verdict, why = _unverifiable(f"could not read the claim's fields: {e}")
        out.append(Verdict(row["id"], row["claim_text"], row["quantity"], claimed, ours, ratio, verdict, why))
    return out


def summary(verdicts: list[Verdict]) -> dict[str, int]:
    s = {"consistent": 0, "inconsistent": 0, "unverifiable": 0}
    for v in verdicts:
        s[v.verdict] += 1
    return s


def audit_claims(path: str | Path | None = None) -> dict[str, Any]:
    """`flopcast audit`: check each quantitative claim of a claims CSV (default: the built-in industry
    claims) against flopcast's catalog and estimators; a verdict and the computation for each."""
    verdicts = audit(load_claims(path))
    return {"claims": [v.to_dict() for v in verdicts], "summary": summary(verdicts),
            "source": str(path) if path else "built-in industry claims (validation/claims.csv)"}
