"""Errors and the registry: unknown names suggest close ones; duplicates are refused."""

import pytest

from flopcast.errors import FlopcastError, InvalidScenario, UnknownName, did_you_mean
from flopcast.registry import Registry


def test_unknown_name_suggests_close_matches():
    """A typo gets 'did you mean' with the closest known names."""
    e = UnknownName("hardware", "h100sxm", ["h100-sxm", "h100-pcie", "b200"])
    assert "did you mean 'h100-sxm'" in str(e)
    assert isinstance(e, KeyError) and isinstance(e, FlopcastError)


def test_unknown_name_without_match_lists_known():
    """With no close match the message lists the known names instead."""
    msg = str(UnknownName("scheduler", "zzz", ["vllm", "static"]))
    assert "known: static, vllm" in msg


def test_substring_hint_for_short_names():
    """'h100' suggests the h100 variants."""
    assert set(did_you_mean("h100", ["h100-sxm", "h100-pcie", "mi300x"])) >= {"h100-sxm", "h100-pcie"}


def test_invalid_scenario_is_a_value_error():
    """InvalidScenario is both a FlopcastError and a ValueError."""
    assert issubclass(InvalidScenario, ValueError) and issubclass(InvalidScenario, FlopcastError)


def test_registry_register_get_names_and_duplicates():
    """Register directly, by decorator or lazily; a duplicate name raises."""
    reg: Registry[object] = Registry("scheduler")
    reg.register("static", 1)

    @reg.register("vllm")
    def vllm():
        return 2

    calls = []
    reg.register("lazy", loader=lambda: calls.append(1) or 3)
    assert reg.names() == ["lazy", "static", "vllm"]
    assert not calls
    assert reg.get("lazy") == 3 and reg.get("lazy") == 3 and calls == [1]
    assert reg.get("vllm") is vllm
    with pytest.raises(ValueError, match="duplicate"):
        reg.register("static", 4)
    with pytest.raises(UnknownName, match="did you mean 'static'"):
        reg.get("statik")
