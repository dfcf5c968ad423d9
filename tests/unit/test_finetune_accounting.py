"""LoRA / QLoRA FLOP and weight accounting (issue 22, deliverable 8): a frozen base has no
weight-gradient GEMMs, so a trained token costs about 4N FLOPs (NeMo's fine-tuning table counts the
same), plus the adapters; the frozen embedding and output layer are held in memory like the rest."""

from __future__ import annotations

import pytest

from flopcast import api, catalog
from flopcast.estimate import counts


def _scenario(method: str | None, model: str = "llama-3.1-8b", seq_len: int = 2048) -> dict:
    training: dict = {"seq_len": seq_len, "global_batch_seqs": 8}
    if method:
        training["finetune"] = {"method": method, "rank": 16, "target_modules": ["attention"]}
    return {"model": model, "hardware": "h100-sxm", "cluster": {"num_devices": 1}, "training": training,
            "parallel": {"tp": 1, "pp": 1, "dp": 1, "microbatch_seqs": 1}}


def test_adapter_parameters_by_hand():
    """Llama 2 7B (MHA, h = 4096, 32 layers), rank 8 on attention: q, k, v, o are h x h, each adapter
    r (h + h): 4 x 2 h r x 32 = 8,388,608 parameters; on mlp too: gate, up (h -> 11008) and down, 3 r (h + f) more."""
    m = catalog.get_model("llama-2-7b")
    assert counts.adapter_params_per_token(m, 8, ("attention",)) == 4 * 2 * 4096 * 8 * 32 == 8_388_608
    assert counts.adapter_params_per_token(m, 8, ("attention", "mlp")) == 8_388_608 + 3 * 8 * (4096 + 11008) * 32


def test_finetune_flops_are_forward_plus_input_gradients_plus_adapters():
    """F = 2 M + 3 A + 6 P: forward (M + A), input gradients (M + 2 A), no weight gradients of frozen
    weights, adapters fully trained; at a short sequence it is 4N to within 2% (N: all parameters,
    the embedding table standing in for the output layer's matmul in Llama 2's untied pair)."""
    m = catalog.get_model("llama-2-7b")
    mm, attn = counts.matmul_flops_per_token(m), counts.attention_flops_per_token(m, 4096, "causal")
    p = counts.adapter_params_per_token(m, 32, ("attention",))
    assert counts.finetune_flops_per_token(m, 4096, 32, ("attention",)) == 2 * mm + 3 * attn + 6 * p
    short = counts.finetune_flops_per_token(m, 128, 32, ("attention",))
    assert short == pytest.approx(4 * counts.params_total(m), rel=0.02)


def test_lora_mfu_counts_the_frozen_base_as_the_documents_do():
    """Under LoRA the step's model FLOPs are tokens x finetune_flops_per_token (not 6N), so MFU is
    that over step time x peak; about 2/3 of full training's count at the same shape."""
    lora = api.estimate_training(_scenario("lora"))
    full = api.estimate_training(_scenario(None))
    m = catalog.get_model("llama-3.1-8b")
    tokens = 2048 * 8
    assert lora.model_flops_per_step == pytest.approx(
        tokens * counts.finetune_flops_per_token(m, 2048, 16, ("attention",)), rel=1e-12)
    assert lora.model_flops_per_step / full.model_flops_per_step == pytest.approx(2 / 3, abs=0.03)
    peak = lora.model_flops_per_step / (lora.mfu * lora.step_time_s)
    assert peak == pytest.approx(full.model_flops_per_step / (full.mfu * full.step_time_s), rel=1e-9)


def test_lora_weights_hold_the_embedding_and_output_layer():
    """Llama-3.1-8B LoRA: the frozen base is all 8.03B parameters in bf16 (14.96 GiB, embedding and
    untied output layer included) plus the adapters; QLoRA keeps the embedding and output layer in
    16 bits and quantises the layers' linears only."""
    m = catalog.get_model("llama-3.1-8b")
    lora = api.estimate_training(_scenario("lora")).memory_breakdown_bytes["weights"]
    base = counts.params_total(m) * 2
    adapters = counts.adapter_params_per_token(m, 16, ("attention",)) * 2
    assert lora == pytest.approx(base + adapters, rel=1e-3)
    qlora = api.estimate_training(_scenario("qlora")).memory_breakdown_bytes["weights"]
    emb_head = 2 * m.vocab_size * m.hidden_size * 2
    assert emb_head < qlora < 0.5 * lora
