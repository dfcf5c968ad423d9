"""Units: constants in SI base units, and `parse` for quantities written with a unit.

Inside flopcast every quantity is a plain number in a base unit named by its suffix (`_bytes`,
`_s`, `_flops_per_s`, `_bytes_per_s`, `_w`, `_j`). Strings with units ("80 GiB", "3.35 TB/s",
"400 Gb/s", "989 TFLOP/s", "700 W", "8 ms") are parsed once, at the edges (catalog files, scenarios,
CLI flags). GB (1e9) and GiB (2**30) are different constants, and a lower-case "gb" is refused
because it could mean gigabits or gigabytes.
"""

from __future__ import annotations

import math
import re

from flopcast.errors import InvalidScenario

# Decimal (SI) prefixes and binary (IEC) prefixes: never mixed up.
KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12
PB = 1e15
KiB = 2**10
MiB = 2**20
GiB = 2**30
TiB = 2**40
PiB = 2**50

KILO, MEGA, GIGA, TERA, PETA, EXA = 1e3, 1e6, 1e9, 1e12, 1e15, 1e18
TFLOP = 1e12  # a teraFLOP is 1e12 FLOP, never 2**40

MINUTE_S = 60.0
HOUR_S = 3600.0
DAY_S = 86400.0
YEAR_S = 365.25 * DAY_S
KWH_J = 3.6e6

DIMENSIONS = ("bytes", "bytes_per_s", "flops", "flops_per_s", "s", "w", "j", "count")

_DIM_HELP = {
    "bytes": "a byte size such as '80 GiB', '141 GB' or '512 MiB'",
    "bytes_per_s": "a bandwidth such as '3.35 TB/s', '900 GB/s' or '400 Gb/s'",
    "flops": "a FLOP count such as '3.8e25' or '1e21 FLOP'",
    "flops_per_s": "a rate such as '989 TFLOP/s', '1.98 PFLOP/s' or '38 TOP/s'",
    "s": "a duration such as '8 ms', '1.5 s', '54 days' or '3 h'",
    "w": "a power such as '700 W', '10.2 kW' or '100 MW'",
    "j": "an energy such as '1 GWh', '3.6 MJ' or '5 kWh'",
    "count": "a number such as 2048 or '15.6e12'",
}

_DEC = {"": 1.0, "k": KILO, "K": KILO, "M": MEGA, "G": GIGA, "T": TERA, "P": PETA, "E": EXA}
_BIN = {"Ki": KiB, "Mi": MiB, "Gi": GiB, "Ti": TiB, "Pi": PiB}


def _build_units() -> dict[str, tuple[str, float]]:
    table: dict[str, tuple[str, float]] = {}
    for p, f in _DEC.items():
        if p == "K":  # "KB" is ambiguous (1000 or 1024); only "kB" and "KiB" are accepted
            continue
        table[f"{p}B"] = ("bytes", f)
        table[f"{p}B/s"] = ("bytes_per_s", f)
        table[f"{p}Bps"] = ("bytes_per_s", f)
        table[f"{p}b/s"] = ("bytes_per_s", f / 8)
        table[f"{p}bps"] = ("bytes_per_s", f / 8)
        for flop in ("FLOP", "FLOPs_total"):
            table[f"{p}{flop}"] = ("flops", f)
        for rate in ("FLOP/s", "FLOPS", "OP/s", "OPS"):
            table[f"{p}{rate}"] = ("flops_per_s", f)
        table[f"{p}W"] = ("w", f)
        table[f"{p}J"] = ("j", f)
        table[f"{p}Wh"] = ("j", f * 3600.0)
    del table["FLOPs_total"]
    for p, f in _BIN.items():
        table[f"{p}B"] = ("bytes", f)
        table[f"{p}B/s"] = ("bytes_per_s", f)
    for name, f in {
        "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0,
        "min": MINUTE_S, "h": HOUR_S, "hr": HOUR_S, "hour": HOUR_S, "hours": HOUR_S,
        "d": DAY_S, "day": DAY_S, "days": DAY_S, "week": 7 * DAY_S, "weeks": 7 * DAY_S,
        "year": YEAR_S, "years": YEAR_S,
    }.items():
        table[name] = ("s", f)
    return table


_UNITS = _build_units()
_AMBIGUOUS = {
    "KB": "write 'kB' (1000 bytes) or 'KiB' (1024 bytes)",
    "TFLOPs": "write 'TFLOP/s' for a rate or 'TFLOP' for a count",
    "GFLOPs": "write 'GFLOP/s' for a rate or 'GFLOP' for a count",
    "PFLOPs": "write 'PFLOP/s' for a rate or 'PFLOP' for a count",
    "FLOPs": "write 'FLOP/s' for a rate or 'FLOP' for a count",
}
_MAX_INT_BITS = 133          # 1e40: no count, size or time flopcast takes is larger (and a float holds it)
_MAX_QUANTITY_CHARS = 100    # "1.5e13 FLOP/s" is 13
_NUMBER = re.compile(r"^\s*([+-]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*$")


def _check_size(value: object, *, field: str, accepted: str) -> None:
    """Refuse an integer past 1e40 or a string of more than 100 characters before converting either
    (a 5,000-digit integer cannot even be printed in the message)."""
    if isinstance(value, int) and abs(value).bit_length() > _MAX_INT_BITS:
        raise InvalidScenario(f"{field}: an integer of about {int(abs(value).bit_length() * 0.30103) + 1:,} digits; "
                              f"expected {accepted}")
    if isinstance(value, str) and len(value) > _MAX_QUANTITY_CHARS:
        raise InvalidScenario(f"{field}: a quantity of {len(value):,} characters; expected {accepted}")


def parse(value: object, dimension: str, *, field: str = "value") -> float:
    """Parse a quantity into SI base units of `dimension` (one of DIMENSIONS).

    A bare number (int or float) is taken to be in base units already. A string must carry a unit
    of the right dimension ("80 GiB" for bytes); "count" accepts plain numbers only. Negative,
    NaN and infinite values are refused. Raises InvalidScenario naming `field` and the accepted form.
    """
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}")
    accepted = _DIM_HELP[dimension]
    if isinstance(value, bool) or value is None:
        raise InvalidScenario(f"{field}: expected {accepted}, got {value!r}")
    _check_size(value, field=field, accepted=accepted)
    if isinstance(value, (int, float)):
        number = float(value)
        unit = ""
    elif isinstance(value, str):
        m = _NUMBER.match(value)
        if not m:
            raise InvalidScenario(f"{field}: cannot read {value!r}; expected {accepted}")
        number = float(m.group(1).replace("_", ""))
        unit = m.group(2)
    else:
        raise InvalidScenario(f"{field}: expected {accepted}, got {type(value).__name__} {value!r}")

    if not math.isfinite(number):
        raise InvalidScenario(f"{field}: {value!r} is not a finite number; expected {accepted}")
    if number < 0:
        raise InvalidScenario(f"{field}: {value!r} is negative; expected {accepted}")
    if unit == "":
        if isinstance(value, str) and dimension != "count":
            raise InvalidScenario(f"{field}: {value!r} has no unit; expected {accepted}")
        return int(number) if isinstance(value, int) and dimension == "count" else number
    if dimension == "count":
        raise InvalidScenario(f"{field}: {value!r} should be a plain number; expected {accepted}")
    if unit in _AMBIGUOUS:
        raise InvalidScenario(f"{field}: unit {unit!r} in {value!r} is ambiguous; {_AMBIGUOUS[unit]}")
    hit = _UNITS.get(unit)
    if hit is None:
        lower = {u.lower(): u for u in _UNITS}
        if unit.lower() in lower and dimension in ("bytes", "bytes_per_s"):
            raise InvalidScenario(
                f"{field}: unit {unit!r} in {value!r} is ambiguous (bits or bytes? decimal or binary?); "
                f"expected {accepted}"
            )
        raise InvalidScenario(f"{field}: unknown unit {unit!r} in {value!r}; expected {accepted}")
    unit_dim, factor = hit
    if unit_dim != dimension:
        raise InvalidScenario(
            f"{field}: {value!r} is a {unit_dim.replace('_per_', '/')} quantity; expected {accepted}"
        )
    return number * factor


def parse_count(value: object, *, field: str) -> int:
    """Parse a positive-or-zero integer count ("15.6e12" allowed when it is integral)."""
    x = parse(value, "count", field=field)
    if float(x) != int(x):
        raise InvalidScenario(f"{field}: expected a whole number, got {value!r}")
    return int(x)


def format_bytes(n: float) -> str:
    """Human form with binary prefixes for memory sizes (e.g. '74.5 GiB')."""
    for unit, f in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= f:
            return f"{n / f:.4g} {unit}"
    return f"{n:.0f} B"


def format_si(x: float, unit: str, digits: int = 3) -> str:
    """Human form with decimal prefixes: format_si(9.894e14, 'FLOP/s') -> '989 TFLOP/s'
    (scientific notation beyond exa: '3.8e+25 FLOP')."""
    if abs(x) >= 1e21:
        return f"{x:.{digits}g} {unit}"
    for p, f in (("E", EXA), ("P", PETA), ("T", TERA), ("G", GIGA), ("M", MEGA), ("k", KILO)):
        if abs(x) >= f:
            return f"{x / f:.{digits}g} {p}{unit}"
    return f"{x:.{digits}g} {unit}"


def format_count(n: float) -> str:
    """Parameter-style counts to three significant figures: 8.03B, 46.7B, 124M, 1B (not 1e+03M:
    the prefix is chosen after rounding)."""
    for p, f in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(float(f"{n:.3g}")) >= f:
            return f"{float(f'{n / f:.3g}'):g}{p}" if abs(n / f) < 1000 else f"{n / f:,.0f}{p}"
    return f"{n:.0f}"
