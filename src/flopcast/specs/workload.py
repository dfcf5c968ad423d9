"""TrainingSpec: what is trained (sequence length, batch, token budget, precision, kernels)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flopcast import units
from flopcast.errors import InvalidScenario
from flopcast.estimate.calibration import Profile
from flopcast.specs import limits
from flopcast.specs.fields import bounded_int, check_keys, choice, flag

PRECISIONS = ("bf16", "fp16", "fp8")
TRAINING_KEYS = ("seq_len", "global_batch_seqs", "global_batch_tokens", "total_tokens", "precision",
                 "flash_attention", "attention_kernel", "dropout", "comm_overlap", "grad_reduce_dtype",
                 "framework", "compile", "moe_routing", "moe_max_nodes_per_token", "finetune", "mtp_layers",
                 "optimizer_moments_dtype")
FINETUNE_METHODS = ("lora", "qlora")
FINETUNE_KEYS = ("method", "rank", "target_modules")
TARGET_MODULES = ("attention", "mlp", "experts")


@dataclass(frozen=True, slots=True, kw_only=True)
class FinetuneSpec:
    """Parameter-efficient fine-tuning: the base weights are frozen (bf16 for lora, 4-bit NF4 with
    one scale per 64 weights for qlora) and every targeted linear layer (in x out) gains trainable
    adapters of rank r x (in + out) with gradients and Adam state (Hu et al. 2021; Dettmers et al. 2023)."""

    method: str = "lora"
    rank: int = 16
    target_modules: tuple[str, ...] = ("attention", "mlp")


def _finetune(value: Any) -> FinetuneSpec | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidScenario("training.finetune: expected a mapping {method: lora | qlora, rank, target_modules}")
    check_keys(value, "training.finetune", FINETUNE_KEYS)
    method = choice(value, "training.finetune", "method", "lora", FINETUNE_METHODS)
    rank = bounded_int(value.get("rank", 16), "training.finetune.rank", 1, 4096)
    targets = value.get("target_modules", ["attention", "mlp"])
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, (list, tuple)) or not targets:
        raise InvalidScenario("training.finetune.target_modules: expected a list of attention, mlp, experts")
    for t in targets:
        if t not in TARGET_MODULES:
            from flopcast.errors import UnknownName

            raise UnknownName("training.finetune.target_modules", str(t), TARGET_MODULES)
    return FinetuneSpec(method=method, rank=rank, target_modules=tuple(targets))
MOE_ROUTING = ("dropless", "forced_balance")
ATTENTION_KERNELS = ("flash3", "flash2")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingSpec:
    """One pre-training job.

    precision: bf16/fp16 mixed precision, or fp8 (Transformer Engine: fp8 matmuls, bf16 weights and
    activations elsewhere). flash_attention: fused attention that never stores the S x S scores
    (False reproduces 2021-2022 Megatron-LM, which materialised them); attention_kernel: which
    generation of fused kernel, flash3 (FlashAttention-3 / cuDNN, 2024 on; the default) or flash2
    (FlashAttention-2 and Triton ports, 2023), whose efficiency differs most on Hopper. dropout: dropout masks are
    kept for backward (GPT-3-era recipes; modern LLM recipes use none). comm_overlap: tensor-,
    data-parallel and context-parallel communication overlapped with compute as Megatron-Core does
    with --tp-comm-overlap/--overlap-grad-reduce/--overlap-param-gather (False: exposed, as in
    2021-2022 Megatron-LM). grad_reduce_dtype: the data-parallel gradient reduction's element type
    (bf16: Megatron-Core's default grad_reduce_in_fp32=False and FSDP mixed precision; fp32: older
    Megatron-LM)."""

    seq_len: int
    global_batch_seqs: int
    total_tokens: float | None = None
    precision: str = "bf16"
    flash_attention: bool = True
    attention_kernel: str = "flash3"
    dropout: bool = False
    comm_overlap: bool = True
    grad_reduce_dtype: str = "bf16"
    framework: str = "megatron-core"
    compile: bool = False
    moe_routing: str = "dropless"
    moe_max_nodes_per_token: int | None = None
    finetune: FinetuneSpec | None = None
    mtp_layers: int | None = None     # multi-token-prediction modules trained on the last stage (None: 0)
    # Adam's first and second moments: fp32, or bf16 (Megatron-Core --exp-avg-dtype/--exp-avg-sq-dtype
    # bf16; DeepSeek-V3 report sec. 3.3.2); master weights stay fp32
    optimizer_moments_dtype: str = "fp32"
    profile: Profile = Profile("training")

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.global_batch_seqs


def training_from_mapping(data: Mapping[str, Any], profile: Profile | None = None) -> TrainingSpec:
    """Parse the `training` section. The attention kernel defaults to the framework's
    (catalog/frameworks.yaml); `profile` is the calibration profile the estimate uses (None: the
    shipped one)."""
    from flopcast.estimate import calibration
    from flopcast.estimate.efficiency import training_frameworks, training_stack

    if not isinstance(data, Mapping):
        raise InvalidScenario("training: expected a mapping with seq_len and global_batch_seqs")
    check_keys(data, "training", TRAINING_KEYS)
    if "seq_len" not in data:
        raise InvalidScenario("training.seq_len: missing (tokens per sequence, e.g. 4096)")
    seq_len = units.parse_count(data["seq_len"], field="training.seq_len")
    if seq_len < 1:
        raise InvalidScenario("training.seq_len: expected a positive integer")
    if "global_batch_seqs" in data:
        batch = units.parse_count(data["global_batch_seqs"], field="training.global_batch_seqs")
    elif "global_batch_tokens" in data:
        tokens = units.parse_count(data["global_batch_tokens"], field="training.global_batch_tokens")
        if tokens % seq_len:
            raise InvalidScenario(
                f"training.global_batch_tokens: {tokens} is not a multiple of seq_len {seq_len}")
        batch = tokens // seq_len
    else:
        raise InvalidScenario("training.global_batch_seqs: missing (sequences per optimizer step)")
    if batch < 1:
        raise InvalidScenario("training.global_batch_seqs: expected a positive integer")
    limits.check_count(seq_len, limits.MAX_SEQ_LEN, field="training.seq_len")
    limits.check_count(batch, limits.MAX_BATCH_SEQS, field="training.global_batch_seqs")
    total = data.get("total_tokens")
    if total is not None:
        total = float(units.parse(total, "count", field="training.total_tokens"))
        if total <= 0:
            raise InvalidScenario("training.total_tokens: expected a positive number of tokens")
        limits.check_count(total, limits.MAX_TOTAL_TOKENS, field="training.total_tokens")
    precision = choice(data, "training", "precision", "bf16", PRECISIONS)
    framework = choice(data, "training", "framework", "megatron-core", training_frameworks())
    kernel = choice(data, "training", "attention_kernel", training_stack(framework).attention_kernel,
                    ATTENTION_KERNELS)
    routing = choice(data, "training", "moe_routing", "dropless", MOE_ROUTING)
    grad_dtype = choice(data, "training", "grad_reduce_dtype", "bf16", ("bf16", "fp32"))
    return TrainingSpec(
        seq_len=seq_len, global_batch_seqs=batch, total_tokens=total, precision=precision,
        flash_attention=flag(data, "training", "flash_attention", True),
        dropout=flag(data, "training", "dropout", False),
        comm_overlap=flag(data, "training", "comm_overlap", True), grad_reduce_dtype=grad_dtype, attention_kernel=kernel,
        framework=framework, compile=flag(data, "training", "compile", False), moe_routing=routing,
        moe_max_nodes_per_token=_max_nodes(data.get("moe_max_nodes_per_token")),
        finetune=_finetune(data.get("finetune")),
        mtp_layers=_mtp(data.get("mtp_layers")),
        optimizer_moments_dtype=choice(data, "training", "optimizer_moments_dtype", "fp32", ("fp32", "bf16")),
        profile=profile if profile is not None else calibration.shipped("training"),
    )


def _max_nodes(value: Any) -> int | None:
    """training.moe_max_nodes_per_token: node-limited routing (DeepSeek-V3 sends each token to at most
    4 nodes); None = unlimited."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidScenario(f"training.moe_max_nodes_per_token: expected a positive integer, got {value!r}")
    return value


def _mtp(value: Any) -> int | None:
    """training.mtp_layers: multi-token-prediction modules trained beside the model (DeepSeek-V3: 1)."""
    return None if value is None else bounded_int(value, "training.mtp_layers", 0, 16)
