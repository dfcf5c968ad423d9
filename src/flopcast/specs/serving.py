"""InferenceSpec: how a model is served (the `inference` section of a scenario)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flopcast import units
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate.calibration import Profile
from flopcast.specs import limits
from flopcast.specs.fields import bounded_int, check_keys, choice, flag

WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "int8", "fp4", "int4")
KV_DTYPES = ("bf16", "fp16", "fp8", "int8")
INFERENCE_KEYS = ("tp", "pp", "dp", "ep", "weights_dtype", "kv_dtype", "batch_size", "input_tokens", "output_tokens",
                  "max_tokens_per_iteration", "block_size", "workload", "scheduler", "slo",
                  "engine", "max_num_tokens", "max_batch_size", "eplb", "prefix_cache_hit_frac", "pool",
                  "two_batch_overlap", "speculative", "prefill", "decode", "kv_memory_fraction",
                  "weight_group_size")
# inference.prefill / inference.decode: a disaggregated pool's own layout, overriding the section's keys
# (dp is the pool's replicas; hardware a catalog id or mapping, like the top-level hardware)
POOL_ROLES = ("prefill", "decode")
POOL_KEYS = ("hardware", "tp", "pp", "dp", "ep", "engine", "weights_dtype", "kv_dtype", "batch_size",
             "max_batch_size", "max_num_tokens", "max_tokens_per_iteration", "block_size", "eplb",
             "two_batch_overlap", "kv_memory_fraction", "weight_group_size")
# weight-only integer formats with one fp16 scale per group of weights (inference.weight_group_size)
GROUPED_WEIGHT_DTYPES = ("int4", "int8")
MAX_WEIGHT_GROUP_SIZE = 4096
SPECULATIVE_METHODS = ("mtp", "eagle", "eagle2", "eagle3", "medusa", "draft_model", "ngram")
SPECULATIVE_TASKS = ("chat", "code", "math", "summarisation")
SPECULATIVE_KEYS = ("method", "num_draft_tokens", "acceptance_length", "draft_model", "task", "verify_tokens",
                    "host_overlap")
MAX_VERIFY_TOKENS = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeculativeSpec:
    """Speculative decoding: every step drafts `num_draft_tokens` tokens per sequence (k, the draft
    depth; mtp: the model's own multi-token-prediction module; eagle / eagle2 / eagle3: a one-layer
    draft head on the target's features; medusa: k extra heads; draft_model: a separate small model;
    ngram: tokens copied from the prompt, no draft network), then verifies `verify_tokens` query tokens
    per sequence in one forward (1 + k for a chain; more for a draft tree). `acceptance_length` is the
    mean tokens a verify step yields (accepted drafts + the bonus token), 1 <= a <= k + 1; None until
    the estimator predicts it from catalog/speculative.yaml by method, model and `task`.
    `host_overlap`: the engine overlaps its host work with the device during speculative steps (None:
    the engine's default, catalog/speculative.yaml engines; SGLang's speculative path does not)."""

    method: str
    num_draft_tokens: int
    acceptance_length: float | None = None
    draft_model: Any = None      # ModelSpec of the draft model (method draft_model)
    task: str = "chat"
    verify_tokens: int | None = None
    host_overlap: bool | None = None
    acceptance_source: str = "inference.speculative.acceptance_length"

    @property
    def query_tokens(self) -> int:
        """Query tokens per sequence of a verify forward (1 + k for a chain, the tree's size otherwise)."""
        return self.verify_tokens if self.verify_tokens is not None else 1 + self.num_draft_tokens

    def to_dict(self) -> dict[str, Any]:
        """The section as JSON data (the draft model by its name)."""
        draft = self.draft_model
        return {"method": self.method, "num_draft_tokens": self.num_draft_tokens,
                "acceptance_length": self.acceptance_length, "acceptance_source": self.acceptance_source,
                "task": self.task, "verify_tokens": self.query_tokens, "host_overlap": self.host_overlap,
                "draft_model": None if draft is None else getattr(draft, "name", str(draft))}


def _acceptance(value: Any, k: int) -> float | None:
    a = value.get("acceptance_length")
    if a is None:
        return None
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not 1.0 <= float(a) <= k + 1:
        raise InvalidScenario(f"inference.speculative.acceptance_length: expected tokens per verify step in "
                              f"[1, num_draft_tokens + 1 = {k + 1}], got {a!r} (omit it to have it predicted)")
    return float(a)


def _draft_model(value: Mapping[str, Any], method: str) -> Any:
    if method == "draft_model":
        if "draft_model" not in value:
            raise InvalidScenario("inference.speculative.draft_model: missing; give a catalog model id "
                                  "(e.g. llama-3.2-1b) for method draft_model")
        from flopcast import catalog

        return catalog.get_model(str(value["draft_model"]))
    if "draft_model" in value:
        raise InvalidScenario(f"inference.speculative.draft_model: only for method draft_model (method is {method})")
    return None


def _speculative(value: Any) -> SpeculativeSpec | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidScenario("inference.speculative: expected a mapping {method, num_draft_tokens, acceptance_length}")
    check_keys(value, "inference.speculative", SPECULATIVE_KEYS)
    method = choice(value, "inference.speculative", "method", "mtp", SPECULATIVE_METHODS)
    k = bounded_int(value.get("num_draft_tokens", 1), "inference.speculative.num_draft_tokens", 1, 16)
    task = choice(value, "inference.speculative", "task", "chat", SPECULATIVE_TASKS)
    verify = value.get("verify_tokens")
    if verify is not None:
        verify = bounded_int(verify, "inference.speculative.verify_tokens", k + 1, MAX_VERIFY_TOKENS)
    overlap = flag(value, "inference.speculative", "host_overlap", False) if "host_overlap" in value else None
    return SpeculativeSpec(method=method, num_draft_tokens=k, acceptance_length=_acceptance(value, k),
                           draft_model=_draft_model(value, method), task=task, verify_tokens=verify,
                           host_overlap=overlap)


POOLS = ("both", "prefill", "decode")


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceSpec:
    """One serving configuration. dp replicas of tp x pp devices each (with ep > 1, the dp ranks
    run attention data-parallel and share the experts, DeepSeek/SGLang style). batch_size: concurrent
    sequences per replica, or None for the largest that memory and the iteration budget allow.
    max_tokens_per_iteration: the engine's token budget per forward (vLLM max_num_batched_tokens,
    TensorRT-LLM max_num_tokens; 8192 by default in both throughput setups; the engine's own default
    otherwise: DeepSpeed-FastGen 768, TGI max_batch_prefill_tokens 4096). kv_memory_fraction: the
    engine's KV-cache memory fraction (vLLM gpu_memory_utilization, SGLang mem_fraction_static,
    TensorRT-LLM free_gpu_memory_fraction, LMDeploy cache_max_entry_count, ...), None for its default.
    weight_group_size: int4/int8 weights with one fp16 scale per group of this many weights (llama.cpp
    Q4_0/Q8_0 and MLC q4f16_1: 32), None for the format's default block scales."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    weights_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    batch_size: int | None = None
    input_tokens: int = 1024
    output_tokens: int = 256
    max_tokens_per_iteration: int = 8192
    block_size: int = 16
    engine: str = "vllm"
    max_batch_size: int | None = None
    eplb: bool = False
    prefix_cache_hit_frac: float = 0.0
    pool: str = "both"
    two_batch_overlap: bool = False
    speculative: SpeculativeSpec | None = None
    kv_memory_fraction: float | None = None
    weight_group_size: int | None = None
    profile: Profile = Profile("inference")

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp * self.dp

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON data, echoed in reports (the profile and speculative section as mappings)."""
        out: dict[str, Any] = {}
        for key in self.__slots__:
            value = getattr(self, key)
            if key in ("kv_memory_fraction", "weight_group_size") and value is None:
                continue        # echoed only when given (the default is an assumption)
            if key == "profile":
                value = value.as_dict()
            elif isinstance(value, SpeculativeSpec):
                value = value.to_dict()
            out[key] = value
        return out


def _pos(data: Mapping[str, Any], key: str, default: int) -> int:
    v = data.get(key, default)
    try:
        n = units.parse_count(v, field=f"inference.{key}")
    except InvalidScenario:
        raise InvalidScenario(f"inference.{key}: expected a positive integer, got {v!r}") from None
    if n < 1:
        raise InvalidScenario(f"inference.{key}: expected a positive integer, got {v!r}")
    limits.check_count(n, limits.MAX_TOKENS_PER_REQUEST if key.endswith("_tokens") else limits.MAX_DEVICES,
                       field=f"inference.{key}")
    return n


def _fraction(value: Any, field: str) -> float | None:
    """An optional fraction in (0, 1] (None when not given)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise InvalidScenario(f"{field}: expected a fraction in (0, 1] (e.g. 0.9, the share of memory the engine's "
                              f"rule applies it to), got {value!r}")
    return float(value)


def _group_size(data: Mapping[str, Any], weights_dtype: str) -> int | None:
    """inference.weight_group_size: weights per fp16 scale of an int4/int8 weight-only format (None
    when not given); another weights_dtype is refused."""
    if data.get("weight_group_size") is None:
        return None
    if weights_dtype not in GROUPED_WEIGHT_DTYPES:
        raise InvalidScenario(f"inference.weight_group_size: applies to weights_dtype {' or '.join(GROUPED_WEIGHT_DTYPES)}"
                              f" (group-scaled integer weights), not {weights_dtype}")
    n = bounded_int(data["weight_group_size"], "inference.weight_group_size", 8, MAX_WEIGHT_GROUP_SIZE)
    if n & (n - 1):
        raise InvalidScenario(f"inference.weight_group_size: expected a power of two (32, 64, 128, ...), got {n}")
    return n


def inference_from_mapping(data: Mapping[str, Any], profile: Profile | None = None) -> InferenceSpec:
    """Parse the `inference` section; `profile` is the calibration profile (None: the shipped one).
    max_num_tokens is the engines' name for max_tokens_per_iteration (give one of them)."""
    from flopcast.estimate import calibration
    from flopcast.estimate.efficiency import inference_engines, serving_engine

    if not isinstance(data, Mapping):
        raise InvalidScenario("inference: expected a mapping (tp, weights_dtype, batch_size, input_tokens, ...)")
    check_keys(data, "inference", INFERENCE_KEYS)
    wd = choice(data, "inference", "weights_dtype", "bf16", WEIGHT_DTYPES)
    kd = choice(data, "inference", "kv_dtype", "bf16", KV_DTYPES)
    bs = data.get("batch_size", "max")
    batch = None if bs == "max" else _pos(data, "batch_size", 1)
    if "max_num_tokens" in data and "max_tokens_per_iteration" in data:
        raise InvalidScenario("inference.max_num_tokens: give it or max_tokens_per_iteration, not both (same key)")
    budget_key = "max_num_tokens" if "max_num_tokens" in data else "max_tokens_per_iteration"
    cap = data.get("max_batch_size")
    hit = data.get("prefix_cache_hit_frac", 0.0)
    if isinstance(hit, bool) or not isinstance(hit, (int, float)) or not 0.0 <= float(hit) < 1.0:
        raise InvalidScenario(f"inference.prefix_cache_hit_frac: expected a fraction in [0, 1), got {hit!r}")
    if any(role in data for role in POOL_ROLES):
        pool_layouts(data, profile)          # bad pool keys are refused with the section's other errors
    engine = choice(data, "inference", "engine", "vllm", inference_engines())
    defaults = serving_engine(engine)
    return InferenceSpec(
        tp=_pos(data, "tp", 1), pp=_pos(data, "pp", 1), dp=_pos(data, "dp", 1), ep=_pos(data, "ep", 1),
        weights_dtype=wd, kv_dtype=kd, batch_size=batch, input_tokens=_pos(data, "input_tokens", 1024),
        output_tokens=_pos(data, "output_tokens", 256),
        max_tokens_per_iteration=_pos(data, budget_key, defaults.max_num_tokens),
        block_size=_pos(data, "block_size", 16),
        engine=engine,
        max_batch_size=(defaults.max_batch_size if cap is None else _pos(data, "max_batch_size", 1)),
        eplb=flag(data, "inference", "eplb", False), prefix_cache_hit_frac=float(hit),
        pool=choice(data, "inference", "pool", "both", POOLS),
        two_batch_overlap=flag(data, "inference", "two_batch_overlap", False),
        speculative=_speculative(data.get("speculative")),
        kv_memory_fraction=_fraction(data.get("kv_memory_fraction"), "inference.kv_memory_fraction"),
        weight_group_size=_group_size(data, wd),
        profile=profile if profile is not None else calibration.shipped("inference"),
    )


def validate_inference(spec: InferenceSpec, model, *, num_devices: int) -> None:
    """Raise InvalidScenario naming the rule and the numbers."""
    from flopcast.specs.model import LatentAttention, MoEFFN

    if spec.num_devices != num_devices:
        raise InvalidScenario(
            f"inference: tp*pp*dp = {spec.tp}*{spec.pp}*{spec.dp} = {spec.num_devices} must equal "
            f"cluster.num_devices = {num_devices}")
    attn = model.first_attention
    if attn.num_heads % spec.tp:
        raise InvalidScenario(f"inference.tp: {spec.tp} must divide the {attn.num_heads} attention heads")
    if not isinstance(attn, LatentAttention) and attn.num_kv_heads % spec.tp and spec.tp % attn.num_kv_heads:
        raise InvalidScenario(
            f"inference.tp: {spec.tp} must divide the {attn.num_kv_heads} key/value heads (or be a multiple of them)")
    if spec.pp > model.num_layers:
        raise InvalidScenario(f"inference.pp: {spec.pp} stages exceed the {model.num_layers} layers")
    if spec.ep > 1:
        experts = next((lay.ffn.num_experts for lay in model.layers if isinstance(lay.ffn, MoEFFN)), None)
        if experts is None:
            raise InvalidScenario(f"inference.ep: {spec.ep} > 1 but the model has no MoE layers")
        if experts % spec.ep and not spec.eplb:
            raise InvalidScenario(f"inference.ep: {spec.ep} must divide the {experts} experts (or set "
                                  "inference.eplb: true, whose redundant experts fill ceil(E/ep) slots per rank)")
        if spec.dp % spec.ep:
            raise InvalidScenario(f"inference.ep: {spec.ep} must divide the attention data-parallel ranks dp = {spec.dp}")


def _in_pool(err: Exception, role: str) -> Exception:
    """The same error with its field named inside the pool (`inference.tp` -> `inference.decode.tp`)."""
    msg = str(err)
    msg = msg.replace("inference.", f"inference.{role}.", 1) if "inference." in msg else f"inference.{role}: {msg}"
    if isinstance(err, UnknownName):
        return UnknownName(err.kind, err.name, err.known, message=msg)
    return type(err)(msg)


def pool_layouts(data: Mapping[str, Any], profile: Profile | None = None) -> dict[str, tuple[Any, InferenceSpec]] | None:
    """`inference.prefill` and `inference.decode` (disaggregated serving with a layout per pool): for each
    role its hardware as given (None: the scenario's) and its InferenceSpec, the section's keys with
    the pool's overrides (dp: the pool's replicas). None when the section has neither; both or none."""
    given = [role for role in POOL_ROLES if role in data]
    if not given:
        return None
    if len(given) == 1:
        other = "decode" if given[0] == "prefill" else "prefill"
        raise InvalidScenario(f"inference.{other}: missing; disaggregated pools need both inference.prefill and "
                              "inference.decode (each may be {} to take the section's layout)")
    base = {k: v for k, v in data.items() if k not in POOL_ROLES + ("workload", "scheduler", "slo", "pool")}
    out = {}
    for role in POOL_ROLES:
        over = data[role]
        if over is None:
            over = {}
        if not isinstance(over, Mapping):
            raise InvalidScenario(f"inference.{role}: expected a mapping of layout keys such as {{tp: 8, dp: 2, "
                                  f"hardware: h200-sxm}}, got {over!r}")
        check_keys(over, f"inference.{role}", POOL_KEYS)
        layout = {k: v for k, v in over.items() if k != "hardware"}
        try:
            inference_from_mapping(layout, profile)          # the pool's own keys, named in the pool
        except (InvalidScenario, UnknownName) as e:
            raise _in_pool(e, role) from None
        merged = dict(base) | layout | {"pool": role}
        if "max_num_tokens" in layout or "max_tokens_per_iteration" in layout:
            for k in ("max_num_tokens", "max_tokens_per_iteration"):
                if k not in layout:
                    merged.pop(k, None)
        out[role] = (over.get("hardware"), inference_from_mapping(merged, profile))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolLayout:
    """One pool of disaggregated serving (`inference.prefill` or `inference.decode`): its role, its
    hardware as written (a catalog id or mapping; None: the scenario's) and its InferenceSpec (the
    section's keys with the pool's over them; dp is the pool's replicas)."""

    role: str
    hardware: Any
    spec: InferenceSpec


def pools_from_mapping(data: Mapping[str, Any], profile: Profile | None = None) -> tuple[PoolLayout, ...]:
    """The `inference` section's prefill and decode pools, in that order; () when it has neither."""
    layouts = pool_layouts(data, profile)
    if layouts is None:
        return ()
    return tuple(PoolLayout(role=role, hardware=layouts[role][0], spec=layouts[role][1]) for role in POOL_ROLES)
