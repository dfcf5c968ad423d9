"""Parameter counts against the independent oracle: what Hugging Face `transformers` builds on the
meta device (no weights allocated) for the same config."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from flopcast import catalog  # noqa: E402
from flopcast.estimate import counts  # noqa: E402
from flopcast.specs.hf import SUPPORTED_MODEL_TYPES, from_hf_config  # noqa: E402

from .hf_configs import FAMILIES, config_for, meta_param_count  # noqa: E402


def test_every_supported_family_has_a_strategy():
    """The random-config oracle covers every model_type flopcast accepts."""
    assert set(FAMILIES) == set(SUPPORTED_MODEL_TYPES)


@pytest.mark.parametrize("model_id", catalog.model_ids())
def test_catalog_model_params_equal_transformers(model_id):
    """Every catalog model: params_total equals the meta-device parameter count, to the parameter."""
    cfg = catalog.model_entry(model_id)["config"]
    spec = catalog.get_model(model_id)
    assert counts.params_total(spec) == meta_param_count(cfg)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=__import__("hypothesis").strategies.data())
def test_random_configs_params_equal_transformers(family, data):
    """Random small configs of each family (optional keys sometimes omitted, so the config-class
    defaults are exercised): params_total equals transformers' count exactly."""
    cfg = data.draw(config_for(family))
    spec = from_hf_config(cfg)
    assert counts.params_total(spec) == meta_param_count(cfg), cfg


@pytest.mark.parametrize("family", FAMILIES)
def test_default_config_params_equal_transformers(family):
    """A config naming only its model_type builds the config class's default model; flopcast must
    know those defaults (deepseek_v2 needs num_experts_per_tok, nemotron num_key_value_heads,
    which transformers cannot build without; hunyuan_v1_moe head_dim)."""
    cfg = {"model_type": family}
    if family == "deepseek_v2":
        cfg["num_experts_per_tok"] = 6
    if family == "nemotron":
        cfg["num_key_value_heads"] = 8
    if family == "hunyuan_v1_moe":
        cfg["head_dim"] = 128   # transformers' default head_dim None builds no attention
    assert counts.params_total(from_hf_config(cfg)) == meta_param_count(cfg)
