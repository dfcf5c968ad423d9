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

PRECISIONS = ("bf16", "fp16", "fp8", "fp4")
TRAINING_KEYS = ("seq_len", "global_batch_seqs", "global_batch_tokens", "total_tokens", "precision",
                 "flash_attention", "attention_kernel", "dropout", "comm_overlap", "grad_reduce_dtype",
                 "framework", "compile", "moe_routing", "moe_max_nodes_per_token", "finetune", "mtp_layers",
                 "optimizer_moments_dtype", "moe_capacity_factor", "tp_comm_overlap", "moe_dispatcher",
                 "cuda_graphs", "loss_kernel", "phases", "deadline")
# A phase (training.phases[i]) overrides any training key but `phases`, and may carry `parallel` and
# `cluster` mappings that override those sections for its duration.
PHASE_KEYS = ("name", *(k for k in TRAINING_KEYS if k not in ("phases", "deadline")), "parallel", "cluster")
PHASE_CLUSTER_KEYS = ("num_devices",)
# training.loss_kernel: eager fp32 cross-entropy, Megatron's fused fp32 one, torch.compile's, or
# Transformer Engine's in-place kernel (memory per logit: estimate/training/constants.py)
LOSS_KERNELS = ("fp32", "fused_fp32", "compiled", "te")
FINETUNE_METHODS = ("lora", "qlora")
FINETUNE_KEYS = ("method", "rank", "target_modules", "dropout")
TARGET_MODULES = ("attention", "mlp", "experts")


@dataclass(frozen=True, slots=True, kw_only=True)
class FinetuneSpec:
    """Parameter-efficient fine-tuning: the base weights are frozen (bf16 for lora, 4-bit NF4 with
    one scale per 64 weights for qlora) and every targeted linear layer (in x out) gains trainable
    adapters of rank r x (in + out) with gradients and Adam state (Hu et al. 2021; Dettmers et al. 2023).
    dropout: the adapters' input dropout probability (LoRA's lora_dropout; 0: none, NeMo's and PEFT's
    default), which keeps a dropped-out copy of each adapted input and its mask for the backward."""

    method: str = "lora"
    rank: int = 16
    target_modules: tuple[str, ...] = ("attention", "mlp")
    dropout: float = 0.0


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
    dropout = value.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= float(dropout) < 1.0:
        raise InvalidScenario(f"training.finetune.dropout: expected a probability from 0 to below 1, got {dropout!r}")
    return FinetuneSpec(method=method, rank=rank, target_modules=tuple(targets), dropout=float(dropout))
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
    # finish-by duration of the run (`flopcast budget --deadline` reads it: the fewest devices that
    # train total_tokens by then); None: no deadline
    deadline_s: float | None = None
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
    # token dropping at a capacity of factor x the mean load per expert, each expert's input padded to
    # it (MaxText capacity_factor; Megatron-Core --moe-expert-capacity-factor with
    # --moe-pad-expert-input-to-capacity); None = dropless
    moe_capacity_factor: float | None = None
    finetune: FinetuneSpec | None = None
    mtp_layers: int | None = None     # multi-token-prediction modules trained on the last stage (None: 0)
    # Adam's first and second moments: fp32, or bf16 (Megatron-Core --exp-avg-dtype/--exp-avg-sq-dtype
    # bf16; DeepSeek-V3 report sec. 3.3.2); master weights stay fp32
    optimizer_moments_dtype: str = "fp32"
    # the stack's settings, when the run chose its own (None: the framework's default)
    tp_comm_overlap: bool | None = None      # Megatron-Core --tp-comm-overlap
    moe_dispatcher: str | None = None        # alltoall (NCCL) | deepep (flex / DeepEP)
    cuda_graphs: bool = False                # whole-layer CUDA graphs: no per-kernel host launch
    # the cross-entropy implementation, which sets the loss's memory per logit (None: the framework's
    # default; estimate/training/constants.py LOSS_BYTES_PER_LOGIT)
    loss_kernel: str | None = None
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
    if "phases" in data:   # specs.scenario.resolve parses these with training_phases
        raise InvalidScenario("training.phases: a multi-phase run is parsed phase by phase (training_phases)")
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
    limits.check_training_sizes(data, seq_len=seq_len, batch_seqs=batch, total_tokens=total)
    precision = choice(data, "training", "precision", "bf16", PRECISIONS)
    framework = choice(data, "training", "framework", "megatron-core", training_frameworks())
    kernel = choice(data, "training", "attention_kernel", training_stack(framework).attention_kernel,
                    ATTENTION_KERNELS)
    routing = choice(data, "training", "moe_routing", "dropless", MOE_ROUTING)
    grad_dtype = choice(data, "training", "grad_reduce_dtype", "bf16", ("bf16", "fp32"))
    return TrainingSpec(
        seq_len=seq_len, global_batch_seqs=batch, total_tokens=total, precision=precision,
        deadline_s=_deadline(data.get("deadline")),
        flash_attention=flag(data, "training", "flash_attention", True),
        dropout=flag(data, "training", "dropout", False),
        comm_overlap=flag(data, "training", "comm_overlap", True), grad_reduce_dtype=grad_dtype, attention_kernel=kernel,
        framework=framework, compile=flag(data, "training", "compile", False), moe_routing=routing,
        moe_max_nodes_per_token=_max_nodes(data.get("moe_max_nodes_per_token")),
        moe_capacity_factor=_capacity(data.get("moe_capacity_factor")),
        finetune=_finetune(data.get("finetune")),
        mtp_layers=_mtp(data.get("mtp_layers")),
        optimizer_moments_dtype=choice(data, "training", "optimizer_moments_dtype", "fp32", ("fp32", "bf16")),
        tp_comm_overlap=flag(data, "training", "tp_comm_overlap", False) if data.get("tp_comm_overlap") is not None
        else None,
        moe_dispatcher=choice(data, "training", "moe_dispatcher", "", ("alltoall", "deepep"))
        if data.get("moe_dispatcher") is not None else None,
        cuda_graphs=flag(data, "training", "cuda_graphs", False),
        loss_kernel=choice(data, "training", "loss_kernel", "", LOSS_KERNELS)
        if data.get("loss_kernel") is not None else None,
        profile=profile if profile is not None else calibration.shipped("training"),
    )


def _capacity(value: Any) -> float | None:
    """training.moe_capacity_factor: a number from 1 to 16 (None: dropless routing)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1.0 <= float(value) <= 16.0:
        raise InvalidScenario(f"training.moe_capacity_factor: expected a number from 1 to 16 (capacity per expert "
                              f"over the mean load, e.g. 1.25), got {value!r}")
    return float(value)


def _deadline(value: Any) -> float | None:
    """training.deadline: a duration such as '90 days' (one hour up to ten years)."""
    if value is None:
        return None
    seconds = units.parse(value, "s", field="training.deadline")
    if not units.HOUR_S <= seconds <= 10 * units.YEAR_S:
        raise InvalidScenario(f"training.deadline: {value!r} is outside one hour..10 years; give a duration such "
                              "as '90 days'")
    return seconds


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


# ------------------------------------------------------------------------------- phases


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingPhase:
    """One phase of a multi-phase run (`training.phases[i]`), e.g. a batch-size ramp step or a
    long-context stage. `training`: the scenario's training keys overridden by the phase's (its
    own total_tokens); `plan`: the scenario's `parallel` section overridden by the phase's
    `parallel` keys (None when neither is given); `num_devices`: the phase's `cluster.num_devices`
    (None: the scenario's)."""

    name: str
    index: int
    training: TrainingSpec
    plan: Any = None                                   # specs.parallel.ParallelPlan | None
    parallel_overrides: Mapping[str, Any] | None = None   # the phase's own parallel keys, as written
    num_devices: int | None = None

    @property
    def label(self) -> str:
        """How errors and reasons name the phase: training.phases[3] ('long-context')."""
        return f"training.phases[{self.index}] ({self.name!r})"


def main_phase(phases: tuple[TrainingPhase, ...]) -> int:
    """The index of the phase with the most tokens (the first of equals): the phase a run's
    single-plan figures (plan, memory, step time, MFU, power) describe."""
    best = 0
    for i, p in enumerate(phases):
        if (p.training.total_tokens or 0.0) > (phases[best].training.total_tokens or 0.0):
            best = i
    return best


def _in_phase(err: Exception, section: str, where: str, label: str, given: Mapping[str, Any]) -> Exception:
    """`err` from parsing a phase's merged section, reworded to name the phase: a key the phase
    wrote is named at the phase (training.phases[3].seq_len); other messages start with the phase."""
    from flopcast.errors import UnknownName

    msg = str(err)
    for key in sorted(given, key=len, reverse=True):
        msg = msg.replace(f"{section}.{key}", f"{where}.{key}")
    if where not in msg:
        msg = f"{label}: {msg}"
    if isinstance(err, UnknownName):
        return UnknownName(err.kind, err.name, err.known, message=msg)
    return InvalidScenario(msg)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def training_phases(data: Mapping[str, Any], parallel: Mapping[str, Any] | None = None,
                    profile: Profile | None = None) -> tuple[TrainingPhase, ...]:
    """Parse a `training` section that has `phases`.

    Each phase is a mapping of training keys that override the section's own for that phase
    (`phases` itself excepted), plus `name` (default phase-<n>), `parallel` (keys that override the
    scenario's `parallel` section) and `cluster` (`num_devices` only). Rules: every phase gives its
    `total_tokens`; the section's own `total_tokens`, if given, must equal their sum (to 1e-6,
    rounding in the file) and is not inherited; a phase giving either batch key replaces both of
    the section's (so `global_batch_tokens` set at the top keeps the tokens per batch fixed across
    phases of different `seq_len`); names are unique; at most limits.MAX_PHASES phases."""
    phases = data.get("phases")
    if not isinstance(phases, (list, tuple)) or not phases:
        raise InvalidScenario("training.phases: expected a non-empty list of phases, each a mapping such as "
                              f"{{name: main, seq_len: 8192, global_batch_seqs: 2048, total_tokens: 12e12}}; "
                              f"got {_short(phases)}")
    limits.check_count(len(phases), limits.MAX_PHASES, field="training.phases: number of phases",
                       hint="merge consecutive phases of one shape; see docs/limits.md")
    base = {k: v for k, v in data.items() if k not in ("phases", "total_tokens")}
    out: list[TrainingPhase] = []
    for i, ph in enumerate(phases):
        out.append(_phase(ph, i, base, parallel, profile, [p.name for p in out]))
    _check_total(data, out)
    return tuple(out)


def _phase(ph: Any, i: int, base: Mapping[str, Any], parallel: Mapping[str, Any] | None,
           profile: Profile | None, earlier_names: list[str]) -> TrainingPhase:
    """`training.phases[i]`: its name, training spec (the section's keys under its own), plan and devices."""
    from flopcast.errors import FlopcastError

    where = f"training.phases[{i}]"
    if not isinstance(ph, Mapping):
        raise InvalidScenario(f"{where}: expected a mapping such as {{name: main, seq_len: 8192, "
                              f"total_tokens: 12e12}}, got {_short(ph)}")
    check_keys(ph, where, PHASE_KEYS)
    name = ph.get("name", f"phase-{i + 1}")
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise InvalidScenario(f"{where}.name: expected a non-empty string of at most 64 characters, "
                              f"got {_short(name)}")
    if name in earlier_names:
        raise InvalidScenario(f"{where}.name: {name!r} is the name of an earlier phase; names must be unique")
    label = f"{where} ({name!r})"
    if ph.get("total_tokens") is None:
        raise InvalidScenario(f"{label}: total_tokens missing; every phase gives its own tokens "
                              "(the run's total is their sum)")
    given = {k: v for k, v in ph.items() if k not in ("name", "parallel", "cluster")}
    merged = dict(base)
    if "global_batch_seqs" in given or "global_batch_tokens" in given:
        merged.pop("global_batch_seqs", None)
        merged.pop("global_batch_tokens", None)
    merged.update(given)
    try:
        train = training_from_mapping(merged, profile)
    except FlopcastError as e:
        raise _in_phase(e, "training", where, label, given) from None
    plan, over = _phase_plan(ph.get("parallel"), parallel, where, label)
    return TrainingPhase(name=name, index=i, training=train, plan=plan, parallel_overrides=over or None,
                         num_devices=_phase_devices(ph.get("cluster"), where))


def _phase_plan(over: Any, parallel: Mapping[str, Any] | None, where: str,
                label: str) -> tuple[Any, dict[str, Any]]:
    """The phase's plan (the scenario's `parallel` with the phase's keys over it; None when neither
    is given) and the phase's own keys."""
    from flopcast.errors import FlopcastError
    from flopcast.specs.parallel import ALL_PARALLEL_KEYS, plan_from_mapping

    if over is not None and not isinstance(over, Mapping):
        raise InvalidScenario(f"{where}.parallel: expected a mapping of parallel keys such as "
                              f"{{cp: 16, dp: 8}}, got {_short(over)}")
    over = dict(over or {})
    check_keys(over, f"{where}.parallel", ALL_PARALLEL_KEYS)
    if parallel is None and not over:
        return None, over
    try:
        return plan_from_mapping({**(parallel or {}), **over}), over
    except FlopcastError as e:
        raise _in_phase(e, "parallel", f"{where}.parallel", label, over) from None


def _phase_devices(cl: Any, where: str) -> int | None:
    """The phase's `cluster.num_devices` (None: the scenario's)."""
    if cl is None:
        return None
    if not isinstance(cl, Mapping):
        raise InvalidScenario(f"{where}.cluster: expected a mapping {{num_devices: N}}, got {_short(cl)}")
    check_keys(cl, f"{where}.cluster", PHASE_CLUSTER_KEYS)
    if "num_devices" not in cl:
        return None
    num_devices = units.parse_count(cl["num_devices"], field=f"{where}.cluster.num_devices")
    if num_devices < 1:
        raise InvalidScenario(f"{where}.cluster.num_devices: expected a positive integer, "
                              f"got {_short(cl['num_devices'])}")
    limits.check_count(num_devices, limits.MAX_DEVICES, field=f"{where}.cluster.num_devices")
    return num_devices


def _check_total(data: Mapping[str, Any], phases: list[TrainingPhase]) -> None:
    """The phases' tokens within the limit; the section's total_tokens, if given, their sum."""
    import math

    total = sum(p.training.total_tokens or 0.0 for p in phases)   # every phase gives its own
    limits.check_count(total, limits.MAX_TOTAL_TOKENS, field="training.phases: the phases' total_tokens")
    if data.get("total_tokens") is not None:
        given_total = float(units.parse(data["total_tokens"], "count", field="training.total_tokens"))
        if not math.isclose(given_total, total, rel_tol=1e-6):
            raise InvalidScenario(f"training.total_tokens: {given_total:.7g} tokens, but the phases' total_tokens "
                                  f"sum to {total:.7g}; give their sum or leave it out")
