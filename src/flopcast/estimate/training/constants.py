"""Bytes per element and per parameter, and the documented runtime reserve, of a training step."""

from __future__ import annotations

from flopcast import units

# Bytes per parameter of the model states (mixed-precision Adam, Megatron-LM layout).
WEIGHT_BYTES = 2.0          # bf16/fp16 weights (fp8 training keeps bf16 weights, casts per matmul)
GRAD_BYTES = 4.0            # fp32 main gradients
OPTIMIZER_BYTES_FP32_MOMENTS = 12.0      # fp32 master weights + Adam m and v
# Optimizer step, HBM bytes per parameter (Megatron-LM mixed-precision optimizer): gradient
# non-finite check and unscale (read 4, write 4), global-norm for clipping (read 4), Adam (read
# master, m, v, grad 16; write master, m, v 12), copy of the master into the 16-bit weights (read
# 4, write 2), zeroing the fp32 gradient buffer (write 4).
ADAM_BYTES_MOVED = 50.0
ACT_BYTES = 2.0             # activations in bf16/fp16
# GEMM operand bytes per element by training precision: fp8 (one byte; per-tensor or 1x32 block
# scales ignored), NVFP4 (half a byte plus one fp8 scale per 16 elements: NVIDIA's NVFP4 recipe)
GEMM_OPERAND_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5 + 1.0 / 16}
QLORA_BYTES_PER_WEIGHT = 0.5 + 2.0 / 64   # NF4 with an fp16 absmax per 64-weight block (double quantisation ignored)
MASK_BYTES = 1.0            # a dropout mask element
# Bytes per logit (token x vocabulary entry on this device) the loss holds at the step's peak, which
# is reached at the loss with every layer's activations still kept, by cross-entropy kernel
# (training.loss_kernel; the framework's default in catalog/frameworks.yaml):
#   fp32: PyTorch eager F.cross_entropy(logits.float(), ...) (torchtitan's loss until 2025-04,
#     torchtitan/loss.py, and with torch.compile off): forward, the bf16 logits (2) + their fp32 copy
#     (4) + log_softmax's fp32 output, saved (4) = 10; backward, the saved output (4) + nll_loss's
#     dense fp32 gradient (4) + log_softmax's fp32 input gradient (4) = 12, the larger.
#   fused_fp32: Megatron-Core's vocab-parallel cross-entropy (cross_entropy_fusion_impl "native",
#     tensor_parallel/cross_entropy.py): an fp32 copy exponentiated and normalised in place, kept as
#     the softmax (4) beside the bf16 logits (2); the backward writes the gradient into the softmax
#     in place and casts it to bf16 (4 + 2) = 6.
#   compiled: the loss under torch.compile (torchtitan build_cross_entropy_loss with
#     training.compile, since pytorch/torchtitan bbb1b616e, 2025-04-02): one fused kernel keeps the
#     bf16 logits (2) and the per-row log-sum-exp; the backward writes a bf16 gradient (2) = 4.
#   te: Transformer Engine's parallel_cross_entropy (cross_entropy_fusion_impl "te"): the gradient
#     is written into the bf16 logits in the forward, nothing else is kept = 2.
LOSS_BYTES_PER_LOGIT = {"fp32": 12.0, "fused_fp32": 6.0, "compiled": 4.0, "te": 2.0}
# HBM traffic of an unfused fp32 cross-entropy per logit (Megatron's vocab-parallel loss; PyTorch's
# log_softmax + nll_loss moves about as much). Forward: cast bf16 -> fp32 (read 2, write 4), max
# (read 4), subtract the max (read 4, write 4), exp (4 + 4), sum (4), normalise into the softmax
# kept for backward (4 + 4) = 38 B. Backward: scale the softmax by the incoming gradient (4 + 4),
# cast back to bf16 (4 + 2) = 14 B.
LOSS_FWD_BYTES_PER_LOGIT = 38.0
LOSS_BWD_BYTES_PER_LOGIT = 14.0
# Embedding backward on the first stage: the dense (V/t x h) bf16 gradient is zeroed and scattered
# into (2 B), then accumulated into the fp32 main gradient (read 2 + 4, write 4) every micro-batch.
EMBED_GRAD_BYTES_PER_ENTRY = 12.0
# Weight-gradient accumulation where the stack leaves it to autograd (frameworks.yaml
# grad_accumulation: autograd, e.g. the 2022 DeepSpeed engine): from the second micro-batch of a
# step on, PyTorch's AccumulateGrad adds each new 16-bit weight gradient into param.grad in place
# (accumulate_grad.h: variable_grad += new_grad): read 2 + 2, write 2 bytes a parameter.
GRAD_ACCUM_BYTES_PER_PARAM = 6.0
# Runtime reserve on every device, outside PyTorch's caching allocator (documented defaults; the
# allocator's fragmentation is estimate/training/memory.py::FRAGMENTATION_FRAC).
# Workspace: the CUDA/ROCm context with the loaded kernel images (~0.3-0.6 GiB on Hopper) and the
# cuBLAS/cuDNN workspaces (cuBLAS: CUBLAS_WORKSPACE_CONFIG default :4096:8, 32 MiB a handle and stream).
RUNTIME_CONTEXT_BYTES = 1.0 * units.GiB
# Communication buffers: NCCL allocates its own (cudaMalloc, not the allocator's) per communicator:
# NCCL_BUFFSIZE (4 MiB default) per channel and protocol for each ring/tree peer; a rank in the
# data-, tensor- and pipeline-parallel communicators with 16-32 channels holds a few hundred MiB.
# The gradient buckets (Megatron-Core's contiguous grad buffer, FSDP's gathered layers) are counted
# with the gradients and weights.
COMM_BUFFER_BYTES = 0.5 * units.GiB
HOST_MEMORY_BANDWIDTH_BYTES_PER_S = 200e9   # per node, CPU Adam for ZeRO-Offload (8-channel DDR5 ~300 GB/s peak)
NVME_BANDWIDTH_BYTES_PER_S = 6e9            # per device, ZeRO-Infinity (PCIe Gen4 x4 NVMe ~7 GB/s read)
HOST_LINK_DEFAULT_BYTES_PER_S = 32e9        # per device, assumed where the hardware entry states no host link
