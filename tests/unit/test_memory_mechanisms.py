"""The memory mechanisms behind `flopcast validate memory` (issue 21; fine-tuning: issue 22 d8): the
loss kernel, FSDP2's fp32 shard, the gradient buffer dtype, XLA's static allocator, the verdict's
allocator give-back, and what a frozen base keeps for its backward."""

from __future__ import annotations

import pytest

from flopcast import api
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate.training.constants import LOSS_BYTES_PER_LOGIT, OPTIMIZER_BYTES_FP32_MOMENTS
from flopcast.estimate.training.memory import memory_verdict

V, H = 128256, 4096   # Llama 3 8B vocabulary and hidden size


def _run(training: dict | None = None, parallel: dict | None = None, model: str = "llama-3-8b",
         hardware: str = "h100-sxm", devices: int = 8):
    plan = {"tp": 1, "pp": 1, "dp": devices, "zero_stage": 3, "recompute": "full", "microbatch_seqs": 1}
    return api.estimate_training({"model": model, "hardware": hardware, "cluster": {"num_devices": devices},
                                  "training": {"seq_len": 4096, "global_batch_seqs": 8 * devices, **(training or {})},
                                  "parallel": {**plan, **(parallel or {})}})


def _acts(**training) -> float:
    return _run(training).memory_breakdown_bytes["activations"]


def test_loss_kernel_sets_the_loss_bytes_per_logit():
    """The loss holds its kernel's bytes per logit at the peak (12 eager fp32, 6 Megatron's fused fp32,
    4 compiled, 2 Transformer Engine's in place): between two kernels the activations differ by the
    difference times tokens x vocabulary; torchtitan defaults to eager fp32 and, compiled, to the
    compiled loss; training.loss_kernel overrides the framework's."""
    assert LOSS_BYTES_PER_LOGIT == {"fp32": 12.0, "fused_fp32": 6.0, "compiled": 4.0, "te": 2.0}
    logits = 4096 * V
    base = _acts(loss_kernel="te")
    for kernel, b in LOSS_BYTES_PER_LOGIT.items():
        assert _acts(loss_kernel=kernel) - base == pytest.approx((b - 2.0) * logits)
    assert _acts() == pytest.approx(_acts(loss_kernel="fused_fp32"))                       # megatron-core
    assert _acts(framework="torchtitan") - _acts(framework="torchtitan", loss_kernel="compiled") == pytest.approx(
        8.0 * logits)
    assert _acts(framework="torchtitan", compile=True) == pytest.approx(
        _acts(framework="torchtitan", compile=True, loss_kernel="compiled"))
    with pytest.raises((InvalidScenario, UnknownName)):
        _acts(loss_kernel="chunked")


def test_fsdp2_shard_is_the_fp32_master():
    """Under FSDP2 (torchtitan, nemo-automodel) a ZeRO-3 rank's parameter shard is the fp32 master in
    the optimizer state: weights hold only the gathered layers, so model states are 16 B/param over
    the shard group plus the gathered layers; DeepSpeed ZeRO-3 keeps a 16-bit shard beside it."""
    def states(framework: str) -> dict[str, float]:
        return _run({"framework": framework}, devices=64).memory_breakdown_bytes
    titan, ds = states("torchtitan"), states("deepspeed")
    assert titan["optimizer"] == pytest.approx(ds["optimizer"])
    n_params = titan["optimizer"] * 64 / OPTIMIZER_BYTES_FP32_MOMENTS
    assert ds["weights"] - titan["weights"] == pytest.approx(2.0 * n_params / 64, rel=1e-6)
    assert titan["weights"] < 0.1 * n_params * 2.0                       # a few gathered layers


def test_megatron_gradient_buffer_follows_the_reduce_dtype():
    """Megatron-Core's contiguous gradient buffer holds gradients in the reduction dtype
    (grad_reduce_in_fp32): fp32 reduction doubles the bf16 buffer; FSDP2 shards keep fp32 either way."""
    mc = {"zero_stage": 1}
    bf16 = _run(parallel=mc).memory_breakdown_bytes["gradients"]
    fp32 = _run({"grad_reduce_dtype": "fp32"}, parallel=mc).memory_breakdown_bytes["gradients"]
    assert fp32 == pytest.approx(2 * bf16)
    t = {"framework": "torchtitan"}
    assert _run(t).memory_breakdown_bytes["gradients"] == pytest.approx(
        _run({**t, "grad_reduce_dtype": "fp32"}).memory_breakdown_bytes["gradients"])


def test_xla_has_no_allocator_cache_or_nccl_buffers():
    """MaxText's XLA buffers are assigned at compile time: no fragmentation and no NCCL buffers on any
    rank; a PyTorch stack on the same plan carries both."""
    xla = _run({"framework": "maxtext"}, hardware="tpu-v6e", devices=8)
    for r in xla.memory_per_rank:
        assert r["fragmentation_bytes"] == 0 and r["comm_buffers_bytes"] == 0
        assert r["reserved_bytes"] == r["allocated_bytes"]
    torch = _run({"framework": "torchtitan"}, devices=8)
    assert all(r["fragmentation_bytes"] > 0 and r["comm_buffers_bytes"] > 0 for r in torch.memory_per_rank)


def test_verdict_counts_the_allocator_cache_as_given_back():
    """A plan is `does not fit` only when what it needs without the allocator's cache exceeds capacity
    x (1 + band): PyTorch's caching allocator frees its cache and retries before raising OOM."""
    assert memory_verdict(110, 100, 0.05) == "does not fit"
    assert memory_verdict(110, 100, 0.05, least_bytes=104) == "marginal"
    assert memory_verdict(110, 100, 0.05, least_bytes=106) == "does not fit"
    assert memory_verdict(94, 100, 0.05, least_bytes=80) == "fits"


def _ft(method: str, targets: list[str], dropout: float = 0.0, framework: str = "megatron-core") -> float:
    ft = {"method": method, "rank": 8, "target_modules": targets, "dropout": dropout}
    return _run({"finetune": ft, "framework": framework}, parallel={"recompute": "none", "zero_stage": 0},
                devices=1).memory_breakdown_bytes["activations"]


def test_frozen_base_keeps_only_adapted_inputs():
    """LoRA: a frozen linear without an adapter keeps no input (autograd keeps it only for the weight
    gradient), so adapting the MLP keeps its up- and down-projection inputs (h + d_ff per token per
    layer) that an attention-only LoRA drops; QLoRA's 4-bit linears keep every input whatever is
    targeted; full training keeps at least as much as QLoRA."""
    tokens, layers, d_ff = 4096, 32, 14336
    att, both = _ft("lora", ["attention"]), _ft("lora", ["attention", "mlp"])
    assert both - att == pytest.approx((H + d_ff) * 2.0 * tokens * layers)
    q_att, q_both = _ft("qlora", ["attention"]), _ft("qlora", ["attention", "mlp"])
    assert q_att == pytest.approx(q_both) == pytest.approx(both)
    full = _run(parallel={"recompute": "none", "zero_stage": 0}, devices=1).memory_breakdown_bytes["activations"]
    assert full == pytest.approx(q_both)


def test_adapter_dropout_keeps_a_copy_and_a_mask():
    """With lora_dropout each adapted GEMM input gains a 1-byte mask; where the input is kept anyway
    (the attention output under LoRA, every input under QLoRA) the 16-bit dropped-out copy is new too.
    Attention adapters: the qkv input h and the output-projection input h per token per layer."""
    tokens, layers = 4096, 32
    lora = _ft("lora", ["attention"], 0.05) - _ft("lora", ["attention"])
    assert lora == pytest.approx((H * 1.0 + H * 3.0) * tokens * layers)
    qlora = _ft("qlora", ["attention"], 0.05) - _ft("qlora", ["attention"])
    assert qlora == pytest.approx(2 * H * 3.0 * tokens * layers)


def test_eager_swiglu_keeps_silu_output():
    """An eager stack (unfused element-wise ops) runs SwiGLU as silu then multiply and keeps d_ff more
    per token per layer than a fused SwiGLU (silu's output, kept by the multiply), in full training
    and under LoRA alike."""
    tokens, layers, d_ff = 4096, 32, 14336
    lora_eager = _ft("lora", ["attention"], framework="torchtitan")
    assert lora_eager - _ft("lora", ["attention"]) - 6.0 * 4096 * V == pytest.approx(d_ff * 2.0 * tokens * layers)
