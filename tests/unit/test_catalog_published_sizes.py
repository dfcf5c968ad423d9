"""The catalog's newest model entries were written from their Hub config.json without network access.
Their exact counts are checked against `transformers` elsewhere (tests/oracle); this file checks the
configurations themselves against the sizes their makers publish, so a mis-remembered shape (a wrong
expert count, hidden size or layer count) cannot pass unnoticed.

Sizes come from the models' names (Qwen3-Next-80B-A3B: 80B total, 3B activated) or, where the name has
no size, from the model card's headline (URLs below). Headlines are rounded and conventions differ on
whether the embeddings and the vision tower count, hence the tolerances.
"""

from __future__ import annotations

import pytest

from flopcast.run.models import list_models

B = 1e9

# id: (published total, published activated or None, where it is published)
PUBLISHED = {
    "qwen3-next-80b-a3b": (80 * B, 3 * B, "name: Qwen/Qwen3-Next-80B-A3B"),
    "ernie-4.5-21b-a3b": (21 * B, 3 * B, "name: baidu/ERNIE-4.5-21B-A3B"),
    "hunyuan-a13b": (80 * B, 13 * B, "name: tencent/Hunyuan-A13B (card: 80B total)"),
    "llama-4-scout": (109 * B, 17 * B, "name: Llama-4-Scout-17B-16E; card: 109B total incl. vision"),
    "llama-4-maverick": (400 * B, 17 * B, "name: Llama-4-Maverick-17B-128E; card: 400B total"),
    "glm-4.5": (355 * B, 32 * B, "https://huggingface.co/zai-org/GLM-4.5 (355B total, 32B active, incl. MTP)"),
    "kimi-k2": (1000 * B, 32 * B, "https://huggingface.co/moonshotai/Kimi-K2-Instruct (1T total, 32B active)"),
    "minimax-m2": (230 * B, 10 * B, "https://huggingface.co/MiniMaxAI/MiniMax-M2 (230B total, 10B active)"),
    "deepseek-v3.2-exp": (671 * B, 37 * B, "DeepSeek-V3 architecture: 671B main model, 37B activated"),
    "nemotron-h-8b": (8 * B, None, "name: nvidia/Nemotron-H-8B-Base-8K"),
    "smollm3-3b": (3 * B, None, "name: HuggingFaceTB/SmolLM3-3B"),
    "olmo-3-7b": (7 * B, None, "name: allenai/Olmo-3-1025-7B"),
}

TOTAL_TOLERANCE_FRAC = 0.05  # names and headlines round to the nearest billion, vision towers and MTP aside
ACTIVE_TOLERANCE = 1.0 * B   # activated counts differ by whether embeddings count (up to ~1.2B here)


@pytest.fixture(scope="module")
def catalog_counts() -> dict[str, tuple[int, int]]:
    return {m["id"]: (m["params_total"], m["params_active"]) for m in list_models()}


@pytest.mark.parametrize("model_id", sorted(PUBLISHED))
def test_total_matches_the_published_size(model_id: str, catalog_counts: dict[str, tuple[int, int]]) -> None:
    """A catalog entry's total parameter count is within 5% of the size its maker publishes."""
    published, _, where = PUBLISHED[model_id]
    total, _ = catalog_counts[model_id]
    assert abs(total - published) <= TOTAL_TOLERANCE_FRAC * published, (model_id, total, where)


@pytest.mark.parametrize("model_id", sorted(k for k, v in PUBLISHED.items() if v[1] is not None))
def test_activated_matches_the_published_size(model_id: str,
                                              catalog_counts: dict[str, tuple[int, int]]) -> None:
    """A MoE entry's activated parameters per token are within 1B of its published activated size (the
    embeddings, which some makers leave out of that figure, are the difference)."""
    _, published, where = PUBLISHED[model_id]
    _, active = catalog_counts[model_id]
    assert published is not None
    assert abs(active - published) <= ACTIVE_TOLERANCE + 0.05 * published, (model_id, active, where)


def test_qwen3_next_equals_its_published_exact_count(catalog_counts: dict[str, tuple[int, int]]) -> None:
    """Qwen3-Next-80B-A3B's configuration (shared by Qwen3-Coder-Next) holds 79,674,391,296 parameters, of
    which 3,874,929,408 are active per token: the totals of the published safetensors headers, quoted in a
    public test of that checkpoint's parser (found through the code index)."""
    assert catalog_counts["qwen3-next-80b-a3b"] == (79_674_391_296, 3_874_929_408)
