"""Limits on the work one call may ask for, and plausibility bounds on physical inputs.

Limits are checked before any work starts (docs/limits.md lists them with their reasons); a value
past a limit is an InvalidScenario naming the field, the value and the limit. Plausibility bounds
catch a unit left off or mistyped: a bare `scale_out_bandwidth: 400` is 400 bytes/s, five orders
below any NIC, so it is refused with "did you mean '400 Gb/s'?" rather than giving a time to train
of 530 million days.

Site and price fields are parsed here with their units (gCO2e/kWh, kgCO2e/kWh, $/kWh, cents/kWh,
$/device-hour); a bare number is in the field's documented unit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from flopcast import units
from flopcast.errors import InvalidScenario, UnknownName

# ----------------------------------------------------------------------------------- work limits
# Model shape (checked on the config mapping before a ModelSpec is built). The largest published
# models are ~1,000x inside these: 126 layers (Llama 3.1 405B), hidden 18,432, vocab 262,144, 384 experts.
MAX_LAYERS = 4096
MAX_MODEL_DIM = 1 << 20          # hidden_size, intermediate sizes, head_dim, lora ranks
MAX_VOCAB = 1 << 24
MAX_HEADS = 1 << 16
MAX_EXPERTS = 1 << 16
MAX_PARAMS = 1e15                # total parameters (~500x the largest published model)
MAX_SEQ_LEN = 1 << 24            # tokens per sequence (training seq_len, serving input / output)
MAX_BATCH_SEQS = 1 << 24         # sequences per optimizer step
MAX_TOTAL_TOKENS = 1e18          # training tokens (~60,000x Llama 3's 15.6e12)
MAX_BATCH_TOKENS = 1 << 30       # tokens per optimizer step (the largest published: DeepSeek-V3's 63M, 17x inside)
MIN_TOTAL_TOKENS = 1e6           # a run (or phase) of fewer tokens is a unit slip (`total_tokens: 15.6` meant 15.6e12)
MAX_DEVICES = 1 << 24            # devices in a cluster (the largest ~2025 clusters hold ~2**18)
MAX_SWEEP_COMBINATIONS = 1024   # searches one `flopcast sweep` may run
MAX_PLANS = 2_000_000            # parallel plans one search may evaluate (counted before enumeration)
MAX_SIM_REQUESTS = 10_000_000    # requests one CLI simulation may run (streamed above 1,000,000: sim/stats.py)
MAX_SIM_REQUESTS_SERVICE = 100_000
MAX_TOKENS_PER_REQUEST = 1 << 22  # input + output tokens of one simulated request (bounds its iterations)
MAX_SIM_TOKENS = 20_000_000_000  # expected tokens of one simulation: num_requests x (mean input + output)
MAX_SIZING_REQUESTS = 1_000_000  # requests of one fleet-sizing trial
MAX_SIZING_TOKENS = 1_000_000_000  # expected tokens of one fleet-sizing trial
MAX_FLEET_REPLICAS = 4096        # replicas `--size-fleet` may try
MAX_BUDGET_DAYS = 36_525.0       # a century
MIN_BUDGET_DAYS = 1 / 1440       # a minute (1e-320 days overflowed the device count)
MAX_LAYOUT_CHARS = 100_000       # parallel.pipeline_layout once its (...)*n groups are expanded (checked before)
MAX_PHASES = 32                  # training.phases: each costs an estimate (and a search in `plan` without a
                                 # parallel section); Llama 3 405B's schedule has 10 (3 batch, 6 context, anneal)

_CONFIG_LIMITS = {
    "num_hidden_layers": MAX_LAYERS, "n_layer": MAX_LAYERS, "num_layers": MAX_LAYERS, "n_layers": MAX_LAYERS,
    "hidden_size": MAX_MODEL_DIM, "n_embd": MAX_MODEL_DIM, "d_model": MAX_MODEL_DIM,
    "intermediate_size": MAX_MODEL_DIM, "ffn_dim": MAX_MODEL_DIM, "n_inner": MAX_MODEL_DIM,
    "moe_intermediate_size": MAX_MODEL_DIM, "shared_expert_intermediate_size": MAX_MODEL_DIM,
    "head_dim": MAX_MODEL_DIM, "kv_lora_rank": MAX_MODEL_DIM, "q_lora_rank": MAX_MODEL_DIM,
    "qk_nope_head_dim": MAX_MODEL_DIM, "qk_rope_head_dim": MAX_MODEL_DIM, "v_head_dim": MAX_MODEL_DIM,
    "vocab_size": MAX_VOCAB, "num_attention_heads": MAX_HEADS, "num_key_value_heads": MAX_HEADS,
    "n_head": MAX_HEADS, "num_local_experts": MAX_EXPERTS, "n_routed_experts": MAX_EXPERTS,
    "num_experts": MAX_EXPERTS, "n_shared_experts": MAX_EXPERTS, "num_experts_per_tok": MAX_EXPERTS,
    "max_position_embeddings": MAX_SEQ_LEN, "n_positions": MAX_SEQ_LEN, "sliding_window": MAX_SEQ_LEN,
    "first_k_dense_replace": MAX_LAYERS, "num_nextn_predict_layers": MAX_LAYERS,
}


def check_model_config(config: Mapping[str, Any]) -> None:
    """Refuse a config whose shape is past the limits (before layers are built)."""
    for key, limit in _CONFIG_LIMITS.items():
        v = config.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v) or v > limit:
            raise InvalidScenario(f"model.{key}: {v!r} is past flopcast's limit of {limit:,}; "
                                  "see docs/limits.md")
    types = config.get("layer_types")
    if isinstance(types, (list, tuple)) and len(types) > MAX_LAYERS:
        raise InvalidScenario(f"model.layer_types: {len(types):,} entries; at most {MAX_LAYERS:,} layers")


def check_training_sizes(data: Mapping[str, Any], *, seq_len: int, batch_seqs: int,
                         total_tokens: float | None) -> None:
    """The training section's sizes are what the user meant: one batch key, a batch of tokens per step no
    larger than MAX_BATCH_TOKENS (global_batch_seqs given a token count reads as millions of sequences),
    a token total of at least MIN_TOTAL_TOKENS (15.6 meant 15.6e12)."""
    if "global_batch_seqs" in data and "global_batch_tokens" in data:
        raise InvalidScenario("training.global_batch_tokens: give global_batch_seqs (sequences per step) or "
                              "global_batch_tokens (tokens per step), not both")
    tokens = seq_len * batch_seqs
    if tokens > MAX_BATCH_TOKENS:
        key = "global_batch_seqs" if "global_batch_seqs" in data else "global_batch_tokens"
        hint = (f"; did you mean global_batch_tokens: {batch_seqs}?" if key == "global_batch_seqs"
                else "")
        raise InvalidScenario(f"training.{key}: {batch_seqs:,} sequences of {seq_len:,} tokens is {tokens:.3g} "
                              f"tokens per step, past {MAX_BATCH_TOKENS:.3g} (the largest published runs use "
                              f"~6e7){hint}")
    if total_tokens is not None and total_tokens < MIN_TOTAL_TOKENS:
        t = total_tokens
        raise InvalidScenario(f"training.total_tokens: {t:g} tokens is implausibly few for a training run "
                              f"(at least {MIN_TOTAL_TOKENS:.0e}); did you mean {t:g}e12 ({t:g} trillion) or "
                              f"{t:g}e9 ({t:g} billion)?")


def check_params(params_total: float, *, field: str = "model") -> None:
    if params_total > MAX_PARAMS:
        raise InvalidScenario(f"{field}: {params_total:.3g} parameters is past flopcast's limit of "
                              f"{MAX_PARAMS:.0e}; see docs/limits.md")


def check_count(value: int | float, limit: int | float, *, field: str, hint: str = "see docs/limits.md") -> None:
    if value > limit:
        if isinstance(value, int) and value.bit_length() > 1000:      # past float range (and printing)
            shown = f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits"
        else:
            shown = f"{value:,}" if value < 1e15 else f"{float(value):.3g}"
        raise InvalidScenario(f"{field}: {shown} is past the limit of {limit:,}; {hint}")


# ------------------------------------------------------------------------------- plausibility
# dimension -> (lowest, highest, the unit suggested for a bare number that falls below)
_BOUNDS: dict[str, tuple[float, float, str, str]] = {
    "bytes": (1e6, 1e15, "GB", "1 MB..1 PB"),                     # a device's memory or a node's host memory
    "bytes_per_s": (1e6, 1e15, "GB/s", "1 MB/s..1 PB/s"),
    "flops_per_s": (1e8, 1e18, "TFLOP/s", "0.1 GFLOP/s..1 EFLOP/s"),   # per package
    "w": (0.1, 1e6, "kW", "0.1 W..1 MW"),                         # a phone NPU at idle .. a rack
}
_NIC_HINT_FIELDS = ("scale_out_bandwidth", "host_link_bandwidth")
# field (last part of its name) -> (lowest, highest, what is accepted): per-package and per-link ranges
# around the catalog (tdp 60..1,400 W; memory 51 GB/s..8 TB/s; NIC 12.5..100 GB/s; host link 16..225 GB/s)
_FIELD_BOUNDS: dict[str, tuple[float, float, str]] = {
    "tdp": (1.0, 5e3, "1 W..5 kW per package"),
    "power_idle": (0.1, 5e3, "0.1 W..5 kW per package"),
    "power_max": (1.0, 5e3, "1 W..5 kW per package"),
    "hbm_bandwidth": (1e10, 5e13, "10 GB/s..50 TB/s of device memory bandwidth"),
    # 2.4 Tb/s: AMD MI455X has 3 x 800G NICs per GPU, the most per device in the catalog
    "scale_out_bandwidth": (1.25e8, 3e11, "1 Gb/s..2.4 Tb/s (300 GB/s) of NIC bandwidth per device"),
    "host_link_bandwidth": (1e9, 1e12, "1 GB/s..1 TB/s per device and direction"),
    "scale_up_bandwidth": (1e9, 1e13, "1 GB/s..10 TB/s per device"),
    "hbm_capacity": (1e8, 4e12, "100 MB..4 TB per package"),
}
_BYTE_ONLY_FIELDS = ("hbm_bandwidth",)   # memory bandwidth is quoted in bytes per second, never in bits
_PREFIX_STEPS = ("", "k", "M", "G", "T", "P")


def _unit_hints(raw: Any, dimension: str, lo: float, hi: float) -> list[str]:
    """Rewrites of a string quantity that land inside lo..hi: one SI prefix up or down, or bits for
    bytes (and back) on a bandwidth: '700 kW' -> '700 W', '400 GB/s' -> '400 Gb/s', '3.35 Tb/s' -> '3.35 TB/s'."""
    if not isinstance(raw, str):
        return []
    m = re.fullmatch(r"\s*([0-9.eE+_-]+)\s*(\S+)\s*", raw)
    if not m:
        return []
    number, unit = m.groups()
    candidates = []
    if dimension == "bytes_per_s" and len(unit) >= 3:
        swapped = unit.replace("B", "b") if "B" in unit else unit.replace("b", "B")
        candidates.append(swapped)
    prefix = unit[0] if unit[0] in _PREFIX_STEPS[1:] else ""
    i = _PREFIX_STEPS.index(prefix)
    for j in (i - 1, i + 1):
        if 0 <= j < len(_PREFIX_STEPS):
            candidates.append(_PREFIX_STEPS[j] + unit[len(prefix):])
    out = []
    for c in candidates:
        try:
            v = units.parse(f"{number} {c}", dimension)
        except InvalidScenario:
            continue
        if lo <= v <= hi:
            out.append(f"'{number} {c}'")
    return out


def check_plausible(field: str, raw: Any, value: float, dimension: str) -> float:
    """Refuse a parsed quantity outside the bounds of its field (or, for other fields, of its dimension);
    the refusal suggests the unit that was probably meant (a bare number's unit, a prefix, bits for bytes)."""
    name = field.rsplit(".", 1)[-1]
    if name in _BYTE_ONLY_FIELDS and isinstance(raw, str) and re.search(r"\d\s*[kMGTP]?(b/s|bps)\s*$", raw):
        fixed = re.sub(r"b(/s|ps)\s*$", r"B\1", raw.strip())
        raise InvalidScenario(f"{field}: {raw!r} is in bits per second; memory bandwidth is quoted in bytes "
                              f"per second: did you mean {fixed!r}?")
    bounds = _BOUNDS.get(dimension)
    if bounds is None or value == 0 and dimension == "w":
        return value
    lo, hi, hint_unit, accepted = bounds
    if name in _FIELD_BOUNDS:
        lo, hi, accepted = _FIELD_BOUNDS[name]
    if lo <= value <= hi:
        return value
    if dimension == "bytes_per_s" and name in _NIC_HINT_FIELDS:
        hint_unit = "Gb/s"
    if dimension == "bytes" and "hbm" in field:
        hint_unit = "GiB"
    shown = units.format_si(value, {"bytes": "B", "bytes_per_s": "B/s", "flops_per_s": "FLOP/s", "w": "W"}[dimension])
    bare = isinstance(raw, (int, float)) and not isinstance(raw, bool)
    hints = [f"'{raw:g} {hint_unit}'"] if bare and value < lo else _unit_hints(raw, dimension, lo, hi)
    hint = f"; did you mean {hints[0]}?" if hints else ""
    side = "low" if value < lo else "high"
    return _refuse(f"{field}: {raw!r} is {shown}, implausibly {side}; expected {accepted} with its unit "
                   f"(a bare number is in base units){hint}")


def _refuse(message: str):
    raise InvalidScenario(message)


MIN_FACILITY_W, MAX_FACILITY_W = 1e3, 1e11     # one rack's worth .. 100 GW (the largest 2025 sites plan ~5 GW)


def facility_power_w(value: Any, *, field: str) -> float:
    """A site's or region's power (a cap, a budget) in W, within 1 kW..100 GW: '30 MW', or a bare number of
    watts (as every bare quantity); a bare `30` is refused with "did you mean '30 MW'?"."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidScenario(f"{field}: expected a facility power with its unit such as '30 MW', got {value!r}")
    w = units.parse(value, "w", field=field)
    if MIN_FACILITY_W <= w <= MAX_FACILITY_W:
        return w
    side = "low" if w < MIN_FACILITY_W else "high"
    hint = f"; did you mean '{value:g} MW'?" if isinstance(value, (int, float)) and w < MIN_FACILITY_W else ""
    raise InvalidScenario(f"{field}: {value!r} is {units.format_si(w, 'W')}, implausibly {side} for a facility; "
                          f"expected 1 kW..100 GW with its unit (a bare number is in W){hint}")


def check_trace_keys(workload: Mapping[str, Any], arrival: Mapping[str, Any]) -> None:
    """A trace gives every arrival time and length: a second trace key, or an arrival process, rate or
    lengths beside it contradict it (one of them would be silently dropped)."""
    if "trace" in workload and "trace" in arrival:
        raise InvalidScenario("inference.workload.arrival.trace: give the trace once (workload.trace or "
                              "workload.arrival.trace), not both")
    for section, keys in (("arrival", ("process", "rate_per_s", "cv")),
                          ("", ("input_tokens", "output_tokens"))):    # num_requests: the first n of the trace
        given = arrival if section else workload
        for key in keys:
            if key in given:
                where = f"inference.workload.{section + '.' if section else ''}{key}"
                raise InvalidScenario(f"{where}: a trace gives every request's arrival and lengths; drop {key} "
                                      "or the trace")


# --------------------------------------------------------------------------------- latency SLOs
SLO_NAMES = ("ttft_p99", "tpot_p99")
# the keys an SLO mapping accepts: a time with its unit ("50 ms"), or a bare number under a key naming its unit
SLO_KEYS = SLO_NAMES + tuple(f"{n}_{u}" for n in SLO_NAMES for u in ("ms", "s"))
_SLO_RANGE_S = {"ttft_p99": (1e-6, 3600.0, "1 us..1 h"), "tpot_p99": (1e-6, 60.0, "1 us..1 min")}   # 1 us: "never met"


def slo_seconds(data: Mapping[str, Any], section: str) -> dict[str, float]:
    """{ttft_p99, tpot_p99: seconds} of an SLO mapping whose keys are already checked against SLO_KEYS.
    A time needs its unit ('50 ms') or a key that names it (tpot_p99_ms: 50): a bare `tpot_p99: 5` is
    refused with "did you mean '5 ms'?", and one target given under two keys is refused."""
    out: dict[str, float] = {}
    for name in SLO_NAMES:
        given = [k for k in (name, f"{name}_ms", f"{name}_s") if k in data]
        if len(given) > 1:
            raise InvalidScenario(f"{section}.{given[1]}: give {name} once (as {' or '.join(given)}), not both")
        if not given:
            continue
        key = given[0]
        value, field = data[key], f"{section}.{key}"
        if key == name:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                meant = f"'{value:g} ms'" if abs(value) >= 1 else f"'{value:g} s'"
                raise InvalidScenario(f"{field}: {value!r} has no unit; did you mean {meant}? (write the unit, or "
                                      f"use {name}_ms / {name}_s)")
            seconds = units.parse(value, "s", field=field)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidScenario(f"{field}: expected a bare number of {key.rsplit('_', 1)[1]} (the key names "
                                      f"the unit), got {value!r}; or write {name}: '50 ms'")
            seconds = float(value) * (1e-3 if key.endswith("_ms") else 1.0)
        lo, hi, shown = _SLO_RANGE_S[name]
        if not (math.isfinite(seconds) and lo <= seconds <= hi):
            example = "2 s" if name == "ttft_p99" else "50 ms"
            raise InvalidScenario(f"{field}: {value!r} is outside {shown}; expected a p99 latency target such as "
                                  f"{example}")
        out[name] = seconds
    return out


# ---------------------------------------------------------------------------- site and prices
_NUM = r"([+-]?(?:\d[\d_,]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
# unit -> factor to the field's base unit
_INTENSITY_UNITS = {  # -> gCO2e/kWh
    "gco2e/kwh": 1.0, "gco2/kwh": 1.0, "g/kwh": 1.0, "kgco2e/kwh": 1e3, "kgco2/kwh": 1e3, "kg/kwh": 1e3,
    "kgco2e/mwh": 1.0, "kgco2/mwh": 1.0, "tco2e/mwh": 1e3, "tco2/mwh": 1e3, "gco2e/mwh": 1e-3,
}
_ENERGY_PRICE_UNITS = {  # -> $/kWh
    "$/kwh": 1.0, "usd/kwh": 1.0, "cents/kwh": 0.01, "cent/kwh": 0.01, "¢/kwh": 0.01, "c/kwh": 0.01,
    "$/mwh": 1e-3, "usd/mwh": 1e-3,
}
_HOURLY_UNITS = {  # -> $/device-hour
    "$/device-hour": 1.0, "$/device-h": 1.0, "$/gpu-hour": 1.0, "$/gpu-h": 1.0, "$/chip-hour": 1.0,
    "$/hour": 1.0, "$/hr": 1.0, "$/h": 1.0, "usd/device-hour": 1.0, "usd/gpu-hour": 1.0, "usd/hour": 1.0,
    "usd/h": 1.0, "cents/device-hour": 0.01, "cents/hour": 0.01,
}
_USD_UNITS = {"$": 1.0, "usd": 1.0, "k$": 1e3, "$k": 1e3}


def _with_unit(value: Any, table: dict[str, float], *, field: str, accepted: str) -> float:
    """A number in the field's unit: a bare number, or a string with one of `table`'s units
    ('8 cents/kWh', '$0.08/kWh', '0.4 kgCO2e/kWh', '$2.50/GPU-hour')."""
    if isinstance(value, bool) or value is None:
        raise InvalidScenario(f"{field}: expected {accepted}, got {value!r}")
    if isinstance(value, (int, float)):
        number, factor = float(value), 1.0
    elif isinstance(value, str):
        text = value.strip().replace(" per ", "/").replace(" / ", "/")
        dollar = text.startswith("$")
        if dollar:
            text = text[1:].lstrip()
        m = re.fullmatch(_NUM + r"\s*(.*)", text)
        if not m:
            raise InvalidScenario(f"{field}: cannot read {value!r}; expected {accepted}")
        number = float(m.group(1).replace("_", "").replace(",", ""))
        unit = m.group(2).replace(" ", "").lower()
        if dollar and unit and not unit.startswith("$"):
            unit = "$" + unit
        if dollar and not unit:
            unit = "$"
        if unit == "":
            factor = 1.0
        elif unit in table:
            factor = table[unit]
        else:
            raise InvalidScenario(f"{field}: unknown unit {m.group(2)!r} in {value!r}; expected {accepted}")
    else:
        raise InvalidScenario(f"{field}: expected {accepted}, got {type(value).__name__}")
    if not math.isfinite(number):
        raise InvalidScenario(f"{field}: {value!r} is not a finite number; expected {accepted}")
    if number < 0:
        raise InvalidScenario(f"{field}: {value!r} is negative; expected a non-negative value, {accepted}")
    return number * factor


def grid_intensity_gco2e_per_kwh(value: Any, *, field: str) -> float:
    accepted = "gCO2e/kWh as a number or with its unit, e.g. 390, '390 gCO2e/kWh' or '0.39 kgCO2e/kWh' (0..2000 g)"
    g = _with_unit(value, _INTENSITY_UNITS, field=field, accepted=accepted)
    if g > 2000:
        raise InvalidScenario(f"{field}: {value!r} is {g:g} gCO2e/kWh, above any grid (coal is ~1000); "
                              f"expected {accepted}")
    if 0 < g < 1 and isinstance(value, (int, float)):
        raise InvalidScenario(f"{field}: {value!r} gCO2e/kWh is implausibly low (the cleanest grids are ~10); "
                              f"did you mean '{value:g} kgCO2e/kWh'?")
    return g


MIN_ELECTRICITY_USD_PER_KWH = 0.005   # half a cent: below the cheapest industrial tariffs (~2 cents); 0 is allowed


def electricity_price_usd_per_kwh(value: Any, *, field: str) -> float:
    accepted = "$/kWh as a number or with its unit, e.g. 0.08, '0.08 $/kWh', '8 cents/kWh' or '80 $/MWh' (0..2 $)"
    p = _with_unit(value, _ENERGY_PRICE_UNITS, field=field, accepted=accepted)
    if 0 < p < MIN_ELECTRICITY_USD_PER_KWH:
        hint = (" did you mean " + repr(re.sub(r"(?i)mwh", "kWh", value)) + "?"
                if isinstance(value, str) and "mwh" in value.lower() else "")
        raise InvalidScenario(f"{field}: {value!r} is ${p:.3g}/kWh, below any grid price (~$0.02..0.50);{hint} "
                              f"expected {accepted}")
    if p > 2:
        hint = (f" did you mean '{value:g} cents/kWh' or '{value:g} $/MWh'?" if isinstance(value, (int, float))
                else "")
        raise InvalidScenario(f"{field}: {value!r} is ${p:g}/kWh, above any grid price (~$0.05..0.50);{hint} "
                              f"expected {accepted}")
    return p


def price_per_device_hour_usd(value: Any, *, field: str) -> float:
    accepted = "$ per device-hour as a number or with its unit, e.g. 2.5, '$2.50/device-hour' or '250 cents/hour'"
    p = _with_unit(value, _HOURLY_UNITS, field=field, accepted=accepted)
    if p > 1000:
        raise InvalidScenario(f"{field}: {value!r} is ${p:g} per device-hour, above any rental price (~$1..20); "
                              f"expected {accepted}")
    return p


def usd(value: Any, *, field: str, maximum: float = 1e9) -> float:
    accepted = f"dollars as a number or with its unit, e.g. 30000, '$30,000' or '30000 USD' (at most {maximum:.0e})"
    v = _with_unit(value, _USD_UNITS, field=field, accepted=accepted)
    if v > maximum:
        raise InvalidScenario(f"{field}: {value!r} is above {maximum:.0e} $; expected {accepted}")
    return v


PRICING_KEYS = ("mode", "price_per_device_hour", "capex_usd", "node_capex_usd", "depreciation_years")
PRICING_MODES = ("hourly", "tco")


def normalize_pricing(data: Any) -> dict[str, Any]:
    """The scenario's `pricing` section with its numbers parsed (units, bounds); unknown keys refused."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidScenario("pricing: expected a mapping such as {mode: hourly, price_per_device_hour: 2.5} "
                              "or {mode: tco, capex_usd: 30000}")
    for key in data:
        if key not in PRICING_KEYS:
            raise UnknownName("pricing field", str(key), PRICING_KEYS)
    out: dict[str, Any] = {}
    if "mode" in data:
        if data["mode"] not in PRICING_MODES:
            raise UnknownName("pricing.mode", str(data["mode"]), PRICING_MODES)
        out["mode"] = data["mode"]
    if "price_per_device_hour" in data:
        out["price_per_device_hour"] = price_per_device_hour_usd(data["price_per_device_hour"],
                                                                 field="pricing.price_per_device_hour")
    for key in ("capex_usd", "node_capex_usd"):
        if key in data:
            out[key] = usd(data[key], field=f"pricing.{key}")
    if "depreciation_years" in data:
        v = data["depreciation_years"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= 50:
            raise InvalidScenario(f"pricing.depreciation_years: {v!r}; expected a number of years in (0, 50]")
        out["depreciation_years"] = float(v)
    return out
