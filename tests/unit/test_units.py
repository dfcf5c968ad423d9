"""units.parse: quantities with units into SI base units; anything ambiguous is refused."""

import math

import pytest

from flopcast import units
from flopcast.errors import InvalidScenario


@pytest.mark.parametrize(
    ("text", "dim", "expected"),
    [
        ("80 GiB", "bytes", 80 * 2**30),
        ("141 GB", "bytes", 141e9),
        ("512 MiB", "bytes", 512 * 2**20),
        ("2 TB", "bytes", 2e12),
        ("3.35 TB/s", "bytes_per_s", 3.35e12),
        ("900 GB/s", "bytes_per_s", 900e9),
        ("400 Gb/s", "bytes_per_s", 50e9),
        ("400 Gbps", "bytes_per_s", 50e9),
        ("989 TFLOP/s", "flops_per_s", 989e12),
        ("989 TFLOPS", "flops_per_s", 989e12),
        ("1.98 PFLOP/s", "flops_per_s", 1.98e15),
        ("38 TOP/s", "flops_per_s", 38e12),
        ("3.8e25 FLOP", "flops", 3.8e25),
        ("700 W", "w", 700.0),
        ("10.2 kW", "w", 10.2e3),
        ("100 MW", "w", 100e6),
        ("1 GWh", "j", 3.6e12),
        ("8 ms", "s", 8e-3),
        ("54 days", "s", 54 * 86400.0),
        ("2 h", "s", 7200.0),
        ("15.6e12", "count", 15.6e12),
        (2048, "count", 2048),
        (3.35e12, "bytes_per_s", 3.35e12),
    ],
)
def test_parse_accepts_the_scenario_forms(text, dim, expected):
    """Every form SCENARIO.md shows parses to SI base units (bits become bytes: / 8)."""
    assert units.parse(text, dim) == pytest.approx(expected, rel=1e-12)


def test_gb_and_gib_are_distinct_constants():
    """GB = 1e9 and GiB = 2**30: the unit bug found in peers."""
    assert units.GB == 1e9 and units.GiB == 2**30
    assert units.parse("80 GB", "bytes") != units.parse("80 GiB", "bytes")


@pytest.mark.parametrize(
    ("text", "dim", "fragment"),
    [
        ("80 gb", "bytes", "ambiguous"),
        ("80 KB", "bytes", "ambiguous"),
        ("989 TFLOPs", "flops_per_s", "ambiguous"),
        ("80", "bytes", "no unit"),
        ("80 GiB", "bytes_per_s", "bytes quantity"),
        ("700 W", "s", "w quantity"),
        ("-3 GB", "bytes", "negative"),
        ("fast", "s", "cannot read"),
        ("3 parsecs", "s", "unknown unit"),
        ("12 GiB", "count", "plain number"),
        (float("nan"), "bytes", "finite"),
        (math.inf, "w", "finite"),
        (True, "count", "expected"),
        (None, "bytes", "expected"),
    ],
)
def test_parse_refuses_ambiguous_or_malformed(text, dim, fragment):
    """Bad quantities raise InvalidScenario naming the field and the accepted form."""
    with pytest.raises(InvalidScenario) as e:
        units.parse(text, dim, field="hardware.hbm_capacity")
    msg = str(e.value)
    assert fragment in msg
    assert msg.startswith("hardware.hbm_capacity:")
    assert "\n" not in msg


def test_parse_count_requires_whole_numbers():
    """Counts such as num_devices must be integral."""
    assert units.parse_count("1.6e4", field="n") == 16000
    with pytest.raises(InvalidScenario):
        units.parse_count(2.5, field="n")


def test_formatters_use_the_right_prefixes():
    """Memory is shown with binary prefixes, rates with decimal ones."""
    assert units.format_bytes(80 * 2**30) == "80 GiB"
    assert units.format_si(989.4e12, "FLOP/s") == "989 TFLOP/s"
    assert units.format_count(8_030_261_248) == "8.03B"
