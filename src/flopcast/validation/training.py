"""Validate the training estimator against published runs (validation/training_runs.csv, copied with
its sources from the project's ground-truth collection so that it ships with flopcast).

Each usable row becomes a scenario; each measurement is converted into the step time it implies:
- step_time_s: as measured;
- tflops_per_device: the source's own FLOP count per step / (TFLOP/s x devices). Megatron-LM SC'21
  and BLOOM count F = 96 B s L h^2 (1 + s/(6h) + V/(16 L h)) (Narayanan et al. 2021, eq. 3, which
  includes the recomputed forward); Megatron-Core counts model FLOPs (6N plus causal attention),
  which is flopcast's own model_flops_per_step;
- tokens_per_sec_per_device: tokens per step / (tokens/s x devices).
Rows without a parallel layout (or measured as MFU without one) are listed as skipped, with why.
Knobs that differ between software generations are set from the source's era, never per row:
2021-2022 Megatron-LM (SC'21, Korthikanti et al., BLOOM's Megatron-DeepSpeed) ran without
FlashAttention and without communication overlap, with GPT-3's dropout; later stacks use all three
of FlashAttention, overlap and no dropout; the 2023 MosaicML runs used FlashAttention-2-generation
kernels, the 2024-2025 NVIDIA stacks cuDNN / FlashAttention-3-generation ones.
"""

from __future__ import annotations

import csv
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flopcast.errors import FlopcastError

CSV_PATH = Path(__file__).resolve().parent / "training_runs.csv"

HARDWARE = (("B200", "b200"), ("A100-40GB", "a100-sxm-40gb"), ("A100", "a100-sxm-80gb"), ("H100", "h100-sxm"))
CATALOG_MODELS = {
    "LLAMA2-7B": "llama-2-7b", "LLAMA2-13B": "llama-2-13b", "LLAMA2-70B": "llama-2-70b",
    "LLAMA3-8B": "llama-3-8b", "LLAMA3-70B": "llama-3-70b", "Llama 3 8B": "llama-3-8b",
    "Llama 3 70B": "llama-3-70b", "GPT-OSS 120B": "gpt-oss-120b",
}
LEGACY_PREFIXES = ("MEG-SC21", "KORTH", "BLOOM")   # 2021-2022 Megatron-LM / Megatron-DeepSpeed
MORE_RUNS_CSV = Path(__file__).resolve().parent / "more_runs.csv"
MORE_RUNS_YAML = Path(__file__).resolve().parent / "more_runs.yaml"
# Source families for leave-one-source-out cross-validation: rows from one publication or one
# vendor's benchmark series share their measurement method and software, so they leave together.
SOURCE_FAMILIES = (
    ("MEG-SC21", "megatron-lm-sc21"), ("KORTH", "korthikanti-2022"), ("BLOOM", "bloom-2022"),
    ("MPT", "mosaicml-2023"), ("MCORE-DSV3", "megatron-core-gb200-2025"), ("MCORE-H100", "megatron-core-readme"),
    ("NEMO2407", "nemo-24.07"), ("MB-25", "megatron-bridge-2025"), ("TT-", "torchtitan"),
    ("AUTOMODEL", "nemo-automodel"), ("MAXTEXT", "maxtext"), ("MLPT51", "mlperf-training-5.1"),
)
# Training framework of each source (catalog/frameworks.yaml): set per source, never per row.
FRAMEWORK_BY_PREFIX = (("MPT", "llm-foundry"), ("BLOOM", "deepspeed"))


def source_family(row_id: str) -> str:
    for prefix, family in SOURCE_FAMILIES:
        if row_id.startswith(prefix):
            return family
    return row_id.split("-")[0].lower()
FLASH2_PREFIXES = ("MPT",)                         # 2023 llm-foundry: FlashAttention-2 / Triton kernels
# MoE settings of a row that its columns do not hold, from the config its source ran (section -> keys).
# Megatron-Bridge's DeepSeek-V3 H100 recipe (NVIDIA-NeMo/Megatron-Bridge scripts/performance, DeepSeek-V3
# H100 FP8 config: expert_tensor_parallel_size 1, moe_router_num_groups 8, moe_router_group_topk 4,
# moe_router_force_load_balancing true): EP64 x ETP1 over 8 nodes puts each group of 32 experts on one
# node, so a token reaches at most 4 nodes (DeepSeek-V3 report sec. 2.1.2, node-limited routing).
ROW_MOE_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "MB-2509-H100-DSV3": {"parallel": {"etp": 1}, "training": {"moe_max_nodes_per_token": 4}},
}


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    model: str
    hardware: str
    num_devices: int
    scenario: dict[str, Any]
    measured_metric: str
    measured_value: float
    source: str


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    model: str
    hardware: str
    num_devices: int
    measured_step_s: float | None
    predicted_step_s: float | None
    error_frac: float | None
    fits: bool | None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def _int(text: str) -> int | None:
    m = re.match(r"\s*(\d+)", text or "")
    return int(m.group(1)) if m else None


def _note_int(notes: str, *patterns: str) -> int | None:
    for p in patterns:
        m = re.search(p, notes, flags=re.IGNORECASE)
        if m:
            return int(m.group(1))
    return None


def _hardware(text: str) -> str | None:
    for key, hw in HARDWARE:
        if key in text:
            return hw
    return None


def _scale_out(row_id: str, hw: str) -> str:
    if row_id.startswith(("MEG-SC21", "KORTH")):
        return "200 Gb/s"      # Selene: 8x HDR 200 Gb/s per DGX A100
    if row_id.startswith("BLOOM"):
        return "50 Gb/s"       # Jean Zay A100 nodes: 4x 100 Gb/s Omni-Path per 8 GPUs
    if row_id.startswith("MPT") and hw.startswith("a100"):
        return "200 Gb/s"      # 1600 Gb/s RoCE per 8-GPU node
    return "400 Gb/s"          # DGX H100 / B200: one 400 Gb/s NIC per GPU


# NeMo 24.07's performance table names models without shapes; the shapes are NeMo's own configs
# (NVIDIA/NeMo: nemo/collections/llm/gpt/model/base.py GPTConfig5B / GPTConfig20B, GELU MLP with
# biases, GPT-2 BPE vocabulary padded to 50304; nemotron.py Nemotron3Config8B / 22B (MHA) and
# Nemotron4Config340B (8 query groups): squared-ReLU MLP, no biases, 256k vocabulary, untied).
NEMO_MODELS: dict[str, dict[str, Any]] = {
    "GPT3-5B": {"model_type": "gpt2", "n_layer": 24, "n_embd": 4096, "n_head": 32, "n_inner": 16384,
                "vocab_size": 50304},
    "GPT3-20B": {"model_type": "gpt2", "n_layer": 44, "n_embd": 6144, "n_head": 48, "n_inner": 24576,
                 "vocab_size": 50304},
    "Nemotron-8B": {"model_type": "nemotron", "num_hidden_layers": 32, "hidden_size": 4096,
                    "num_attention_heads": 32, "num_key_value_heads": 32, "intermediate_size": 16384,
                    "vocab_size": 256000},
    "Nemotron-22B": {"model_type": "nemotron", "num_hidden_layers": 40, "hidden_size": 6144,
                     "num_attention_heads": 48, "num_key_value_heads": 48, "intermediate_size": 24576,
                     "vocab_size": 256000},
    "Nemotron-340B": {"model_type": "nemotron", "num_hidden_layers": 96, "hidden_size": 18432,
                      "num_attention_heads": 96, "num_key_value_heads": 8, "intermediate_size": 73728,
                      "vocab_size": 256000},
}


def _model(row: dict[str, str], seq_len: int) -> Any:
    name = row["model"]
    if name in NEMO_MODELS:
        nemo = dict(NEMO_MODELS[name], name=name)
        nemo["n_positions" if nemo["model_type"] == "gpt2" else "max_position_embeddings"] = seq_len
        return nemo
    for key, model_id in CATALOG_MODELS.items():
        if name.startswith(key):
            return model_id
    if name.startswith("DeepSeek-V3"):
        return "deepseek-v3"
    L, h, a, V = (_int(row[k]) for k in ("layers", "hidden", "heads", "vocab"))
    if not (L and h and a):
        return None
    if name.startswith("MPT"):   # MosaicML MPT: no biases, ALiBi, 4x GeLU MLP, tied embeddings
        return {"model_type": "mpt", "n_layers": L, "d_model": h, "n_heads": a, "vocab_size": V or 50368,
                "max_seq_len": seq_len, "name": name}
    cfg: dict[str, Any] = {"model_type": "gpt2", "n_layer": L, "n_embd": h, "n_head": a,
                           "vocab_size": V or 51200, "n_positions": seq_len, "name": name}
    ffn = _int(row["ffn_hidden"])
    if ffn:
        cfg["n_inner"] = ffn
    return cfg


def _batch(text: str, seq_len: int) -> int | None:
    m = re.match(r"\s*([\d.]+)\s*(seqs|tokens)", text or "")
    if not m:
        return None
    n = int(float(m.group(1)))
    return n if m.group(2) == "seqs" else n // seq_len


def _zero_stage(text: str, legacy: bool) -> int:
    """ZeRO stage from the row's text: '3 (FSDP FULL_SHARD)', 'FSDP=8' (sharded over 8 ranks),
    'distributed optimizer' (= ZeRO-1), '1', '2 (SHARD_GRAD_OP)'; blank: ZeRO-1 on current
    Megatron stacks, none on 2021-2022 Megatron-LM."""
    fsdp = re.search(r"FSDP=(\d+)", text)
    if "FULL_SHARD" in text or (fsdp and int(fsdp.group(1)) > 0) or re.match(r"\s*3", text):
        return 3
    if re.match(r"\s*2", text):
        return 2
    if re.match(r"\s*1", text) or "distributed optimizer" in text:
        return 1
    return 0 if legacy else 1


def _parallel(row: dict[str, str], tp: int, pp: int, n_dev: int, legacy: bool) -> dict[str, Any]:
    """The row's parallel section: degrees, sequence parallelism, ZeRO, recompute and micro-batch (from
    its columns and notes; a legacy run's defaults where a column is empty)."""
    notes = row["notes"]
    cp = _int(row["cp"]) or 1
    ep = _int(row["ep"]) or 1
    mb = _note_int(notes, r"micro-?batch\s*(\d+)", r"MBS\s*(\d+)", r"MicroBatch\s*(\d+)") or 1
    vpp = _note_int(notes, r"virtual pipeline\s*(\d+)", r"VP\s*(\d+)", r"(\d+) virtual stages") or 1
    sp_text = row["sp"].strip().lower()
    sp = sp_text.startswith("yes") if sp_text else (tp > 1 and not legacy)
    rc_text = row["recompute"].lower()
    recompute = "full" if "full" in rc_text else "selective" if ("selective" in rc_text or not rc_text) else "none"
    return {"tp": tp, "pp": pp, "dp": n_dev // (tp * pp * cp), "cp": cp, "ep": ep, "sp": sp, "vpp": vpp,
            "zero_stage": _zero_stage(row["zero_stage"], legacy), "recompute": recompute, "microbatch_seqs": mb}


def _training_section(row: dict[str, str], seq_len: int, batch: int, legacy: bool) -> dict[str, Any]:
    """The row's training section: shape, precision, and the stack of its era and framework."""
    rid = row["id"]
    precision = "fp8" if "fp8" in row["precision"].lower() else "bf16" if "bf16" in row["precision"].lower() else "fp16"
    # "MoE benchmarks force-balance expert routing" (the Megatron-Bridge rows' notes): MoE rows only
    forced = (_int(row["ep"]) or 1) > 1 and "force-balance" in (row["notes"] + row["model"]).lower()
    return {"seq_len": seq_len, "global_batch_seqs": batch, "precision": precision,
            **({"moe_routing": "forced_balance"} if forced else {}),
            "flash_attention": not legacy, "dropout": legacy and not rid.startswith("BLOOM"),
            "comm_overlap": not legacy, "grad_reduce_dtype": "fp32" if legacy else "bf16",
            "attention_kernel": "flash2" if rid.startswith(FLASH2_PREFIXES) else "flash3",
            "framework": next((f for p_, f in FRAMEWORK_BY_PREFIX if rid.startswith(p_)), "megatron-core")}


def row_to_case(row: dict[str, str]) -> Case | str:
    """A validation case, or the reason the row cannot be used."""
    rid = row["id"]
    metric = row["measured_metric"]
    if metric not in ("step_time_s", "tflops_per_device", "tokens_per_sec_per_device"):
        return f"metric {metric} is not a step-time measurement (MFU/HFU without a plan, or run totals)"
    hw = _hardware(row["hardware"])
    seq_len = _int(row["seq_len"])
    n_dev = _int(row["num_devices"])
    tp, pp = _int(row["tp"]), _int(row["pp"])
    if not (hw and seq_len and n_dev and tp and pp):
        return "parallel layout, device count or hardware not in the row"
    batch = _batch(row["global_batch_tokens_or_seqs"], seq_len)
    model = _model(row, seq_len)
    if model is None or batch is None:
        return "model shape or batch not in the row"
    legacy = rid.startswith(LEGACY_PREFIXES)
    scenario = {
        "name": rid,
        "model": model,
        "hardware": hw,
        "cluster": {"num_devices": n_dev, "scale_out_bandwidth": _scale_out(rid, hw)},
        "training": _training_section(row, seq_len, batch, legacy),
        "parallel": _parallel(row, tp, pp, n_dev, legacy),
    }
    for section, keys in ROW_MOE_SETTINGS.get(rid, {}).items():
        scenario[section] = {**scenario[section], **keys}
    return Case(id=rid, model=row["model"], hardware=hw, num_devices=n_dev, scenario=scenario,
                measured_metric=metric, measured_value=float(row["measured_value"]), source=row["source"])


def megatron_eq3_flops(B: int, s: int, L: int, h: int, V: int) -> float:
    """Narayanan et al. SC'21, eq. 3: FLOPs per iteration with full recompute (4 passes)."""
    return 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h))


def measured_step_s(case: Case, row: dict[str, str], model_flops_per_step: float) -> float:
    v = case.measured_value
    t = case.scenario["training"]
    if case.measured_metric == "step_time_s":
        return v
    if case.measured_metric == "tokens_per_sec_per_device":
        return t["seq_len"] * t["global_batch_seqs"] / (v * case.num_devices)
    # tflops_per_device: with the source's FLOP formula
    if case.id.startswith(LEGACY_PREFIXES):
        flops = megatron_eq3_flops(t["global_batch_seqs"], t["seq_len"], _int(row["layers"]) or 0,
                                   _int(row["hidden"]) or 0, _int(row["vocab"]) or 51200)
    else:
        flops = model_flops_per_step
    return flops / (v * 1e12 * case.num_devices)


def load_rows() -> list[dict[str, str]]:
    with CSV_PATH.open(newline="") as f:
        return list(csv.DictReader(f))


def run(rows: list[dict[str, str]] | None = None) -> list[Result]:
    """Predict every usable row; skipped rows carry their reason."""
    from flopcast.run.training import estimate_training

    out: list[Result] = []
    for row in rows if rows is not None else load_rows():
        case = row_to_case(row)
        if isinstance(case, str):
            out.append(Result(row["id"], row["model"], row["hardware"], _int(row["num_devices"]) or 0,
                              None, None, None, None, skipped=case))
            continue
        try:
            est = estimate_training(case.scenario)
        except FlopcastError as e:
            out.append(Result(case.id, case.model, case.hardware, case.num_devices, None, None, None, None,
                              skipped=f"invalid plan: {e}"))
            continue
        meas = measured_step_s(case, row, est.model_flops_per_step)
        err = (est.step_time_s - meas) / meas
        out.append(Result(case.id, case.model, case.hardware, case.num_devices, meas, est.step_time_s, err, est.fits))
    return out


def summary(results: list[Result]) -> dict[str, Any]:
    """Error figures: the 8 Korthikanti end-to-end rows (Calculon's set) and every usable row."""
    used = [(r, abs(r.error_frac)) for r in results if r.error_frac is not None]
    korth = [e for r, e in used if r.id.startswith("KORTH-E2E")]
    all_abs = [e for _, e in used]
    return {
        "num_rows": len(results),
        "num_used": len(used),
        "num_skipped": len(results) - len(used),
        "korth_e2e_mean_abs_error": statistics.fmean(korth) if korth else None,
        "korth_e2e_max_abs_error": max(korth) if korth else None,
        "median_abs_error": statistics.median(all_abs) if all_abs else None,
        "max_abs_error": max(all_abs) if all_abs else None,
        "worst_row": max(used, key=lambda re: re[1])[0].id if used else None,
    }


# --------------------------------------------------------------------------- cases for fitting
def _more_runs() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(training rows of more_runs.csv with their scenario from more_runs.yaml, skipped id -> why)."""
    import yaml

    spec = yaml.safe_load(MORE_RUNS_YAML.read_text(encoding="utf-8"))
    with MORE_RUNS_CSV.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "training"]
    out, skipped = [], dict(spec.get("skipped", {}))
    for r in rows:
        entry = spec["training"].get(r["id"])
        if entry is None:
            skipped.setdefault(r["id"], "no scenario written for this row")
            continue
        out.append({"row": r, **entry})
    return out, skipped


def _case_from_scenario(rid: str, model_label: str, scenario: dict[str, Any], measured_of, source: str,
                        fitted: bool = True):
    """A fit.Case for one scenario; `measured_of(model_flops_per_step)` gives the measured step time;
    `fitted` False keeps the row out of every calibration fit (validated only)."""
    from dataclasses import replace

    from flopcast.estimate.calibration import Profile
    from flopcast.estimate.efficiency import generation_of
    from flopcast.estimate.training import estimate_training
    from flopcast.estimate.training.step import step_time_s
    from flopcast.run.training import training_inputs
    from flopcast.specs.scenario import resolve
    from flopcast.validation.fit import Case

    rs = resolve(scenario)
    train, plan = training_inputs(rs)

    def estimate(profile: Profile):
        return estimate_training(rs.model, rs.hardware, plan, replace(train, profile=profile),
                                 devices_per_node=rs.cluster.devices_per_node,
                                 scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s)

    memo: dict[Any, Any] = {}   # what no profile changes (op rows, fixed layouts), kept across trial profiles

    def step_s(profile: Profile) -> float:
        # the step time alone (the same number as estimate(profile).step_time_s; a test checks)
        return step_time_s(rs.model, rs.hardware, plan, replace(train, profile=profile),
                           devices_per_node=rs.cluster.devices_per_node,
                           scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s, cache={},
                           memo=memo)

    est = estimate(Profile("training"))
    gen = generation_of(rs.hardware.lookup_id)
    params = (f"compute.{gen}", f"stack.{train.framework}")
    # the one-parameter baseline at efficiency 1: model FLOPs / (devices x dense peak)
    return Case(id=rid, source=source, model=model_label, hardware=rs.hardware.lookup_id, quantity="step_time_s",
                measured=measured_of(est.model_flops_per_step), params=params,
                predict=step_s, baseline=est.step_time_s * est.mfu,
                generation=gen, classes=training_classes(rs.model.is_moe, gen, train.precision, train.framework)
                + (("finetune",) if train.finetune is not None else ()),
                scenario=scenario, fitted=fitted)


MEGATRON_FAMILY = ("megatron-core",)   # Megatron-LM, Megatron-Core, NeMo, Megatron-Bridge and MLPerf NVIDIA


def training_classes(is_moe: bool, generation: str, precision: str, framework: str) -> tuple[str, ...]:
    """The by-class report's classes of a training row: dense / moe, hardware generation, precision
    (fp4 for NVFP4 / MXFP4, fp8, bf16, fp16) and megatron-family / other-stacks (by its framework);
    a LoRA / QLoRA row is in class finetune too."""
    prec = "fp4" if "fp4" in precision else "fp8" if "fp8" in precision else precision
    stack = "megatron-family" if framework in MEGATRON_FAMILY else "other-stacks"
    return ("moe" if is_moe else "dense", generation, prec, stack)


# Rows that restate another row's measurement (issue 22 "no measurement twice"): kept in the table
# for their source, left out of validation and of every fit.
SAME_MEASUREMENT = {"BLOOM-176B-TFLOPS": "BLOOM-176B-STEP"}   # the TFLOP/s of the same step-time log line


def cases() -> tuple[list, list[dict[str, Any]]]:
    """Every usable training row (training_runs.csv and more_runs.csv) as a fit.Case, and the
    skipped rows with their reasons."""
    out, skipped = [], []
    for row in load_rows():
        if row["id"] in SAME_MEASUREMENT:
            skipped.append({"id": row["id"], "why": f"the same measurement as {SAME_MEASUREMENT[row['id']]} "
                            "(one log line entered twice): counted once"})
            continue
        case = row_to_case(row)
        if isinstance(case, str):
            skipped.append({"id": row["id"], "why": case})
            continue
        try:
            out.append(_case_from_scenario(case.id, case.model, case.scenario,
                                           lambda f, case=case, row=row: measured_step_s(case, row, f),
                                           source_family(case.id)))
        except FlopcastError as e:
            skipped.append({"id": case.id, "why": f"invalid plan: {e}"})
    more, more_skipped = _more_runs()
    skipped += [{"id": k, "why": v} for k, v in more_skipped.items()]
    for entry in more:
        row = entry["row"]
        sc = entry["scenario"]
        t = sc["training"]
        value = float(row["value"])
        n = int(row["num_devices"])

        def measured(f, row=row, t=t, value=value, n=n, entry=entry):
            metric = row["metric"]
            if metric == "tokens_per_sec_per_device":
                return t["seq_len"] * t["global_batch_seqs"] / (value * n)
            if metric == "step_time_s":
                return value
            if metric == "model_tflops_per_device":
                return f / (value * 1e12 * n)
            if metric == "throughput_samples_per_s":
                return t["global_batch_seqs"] / value
            raise ValueError(metric)
        try:
            out.append(_case_from_scenario(row["id"], row["model"], sc, measured, source_family(row["id"]),
                                           fitted=entry.get("calibrate", True)))
        except FlopcastError as e:
            skipped.append({"id": row["id"], "why": f"invalid plan: {e}"})
    return out, skipped
