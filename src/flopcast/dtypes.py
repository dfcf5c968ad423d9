"""Numeric formats: bytes per element. Sub-byte formats are fractional (fp4: 0.5 byte/element;
scale factors of block formats such as MXFP4/NVFP4 are left out here and stated where used)."""

from __future__ import annotations

from flopcast.errors import UnknownName

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp64": 8.0,
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp6": 0.75,
    "fp4": 0.5,
    "int4": 0.5,
}
COMPUTE_DTYPES = tuple(BYTES_PER_ELEMENT)
KV_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "fp4", "int4")


def bytes_per_element(dtype: str, *, allowed: tuple[str, ...] = COMPUTE_DTYPES, field: str = "dtype") -> float:
    """Bytes per element of `dtype`; an unknown name raises with the accepted ones."""
    if dtype not in allowed:
        raise UnknownName(field, dtype, allowed)
    return BYTES_PER_ELEMENT[dtype]
