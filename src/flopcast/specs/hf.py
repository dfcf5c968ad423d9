"""Hugging Face `config.json` -> ModelSpec, one small function per `model_type`.

Each function mirrors what `transformers` (5.x) builds for that config class, including the config
class defaults for keys the file omits, so that parameter counts agree to the parameter. The oracle
tests in tests/oracle/ check this against `transformers` on the meta device.

Keys are read through `_Reader`, which records what was used. Keys known not to change any count
(token ids, rope scaling, dropout, epsilons...) are `ignored_fields`; recognised keys whose effect
flopcast does not model (e.g. DeepSeek-V3's multi-token-prediction layer, which `transformers`
does not build either) are `unmodeled_fields` with the reason; anything else is reported as
unrecognised so that a typo ("hiden_size") never passes silently.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flopcast.errors import InvalidScenario, UnknownName, did_you_mean
from flopcast.specs import limits
from flopcast.specs.model import (
    DenseFFN,
    LatentAttention,
    LayerSpec,
    LinearAttention,
    Mamba2Mixer,
    ModelSpec,
    MoEFFN,
    NormSpec,
    StandardAttention,
)

_MISSING = object()

# Keys that never change a parameter, FLOP or KV-cache count, with the reason in one word group.
IGNORED_KEYS: dict[str, str] = {
    k: "no effect on counts"
    for k in (
        "architectures _name_or_path transformers_version torch_dtype dtype model_type auto_map "
        "bos_token_id eos_token_id pad_token_id sep_token_id decoder_start_token_id "
        "initializer_range init_std rms_norm_eps layer_norm_eps layer_norm_epsilon norm_eps "
        "rope_theta rope_scaling rope_parameters rope_interleave rotary_pct rotary_emb_base "
        "partial_rotary_factor rope_type original_max_position_embeddings "
        "attention_dropout hidden_dropout dropout resid_pdrop embd_pdrop attn_pdrop "
        "activation_dropout layerdrop classifier_dropout summary_type summary_use_proj "
        "summary_activation summary_proj_to_labels summary_first_dropout use_cache "
        "output_router_logits router_aux_loss_coef aux_loss_alpha router_jitter_noise "
        "pretraining_tp tie_word_embeddings is_decoder use_parallel_residual scale_attn_weights "
        "scale_attn_by_inverse_layer_idx reorder_and_upcast_attn attn_logit_softcapping "
        "final_logit_softcapping query_pre_attn_scalar swiglu_alpha swiglu_limit "
        "routed_scaling_factor norm_topk_prob topk_method scoring_func seq_aux n_group topk_group "
        "ep_size attn_implementation use_bidirectional_attention prefix _attn_implementation "
        "return_dict output_attentions output_hidden_states torchscript use_return_dict "
        "tokenizer_class task_specific_params n_ctx bos_token eos_token use_flash_attn "
        "hidden_dropout_prob attention_probs_dropout_prob max_window_layers use_sliding_window "
        "layer_types sliding_window experts_per_token router_dtype embedding_multiplier "
        "logits_scaling residual_multiplier attention_multiplier qk_layernorm qk_head_dim "
        "id2label label2id problem_type chunk_size_feed_forward pruned_heads "
        "is_encoder_decoder finetuning_task rope_local_base_freq cache_implementation use_mrope "
        "initial_context_length sliding_window_size mlp_only_layers decoder_sparse_step "
        "norm_epsilon residual_dropout embedding_dropout emb_pdrop embedding_fraction logit_scale "
        "init_device init_config norm_type verbose tokenizer_name activation_function "
        "apply_residual_connection_post_layernorm"
    ).split()
}
# Counted but described as "used" once read; listed here only when transformers ignores them.
_TRANSFORMERS_IGNORES: dict[str, str] = {
    "num_nextn_predict_layers": "multi-token-prediction layers are not built by transformers and "
    "not in params_total; they are in params_mtp and in training (training.mtp_layers; DeepSeek-V3: "
    "about 11.5B parameters besides the shared embedding and head for one MTP layer)",
    "moe_layer_freq": "transformers makes every layer from first_k_dense_replace on an MoE layer",
    "quantization_config": "the stored weight format; precision is chosen in the scenario",
}


def _matters(key: str, value: Any) -> bool:
    if key == "num_nextn_predict_layers":
        return bool(value)
    if key == "moe_layer_freq":
        return value not in (None, 1)
    return bool(value)


class _Reader:
    """Typed access to a config mapping, with the family's defaults and a record of used keys."""

    def __init__(self, cfg: Mapping[str, Any], family: str, defaults: Mapping[str, Any],
                 aliases: Mapping[str, str] | None = None):
        self.family = family
        self.cfg = dict(cfg)
        # transformers' attribute_map: an alias key sets its target (the alias wins, as in
        # PretrainedConfig.__setattr__ applied in key order; both present is rare).
        for alias, target in (aliases or {}).items():
            if alias in self.cfg:
                self.cfg[target] = self.cfg[alias]
        self.defaults = defaults
        self.used: set[str] = set(aliases or {})
        self.notes: list[tuple[str, str]] = []

    def unmodeled(self, key: str, why: str) -> None:
        """Report a key (or `parent.sub` key) whose value transformers does not build: counted as built."""
        self.notes.append((key, why))

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.used.add(key)
        if key in self.cfg:
            return self.cfg[key]
        if default is not _MISSING:
            return default
        if key in self.defaults:
            return self.defaults[key]
        raise InvalidScenario(f"model.{key}: missing (required for model_type {self.family!r})")

    def int(self, key: str, default: Any = _MISSING, *, minimum: int = 1) -> int:
        return self._check_int(key, self.raw(key, default), minimum)

    def _check_int(self, key: builtins.str, value: Any, minimum: builtins.int) -> builtins.int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise InvalidScenario(f"model.{key}: expected an integer >= {minimum}, got {value!r}")
        if value < minimum:
            raise InvalidScenario(f"model.{key}: expected an integer >= {minimum}, got {value!r}")
        return value

    def opt_int(self, key: builtins.str, default: Any = _MISSING, *, minimum: builtins.int = 1) -> builtins.int | None:
        value = self.raw(key, default)
        if value is None:
            return None
        return self._check_int(key, value, minimum)

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise InvalidScenario(f"model.{key}: expected true or false, got {value!r}")
        return value

    def str(self, key: str, default: Any = _MISSING) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise InvalidScenario(f"model.{key}: expected a string, got {value!r}")
        return value

    def int_list(self, key: builtins.str, default: Any = _MISSING) -> list[builtins.int]:
        value = self.raw(key, default)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise InvalidScenario(f"model.{key}: expected a list of integers, got {value!r}")
        return list(value)

    def layer_types(self, num_layers: builtins.int, default: list[builtins.str]) -> list[builtins.str]:
        value = self.raw("layer_types", None)
        if value is None:
            return default
        if not isinstance(value, (list, tuple)) or len(value) != num_layers:
            raise InvalidScenario(
                f"model.layer_types: expected a list of {num_layers} entries "
                f"('full_attention' or 'sliding_attention'), got {value!r}"
            )
        for v in value:
            if v not in ("full_attention", "sliding_attention"):
                raise InvalidScenario(
                    f"model.layer_types: unknown entry {v!r}; accepted: 'full_attention', "
                    "'sliding_attention'"
                )
        return list(value)

    def fields_report(self) -> tuple[tuple[builtins.str, ...], tuple[tuple[builtins.str, builtins.str], ...]]:
        ignored: list[str] = []
        unmodeled: list[tuple[str, str]] = []
        known = set(self.defaults) | set(IGNORED_KEYS) | set(_TRANSFORMERS_IGNORES) | self.used
        for key, value in self.cfg.items():
            if key in _TRANSFORMERS_IGNORES:
                if _matters(key, value):
                    unmodeled.append((key, _TRANSFORMERS_IGNORES[key]))
            elif key in self.used:
                continue
            elif key in IGNORED_KEYS or key in self.defaults:
                ignored.append(key)
            else:
                hint = did_you_mean(key, known, n=1)
                why = f"not recognised for model_type {self.family!r}"
                if hint:
                    why += f" (did you mean {hint[0]!r}?)"
                unmodeled.append((key, why))
        return tuple(sorted(ignored)), tuple(unmodeled + self.notes)


def _heads(r: _Reader, hidden: int) -> tuple[int, int]:
    heads = r.int("num_attention_heads")
    kv = r.raw("num_key_value_heads")
    kv = heads if kv is None else r.int("num_key_value_heads")
    if heads % kv:
        raise InvalidScenario(
            f"model.num_key_value_heads: {kv} does not divide num_attention_heads {heads}"
        )
    return heads, kv


def _head_dim_or_split(r: _Reader, hidden: int, heads: int) -> int:
    """head_dim if given, else hidden // heads (llama, mistral, mixtral, nemotron, gpt_oss rule)."""
    hd = r.raw("head_dim", r.defaults.get("head_dim"))
    if hd is not None:
        return r.int("head_dim")
    if hidden % heads:
        raise InvalidScenario(
            f"model.hidden_size: {hidden} is not divisible by num_attention_heads {heads}; "
            "give head_dim explicitly"
        )
    return hidden // heads


def _window_list(types: list[str], window: int | None) -> list[int | None]:
    return [window if (t == "sliding_attention" and window) else None for t in types]


def _finish(r: _Reader, name: str, source: str, layers: list[LayerSpec], norm: NormSpec, *,
            hidden: int, vocab: int, tie: bool, max_seq: int | None, **extra: Any) -> ModelSpec:
    ignored, unmodeled = r.fields_report()
    return ModelSpec(
        name=name, family=r.family, vocab_size=vocab, hidden_size=hidden, layers=tuple(layers),
        norm=norm, tie_embeddings=tie, max_seq_len=max_seq, source=source,
        ignored_fields=ignored, unmodeled_fields=unmodeled, **extra,
    )


# ---------------------------------------------------------------------------------------------
# Families. Defaults are those of the transformers config classes (5.x) for count-relevant keys.

_LLAMA = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
              num_attention_heads=32, num_key_value_heads=None, head_dim=None, hidden_act="silu",
              max_position_embeddings=2048, tie_word_embeddings=False, attention_bias=False,
              mlp_bias=False)
_MISTRAL = dict(_LLAMA, intermediate_size=14336, num_key_value_heads=8, max_position_embeddings=131072,
                sliding_window=4096)
_MIXTRAL = dict(_MISTRAL, sliding_window=None, num_experts_per_tok=2, num_local_experts=8)
_QWEN2 = dict(_LLAMA, vocab_size=151936, intermediate_size=22016, max_position_embeddings=32768,
              use_sliding_window=False, sliding_window=None, max_window_layers=28)
_QWEN2_MOE: dict[str, Any] = dict(_QWEN2, hidden_size=2048, intermediate_size=5632, num_hidden_layers=24,
                  num_attention_heads=16, sliding_window=0, decoder_sparse_step=1,
                  moe_intermediate_size=1408, shared_expert_intermediate_size=5632,
                  num_experts_per_tok=4, num_experts=60, mlp_only_layers=[], qkv_bias=True)
_QWEN3 = dict(_QWEN2, head_dim=128, attention_bias=False)
_QWEN3_MOE: dict[str, Any] = dict(_QWEN3, hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
                  num_attention_heads=32, num_key_value_heads=4, head_dim=None, decoder_sparse_step=1,
                  moe_intermediate_size=768, num_experts_per_tok=8, num_local_experts=128,
                  mlp_only_layers=[])
_DEEPSEEK_V2 = dict(vocab_size=102400, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=None, hidden_act="silu",
                    max_position_embeddings=2048, tie_word_embeddings=False, attention_bias=False,
                    mlp_bias=False, first_k_dense_replace=0, kv_lora_rank=512, q_lora_rank=1536,
                    n_routed_experts=64, n_shared_experts=2, qk_nope_head_dim=128,
                    qk_rope_head_dim=64, v_head_dim=128, num_experts_per_tok=None,
                    moe_intermediate_size=1407)
_DEEPSEEK_V3 = dict(_DEEPSEEK_V2, vocab_size=129280, hidden_size=7168, intermediate_size=18432,
                    moe_intermediate_size=2048, num_hidden_layers=61, num_attention_heads=128,
                    n_shared_experts=1, n_routed_experts=256, num_experts_per_tok=8,
                    first_k_dense_replace=3, max_position_embeddings=4096)
_NEMOTRON = dict(vocab_size=256000, hidden_size=6144, intermediate_size=24576, num_hidden_layers=32,
                 num_attention_heads=48, head_dim=None, num_key_value_heads=None, hidden_act="relu2",
                 max_position_embeddings=4096, tie_word_embeddings=False, attention_bias=False,
                 mlp_bias=False)
_GPT_OSS = dict(num_hidden_layers=36, num_local_experts=128, vocab_size=201088, hidden_size=2880,
                intermediate_size=2880, head_dim=64, num_attention_heads=64, num_key_value_heads=8,
                sliding_window=128, tie_word_embeddings=False, hidden_act="silu",
                max_position_embeddings=131072, num_experts_per_tok=4, attention_bias=True)
_GEMMA2 = dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
               num_attention_heads=8, num_key_value_heads=4, head_dim=256,
               hidden_activation="gelu_pytorch_tanh", max_position_embeddings=8192,
               tie_word_embeddings=True, attention_bias=False, sliding_window=4096,
               hidden_act="gelu_pytorch_tanh")  # hidden_act: legacy key, transformers reads hidden_activation
_PHI3 = dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
             num_attention_heads=32, num_key_value_heads=None, hidden_act="silu",
             max_position_embeddings=4096, tie_word_embeddings=False, sliding_window=None,
             attention_bias=False)  # attention_bias: present in Phi-3 files, unused by transformers
_GPT2 = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
             activation_function="gelu_new", tie_word_embeddings=True, add_cross_attention=False)
_GPT_NEOX = dict(vocab_size=50432, hidden_size=6144, num_hidden_layers=44, num_attention_heads=64,
                 intermediate_size=24576, hidden_act="gelu", max_position_embeddings=2048,
                 tie_word_embeddings=False, attention_bias=True)
_OPT = dict(vocab_size=50272, hidden_size=768, num_hidden_layers=12, ffn_dim=3072,
            max_position_embeddings=2048, do_layer_norm_before=True, _remove_final_layer_norm=False,
            word_embed_proj_dim=None, num_attention_heads=12, activation_function="relu",
            enable_bias=True, layer_norm_elementwise_affine=True, tie_word_embeddings=True)
_GEMMA = dict(vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
              num_attention_heads=16, num_key_value_heads=16, head_dim=256, hidden_act="gelu_pytorch_tanh",
              max_position_embeddings=8192, tie_word_embeddings=True, attention_bias=False,
              hidden_activation=None)  # hidden_activation: key of later Gemma files, transformers reads hidden_act
# sliding_window_pattern is not a field of the config class, but its __post_init__ reads it (default 6);
# hidden_act: legacy key, transformers reads hidden_activation.
_GEMMA3_TEXT = dict(_GEMMA2, vocab_size=262208, max_position_embeddings=131072, sliding_window_pattern=6)
# head_dim is not an OLMo-2 / Starcoder2 config field, but their attention reads it when a file sets it.
_OLMO2 = dict(vocab_size=50304, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
              num_attention_heads=32, num_key_value_heads=None, head_dim=None, hidden_act="silu",
              max_position_embeddings=2048, tie_word_embeddings=False, attention_bias=False)
_STARCODER2 = dict(vocab_size=49152, hidden_size=3072, intermediate_size=12288, num_hidden_layers=30,
                   num_attention_heads=24, num_key_value_heads=2, head_dim=None, hidden_act="gelu_pytorch_tanh",
                   max_position_embeddings=4096, sliding_window=None, use_bias=True, tie_word_embeddings=True,
                   mlp_type="default")  # mlp_type: key of the original BigCode files, unused by transformers
_FALCON = dict(vocab_size=65024, hidden_size=4544, num_hidden_layers=32, num_attention_heads=71,
               num_ln_in_parallel_attn=None, num_kv_heads=None, alibi=False, new_decoder_architecture=False,
               multi_query=True, parallel_attn=True, bias=False, max_position_embeddings=2048,
               ffn_hidden_size=None, activation="gelu", tie_word_embeddings=True)
_MPT = dict(vocab_size=50368, d_model=2048, n_heads=16, n_layers=24, expansion_ratio=4, max_seq_len=2048,
            learned_pos_emb=True, no_bias=True, attn_config=None, tie_word_embeddings=True)
_MPT_ATTN = dict(attn_type="multihead_attention", attn_pdrop=0, attn_impl="torch", clip_qkv=None,
                 softmax_scale=None, prefix_lm=False, qk_ln=False, attn_uses_sequence_id=False, alibi=True,
                 alibi_bias_max=8)

RMS = NormSpec(kind="rmsnorm")
LN = NormSpec(kind="layernorm", bias=True)


def _llama_like(r: _Reader, name: str, source: str, *, qkv_bias_key: str | None = "attention_bias",
                o_bias_key: str | None = "attention_bias", qk_norm: bool = False, qk_norm_scope: str = "head",
                windows: list[int | None] | None = None, ffn_for: Callable[[int], Any] | None = None,
                num_norms: int = 2, head_dim_rule: str = "split", qkv_bias: bool | None = None,
                act_key: str = "hidden_act", mlp_bias_key: str | None = None,
                gated: bool = True, norm: NormSpec = RMS, sinks: bool = False,
                ropes: list[bool] | None = None, chunked: list[bool] | None = None,
                output_gate: bool = False) -> ModelSpec:
    """Shared builder for the llama-shaped families (pre-norm, q/k/v/o, gated or plain MLP)."""
    vocab = r.int("vocab_size")
    hidden = r.int("hidden_size")
    num_layers = r.int("num_hidden_layers")
    heads, kv = _heads(r, hidden)
    head_dim = _head_dim_or_split(r, hidden, heads) if head_dim_rule == "split" else r.int("head_dim")
    if qkv_bias is None:
        qkv_bias = r.bool(qkv_bias_key) if qkv_bias_key else False
    o_bias = r.bool(o_bias_key) if o_bias_key else False
    tie = r.bool("tie_word_embeddings")
    max_seq = r.opt_int("max_position_embeddings")
    act = r.str(act_key)
    mlp_bias = r.bool(mlp_bias_key) if mlp_bias_key else False
    windows = windows or [None] * num_layers
    if ffn_for is None:
        d_ff = r.int("intermediate_size")
        dense = DenseFFN(d_ff=d_ff, gated=gated, bias=mlp_bias, activation=act)
        ffn_for = lambda i: dense  # noqa: E731
    layers = [
        LayerSpec(
            attention=StandardAttention(
                num_heads=heads, num_kv_heads=kv, head_dim=head_dim, qkv_bias=qkv_bias,
                out_bias=o_bias, qk_norm=qk_norm, qk_norm_scope=qk_norm_scope, sinks=sinks,
                window=windows[i], rope=ropes[i] if ropes else True,
                chunked=chunked[i] if chunked else False, output_gate=output_gate,
            ),
            ffn=ffn_for(i),
            num_norms=num_norms,
        )
        for i in range(num_layers)
    ]
    return _finish(r, name, source, layers, norm, hidden=hidden, vocab=vocab, tie=tie, max_seq=max_seq)


def _llama(cfg, name, source):
    r = _Reader(cfg, "llama", _LLAMA)
    return _llama_like(r, name, source, mlp_bias_key="mlp_bias")


def _mistral(cfg, name, source):
    r = _Reader(cfg, "mistral", _MISTRAL)
    n = r.int("num_hidden_layers")
    w = r.opt_int("sliding_window")
    return _llama_like(r, name, source, qkv_bias_key=None, o_bias_key=None, windows=[w] * n)


def _moe_from(r: _Reader, *, experts_key: str, d_ff_key: str = "intermediate_size",
              gated: bool = True, expert_bias: bool = False, router_bias: bool = False,
              shared_d_ff: int = 0, shared_gate: bool = False, act_key: str = "hidden_act") -> MoEFFN:
    return MoEFFN(
        num_experts=r.int(experts_key), top_k=r.int("num_experts_per_tok"),
        expert_d_ff=r.int(d_ff_key), gated=gated, expert_bias=expert_bias, router_bias=router_bias,
        shared_d_ff=shared_d_ff, shared_gate=shared_gate, activation=r.str(act_key),
    )


def _mixtral(cfg, name, source):
    r = _Reader(cfg, "mixtral", _MIXTRAL, aliases={"num_experts": "num_local_experts"})
    n = r.int("num_hidden_layers")
    w = r.opt_int("sliding_window")
    moe = _moe_from(r, experts_key="num_local_experts")
    return _llama_like(r, name, source, qkv_bias_key=None, o_bias_key=None, windows=[w] * n,
                       ffn_for=lambda i: moe)


def _qwen_windows(r: _Reader, n: int, rule: str) -> list[int | None]:
    use = r.bool("use_sliding_window")
    w = r.opt_int("sliding_window", minimum=0) if use else None
    mwl = r.int("max_window_layers", minimum=0)
    if rule == "qwen2":
        default = ["sliding_attention" if (w is not None and i >= mwl) else "full_attention" for i in range(n)]
    else:  # qwen2_moe
        default = ["sliding_attention" if ((i + 1) % 2 and i < mwl and use) else "full_attention"
                   for i in range(n)]
    return _window_list(r.layer_types(n, default), w)


def _qwen2(cfg, name, source):
    r = _Reader(cfg, "qwen2", _QWEN2)
    n = r.int("num_hidden_layers")
    return _llama_like(r, name, source, qkv_bias=True, o_bias_key=None,
                       windows=_qwen_windows(r, n, "qwen2"))


def _qwen3(cfg, name, source):
    r = _Reader(cfg, "qwen3", _QWEN3)
    n = r.int("num_hidden_layers")
    return _llama_like(r, name, source, qk_norm=True, windows=_qwen_windows(r, n, "qwen2"))


def _sparse_layers(r: _Reader, n: int, experts_key: str) -> list[bool]:
    """Qwen MoE rule: layer i is sparse unless listed in mlp_only_layers, when E > 0 and
    (i + 1) % decoder_sparse_step == 0."""
    only = set(r.int_list("mlp_only_layers"))
    step = r.int("decoder_sparse_step")
    num_experts = r.int(experts_key, minimum=0)
    return [(i not in only) and num_experts > 0 and (i + 1) % step == 0 for i in range(n)]


def _qwen_moe_ffns(r: _Reader, n: int) -> tuple[list[bool], DenseFFN, Any]:
    """Qwen2-MoE and Qwen3-Next: which layers are sparse, the dense FFN of the others and the MoE
    (routed experts plus one gated shared expert), None when no layer is sparse."""
    sparse = _sparse_layers(r, n, "num_experts")
    dense = DenseFFN(d_ff=r.int("intermediate_size"), activation=r.str("hidden_act"))
    moe = None
    if any(sparse):
        moe = _moe_from(r, experts_key="num_experts", d_ff_key="moe_intermediate_size",
                        shared_d_ff=r.int("shared_expert_intermediate_size"), shared_gate=True)
    return sparse, dense, moe


def _qwen2_moe(cfg, name, source):
    r = _Reader(cfg, "qwen2_moe", _QWEN2_MOE)
    n = r.int("num_hidden_layers")
    sparse, dense, moe = _qwen_moe_ffns(r, n)
    # sliding_window defaults to 0 here: 0 means no window.
    windows = _qwen_windows(r, n, "qwen2_moe")
    return _llama_like(r, name, source, qkv_bias_key="qkv_bias", o_bias_key=None, windows=windows,
                       ffn_for=lambda i: moe if sparse[i] else dense)


def _qwen3_moe(cfg, name, source):
    r = _Reader(cfg, "qwen3_moe", _QWEN3_MOE, aliases={"num_experts": "num_local_experts"})
    n = r.int("num_hidden_layers")
    sparse = _sparse_layers(r, n, "num_local_experts")
    dense = DenseFFN(d_ff=r.int("intermediate_size"), activation=r.str("hidden_act"))
    moe = None
    if any(sparse):
        moe = _moe_from(r, experts_key="num_local_experts", d_ff_key="moe_intermediate_size")
    w = r.opt_int("sliding_window") if r.bool("use_sliding_window") else None
    return _llama_like(r, name, source, qk_norm=True, windows=[w] * n,
                       ffn_for=lambda i: moe if sparse[i] else dense)


def _deepseek(cfg, name, source, family, defaults, aliases, reader: _Reader | None = None):
    r = reader or _Reader(cfg, family, defaults, aliases=aliases)
    vocab = r.int("vocab_size")
    hidden = r.int("hidden_size")
    n = r.int("num_hidden_layers")
    heads = r.int("num_attention_heads")
    r.raw("num_key_value_heads")  # MLA has no separate kv heads; transformers ignores it too
    attn = LatentAttention(
        num_heads=heads, q_lora_rank=r.opt_int("q_lora_rank"), kv_lora_rank=r.int("kv_lora_rank"),
        qk_nope_head_dim=r.int("qk_nope_head_dim", minimum=0), qk_rope_head_dim=r.int("qk_rope_head_dim"),
        v_head_dim=r.int("v_head_dim"), bias=r.bool("attention_bias"),
    )
    act = r.str("hidden_act")
    mlp_bias = r.bool("mlp_bias") if family == "deepseek_v2" else False
    dense = DenseFFN(d_ff=r.int("intermediate_size"), bias=mlp_bias, activation=act)
    first_dense = r.int("first_k_dense_replace", minimum=0)
    moe = None
    if first_dense < n:
        moe_d_ff = r.int("moe_intermediate_size")
        moe = MoEFFN(
            num_experts=r.int("n_routed_experts"), top_k=r.int("num_experts_per_tok"),
            expert_d_ff=moe_d_ff, shared_d_ff=moe_d_ff * r.int("n_shared_experts", minimum=0),
            activation=act, expert_bias=False,
        )
        if mlp_bias and moe.shared_d_ff:
            raise InvalidScenario("model.mlp_bias: true with MoE shared experts is not supported")
    layers = [LayerSpec(attention=attn, ffn=dense if i < first_dense else moe) for i in range(n)]
    mtp = cfg.get("num_nextn_predict_layers") if family in ("deepseek_v3", "deepseek_v32") else None
    mtp = mtp if isinstance(mtp, int) and not isinstance(mtp, bool) and 0 <= mtp <= 16 else 0
    return _finish(r, name, source, layers, RMS, hidden=hidden, vocab=vocab,
                   tie=r.bool("tie_word_embeddings"), max_seq=r.opt_int("max_position_embeddings"), mtp_layers=mtp)


def _deepseek_v2(cfg, name, source):
    return _deepseek(cfg, name, source, "deepseek_v2", _DEEPSEEK_V2, {"num_experts": "n_routed_experts"})


def _deepseek_v3(cfg, name, source):
    return _deepseek(cfg, name, source, "deepseek_v3", _DEEPSEEK_V3,
                     {"num_local_experts": "n_routed_experts", "num_mtp_layers": "num_nextn_predict_layers"})


def _nemotron(cfg, name, source):
    r = _Reader(cfg, "nemotron", _NEMOTRON)
    return _llama_like(r, name, source, mlp_bias_key="mlp_bias", gated=False,
                       norm=NormSpec(kind="layernorm", bias=True))


def _gpt_oss(cfg, name, source):
    r = _Reader(cfg, "gpt_oss", _GPT_OSS, aliases={"num_experts": "num_local_experts"})
    n = r.int("num_hidden_layers")
    types = r.layer_types(n, ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)])
    windows = _window_list(types, r.opt_int("sliding_window"))
    moe = _moe_from(r, experts_key="num_local_experts", expert_bias=True, router_bias=True)
    return _llama_like(r, name, source, windows=windows, ffn_for=lambda i: moe, sinks=True)


def _gemma2(cfg, name, source):
    r = _Reader(cfg, "gemma2", _GEMMA2)
    n = r.int("num_hidden_layers")
    types = r.layer_types(n, ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)])
    windows = _window_list(types, r.opt_int("sliding_window"))
    return _llama_like(r, name, source, windows=windows, num_norms=4, head_dim_rule="given",
                       act_key="hidden_activation")


def _phi3(cfg, name, source):
    r = _Reader(cfg, "phi3", _PHI3)
    n = r.int("num_hidden_layers")
    w = r.opt_int("sliding_window")
    return _llama_like(r, name, source, qkv_bias_key=None, o_bias_key=None, windows=[w] * n)


def _gemma(cfg, name, source):
    """Gemma: llama-shaped with an explicit head_dim, GeGLU, a tied head by default; the embedding
    output is scaled by sqrt(h), which costs no parameters and no matmul FLOPs."""
    r = _Reader(cfg, "gemma", _GEMMA)
    return _llama_like(r, name, source, head_dim_rule="given")


def _gemma3_text(cfg, name, source):
    """Gemma-3 text: Gemma-2's four norms per layer plus per-head q/k RMSNorms; without layer_types,
    layer i slides unless (i + 1) is a multiple of sliding_window_pattern (5 local : 1 global)."""
    r = _Reader(cfg, "gemma3_text", _GEMMA3_TEXT)
    n = r.int("num_hidden_layers")
    pattern = r.int("sliding_window_pattern")
    types = r.layer_types(n, ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)])
    windows = _window_list(types, r.opt_int("sliding_window"))
    if r.raw("use_bidirectional_attention", None):
        r.unmodeled("use_bidirectional_attention", "bidirectional (embedding-model) attention is counted as a "
                    "causal decoder's, with sliding_window as the window")
    return _llama_like(r, name, source, windows=windows, num_norms=4, head_dim_rule="given", qk_norm=True,
                       act_key="hidden_activation")


def _olmo2(cfg, name, source):
    """OLMo-2: llama-shaped, norms after attention and after the MLP (two per layer, none before),
    and RMSNorms over the whole q and k projections (H d_head and H_kv d_head weights)."""
    r = _Reader(cfg, "olmo2", _OLMO2)
    return _llama_like(r, name, source, qk_norm=True, qk_norm_scope="projection")


def _starcoder2(cfg, name, source):
    """Starcoder2: GQA with a sliding window on every layer, plain c_fc/c_proj MLP, LayerNorms with
    bias, and use_bias on every projection."""
    r = _Reader(cfg, "starcoder2", _STARCODER2)
    n = r.int("num_hidden_layers")
    w = r.opt_int("sliding_window")
    if r.raw("mlp_type") != "default":
        r.unmodeled("mlp_type", "transformers builds the plain c_fc/c_proj MLP whatever mlp_type says; "
                    "counted as built")
    return _llama_like(r, name, source, qkv_bias_key="use_bias", o_bias_key="use_bias", mlp_bias_key="use_bias",
                       gated=False, norm=LN, windows=[w] * n)


def _falcon(cfg, name, source):
    """Falcon: one fused query_key_value projection, plain MLP, LayerNorms with bias, `bias` on every
    projection, rotary positions or ALiBi (`alibi`).

    K/V heads: num_kv_heads with new_decoder_architecture (Falcon-40B/180B), else 1 when multi_query
    (Falcon-7B), else H. Norms per layer: two (input and post-attention) without parallel_attn; with
    it, two (ln_attn, ln_mlp) when num_ln_in_parallel_attn is 2 (the default under
    new_decoder_architecture), else one norm shared by attention and MLP."""
    r = _Reader(cfg, "falcon", _FALCON, aliases={"n_embed": "hidden_size"})
    vocab, hidden, n, heads = (r.int("vocab_size"), r.int("hidden_size"), r.int("num_hidden_layers"),
                               r.int("num_attention_heads"))
    if hidden % heads:
        raise InvalidScenario(f"model.hidden_size: {hidden} is not divisible by num_attention_heads {heads}")
    new_arch = r.bool("new_decoder_architecture")
    multi_query = r.bool("multi_query")
    given_kv = r.opt_int("num_kv_heads")
    if new_arch:
        kv = heads if given_kv is None else given_kv
        if heads % kv:
            raise InvalidScenario(f"model.num_kv_heads: {kv} does not divide num_attention_heads {heads}")
    else:
        kv = 1 if multi_query else heads
        if given_kv is not None and given_kv != kv:
            r.unmodeled("num_kv_heads", f"used only with new_decoder_architecture; transformers builds {kv} "
                        "key/value head(s) here (multi_query decides); counted as built")
    ln_parallel = r.opt_int("num_ln_in_parallel_attn")
    if ln_parallel is None and new_arch:
        ln_parallel = 2
    num_norms = 2 if (not r.bool("parallel_attn") or ln_parallel == 2) else 1
    d_ff = r.opt_int("ffn_hidden_size")
    bias = r.bool("bias")
    layer = LayerSpec(
        attention=StandardAttention(num_heads=heads, num_kv_heads=kv, head_dim=hidden // heads,
                                    qkv_bias=bias, out_bias=bias),
        ffn=DenseFFN(d_ff=4 * hidden if d_ff is None else d_ff, gated=False, bias=bias,
                     activation=r.str("activation")),
        num_norms=num_norms,
    )
    return _finish(r, name, source, [layer] * n, LN, hidden=hidden, vocab=vocab,
                   tie=r.bool("tie_word_embeddings"), max_seq=r.opt_int("max_position_embeddings"),
                   positions="alibi" if r.bool("alibi") else "rope")


def _mpt_attn_config(r: _Reader) -> Mapping[str, Any]:
    """MPT's nested attn_config, checked, with what transformers does not build from it reported."""
    attn = r.raw("attn_config")
    if attn is None:
        return {}
    if not isinstance(attn, Mapping):
        raise InvalidScenario(f"model.attn_config: expected a mapping, got {attn!r}")
    for key in attn:
        if key not in _MPT_ATTN:
            hint = did_you_mean(str(key), _MPT_ATTN, n=1)
            r.unmodeled(f"attn_config.{key}", "not recognised for model_type 'mpt'"
                        + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    rules = (
        ("attn_type", lambda v: v != "multihead_attention",
         "transformers builds multi-head attention (Wqkv: h -> 3 h) whatever attn_type says"),
        ("qk_ln", bool, "transformers builds no q/k LayerNorms"),
        ("alibi", lambda v: v is False, "transformers always applies ALiBi and builds no position table"),
    )
    for key, differs, why in rules:
        if key in attn and differs(attn[key]):
            r.unmodeled(f"attn_config.{key}", f"{why}; counted as built")
    return attn


def _mpt(cfg, name, source):
    """MPT as transformers builds it: ALiBi, multi-head Wqkv (h -> 3 h) and out_proj, a plain GeLU
    MLP of width 4 h, no linear biases, weight-only LayerNorms, head tied by default. transformers
    reads neither expansion_ratio, no_bias, learned_pos_emb nor attn_config's attn_type and qk_ln;
    values it does not honour are reported and the model is counted as built."""
    r = _Reader(cfg, "mpt", _MPT, aliases={
        "hidden_size": "d_model", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"})
    vocab, hidden, n, heads = r.int("vocab_size"), r.int("d_model"), r.int("n_layers"), r.int("n_heads")
    if hidden % heads:
        raise InvalidScenario(f"model.d_model: {hidden} is not divisible by n_heads {heads}")
    attn = _mpt_attn_config(r)
    if r.int("expansion_ratio") != 4:
        r.unmodeled("expansion_ratio", "transformers builds the MLP at 4 x d_model whatever expansion_ratio "
                    "says; counted as built")
    if not r.bool("no_bias"):
        r.unmodeled("no_bias", "transformers builds no linear or norm biases; counted as built")
    if r.bool("learned_pos_emb") and attn.get("alibi", True) is False:
        r.unmodeled("learned_pos_emb", "transformers builds no learned position table (ALiBi always); "
                    "counted as built")
    layer = LayerSpec(
        attention=StandardAttention(num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads),
        ffn=DenseFFN(d_ff=4 * hidden, gated=False, activation="gelu"),
    )
    return _finish(r, name, source, [layer] * n, NormSpec(kind="layernorm", bias=False), hidden=hidden,
                   vocab=vocab, tie=r.bool("tie_word_embeddings"), max_seq=r.int("max_seq_len"),
                   positions="alibi")


def _gpt2(cfg, name, source):
    r = _Reader(cfg, "gpt2", _GPT2, aliases={
        "hidden_size": "n_embd", "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"})
    if r.raw("add_cross_attention") is True:
        raise InvalidScenario("model.add_cross_attention: encoder-decoder GPT-2 is not supported "
                              "(decoder-only causal LMs only)")
    vocab, hidden, n, heads = r.int("vocab_size"), r.int("n_embd"), r.int("n_layer"), r.int("n_head")
    if hidden % heads:
        raise InvalidScenario(f"model.n_embd: {hidden} is not divisible by n_head {heads}")
    inner = r.opt_int("n_inner")
    d_ff = inner if inner is not None else 4 * hidden
    positions = r.int("n_positions")
    ln = NormSpec(kind="layernorm", bias=True)
    layer = LayerSpec(
        attention=StandardAttention(num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
                                    qkv_bias=True, out_bias=True),
        ffn=DenseFFN(d_ff=d_ff, gated=False, bias=True, activation=r.str("activation_function")),
    )
    return _finish(r, name, source, [layer] * n, ln, hidden=hidden, vocab=vocab,
                   tie=r.bool("tie_word_embeddings"), max_seq=positions, positions="learned",
                   position_rows=positions)


def _gpt_neox(cfg, name, source):
    r = _Reader(cfg, "gpt_neox", _GPT_NEOX)
    vocab, hidden, n, heads = (r.int("vocab_size"), r.int("hidden_size"), r.int("num_hidden_layers"),
                               r.int("num_attention_heads"))
    if hidden % heads:
        raise InvalidScenario(f"model.hidden_size: {hidden} is not divisible by num_attention_heads {heads}")
    bias = r.bool("attention_bias")
    layer = LayerSpec(
        attention=StandardAttention(num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
                                    qkv_bias=bias, out_bias=bias),
        ffn=DenseFFN(d_ff=r.int("intermediate_size"), gated=False, bias=True,
                     activation=r.str("hidden_act")),
    )
    return _finish(r, name, source, [layer] * n, NormSpec(kind="layernorm", bias=True), hidden=hidden,
                   vocab=vocab, tie=r.bool("tie_word_embeddings"),
                   max_seq=r.opt_int("max_position_embeddings"))


def _opt(cfg, name, source):
    r = _Reader(cfg, "opt", _OPT)
    vocab, hidden, n, heads = (r.int("vocab_size"), r.int("hidden_size"), r.int("num_hidden_layers"),
                               r.int("num_attention_heads"))
    if hidden % heads:
        raise InvalidScenario(f"model.hidden_size: {hidden} is not divisible by num_attention_heads {heads}")
    proj = r.opt_int("word_embed_proj_dim")
    embed_dim = hidden if proj is None else proj
    bias = r.bool("enable_bias")
    norm = NormSpec(kind="layernorm", bias=True, affine=r.bool("layer_norm_elementwise_affine"))
    final = r.bool("do_layer_norm_before") and not r.bool("_remove_final_layer_norm")
    max_pos = r.int("max_position_embeddings")
    layer = LayerSpec(
        attention=StandardAttention(num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
                                    qkv_bias=bias, out_bias=bias),
        ffn=DenseFFN(d_ff=r.int("ffn_dim"), gated=False, bias=bias,
                     activation=r.str("activation_function")),
    )
    return _finish(r, name, source, [layer] * n, norm, hidden=hidden, vocab=vocab,
                   tie=r.bool("tie_word_embeddings"), max_seq=max_pos, positions="learned",
                   position_rows=max_pos + 2, embedding_dim=embed_dim, final_norm=final)



# ---------------------------------------------------------------------------------------------
# Families of 2025: MoE variants, no-RoPE / chunked layers, hybrid linear-attention and Mamba-2.

_OLMO3 = dict(_OLMO2, sliding_window=4096)
_SMOLLM3 = dict(_LLAMA, vocab_size=128256, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=32768,
                use_sliding_window=False, sliding_window=None, no_rope_layers=None,
                no_rope_layer_interval=4, tie_word_embeddings=True)
_GLM4_MOE = dict(_LLAMA, vocab_size=151552, hidden_size=4096, intermediate_size=10944, num_hidden_layers=46,
                 num_attention_heads=96, num_key_value_heads=8, max_position_embeddings=131072,
                 moe_intermediate_size=1408, num_experts_per_tok=8, n_shared_experts=1, n_routed_experts=128,
                 first_k_dense_replace=1, use_qk_norm=False, num_mtp_layers=1)
_MINIMAX_M2 = dict(vocab_size=200064, hidden_size=3072, intermediate_size=1536, num_hidden_layers=62,
                   num_attention_heads=48, num_key_value_heads=8, head_dim=128, hidden_act="silu",
                   max_position_embeddings=196608, tie_word_embeddings=False, num_experts_per_tok=8,
                   num_local_experts=256)
_HUNYUAN_MOE = dict(_LLAMA, vocab_size=290943, num_experts=1, moe_topk=1, head_dim=None)
_ERNIE45_MOE = dict(vocab_size=103424, hidden_size=2560, intermediate_size=12288, num_hidden_layers=28,
                    num_attention_heads=20, num_key_value_heads=4, head_dim=None, hidden_act="silu",
                    max_position_embeddings=131072, tie_word_embeddings=True, use_bias=False,
                    moe_intermediate_size=1536, moe_k=6, moe_num_experts=64, moe_num_shared_experts=2,
                    moe_layer_start_index=1, moe_layer_end_index=-1, moe_layer_interval=1)
_LLAMA4_TEXT = dict(vocab_size=202048, hidden_size=5120, intermediate_size=8192, intermediate_size_mlp=16384,
                    num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8, head_dim=128,
                    hidden_act="silu", max_position_embeddings=4096 * 32, tie_word_embeddings=False,
                    num_experts_per_tok=1, num_local_experts=16, moe_layers=None, interleave_moe_layer_step=1,
                    use_qk_norm=True, no_rope_layers=None, no_rope_layer_interval=4,
                    attention_chunk_size=8192, attention_bias=False)
_QWEN3_NEXT: dict[str, Any] = dict(
                   _QWEN2, hidden_size=2048, intermediate_size=5632, num_hidden_layers=48, num_attention_heads=16,
                   num_key_value_heads=2, head_dim=256, linear_conv_kernel_dim=4, linear_key_head_dim=128,
                   linear_value_head_dim=128, linear_num_key_heads=16, linear_num_value_heads=32,
                   decoder_sparse_step=1, moe_intermediate_size=512, shared_expert_intermediate_size=512,
                   num_experts_per_tok=10, num_experts=512, mlp_only_layers=[], full_attention_interval=4,
                   attention_bias=False)
_DEEPSEEK_V32 = dict(_DEEPSEEK_V3, max_position_embeddings=163840, num_key_value_heads=128, index_topk=2048,
                     index_head_dim=128, index_n_heads=64, mlp_layer_types=None)
_NEMOTRON_H = dict(vocab_size=131072, hidden_size=4096, tie_word_embeddings=False, num_attention_heads=32,
                   num_key_value_heads=8, head_dim=128, max_position_embeddings=4096, attention_bias=False,
                   sliding_window=None, intermediate_size=21504, mlp_hidden_act="relu2", mlp_bias=False,
                   ssm_state_size=128, mamba_num_heads=128, mamba_head_dim=64, mamba_hidden_act="silu",
                   n_groups=8, conv_kernel=4, use_conv_bias=True, chunk_size=128, n_routed_experts=8,
                   n_shared_experts=1, moe_intermediate_size=7688, moe_shared_expert_intermediate_size=7688,
                   moe_latent_size=None, num_experts_per_tok=2, use_bias=False, layers_block_type=None,
                   num_hidden_layers=None, expand=2)
_FALCON_H1 = dict(vocab_size=128000, tie_word_embeddings=False, hidden_size=4096, intermediate_size=14336,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=None,
                  hidden_act="silu", max_position_embeddings=8192, mamba_d_ssm=1024, mamba_n_heads=128,
                  mamba_d_head="auto", mamba_n_groups=1, mamba_d_state=256, mamba_d_conv=4, mamba_expand=2,
                  mamba_chunk_size=256, mamba_conv_bias=True, mamba_proj_bias=False, mamba_rms_norm=False,
                  projectors_bias=False, attention_bias=False, mlp_bias=False)
# Keys of these families that never change a count (multipliers, time-step limits, cache dtypes...).
for _k in ("no_rope_layer_interval attn_temperature_tuning floor_scale attn_scale time_step_min time_step_max "
           "time_step_limit time_step_floor mamba_dt_min mamba_dt_max mamba_dt_limit mamba_dt_init_floor "
           "mamba_ssm_cache_dtype use_mamba_kernels residual_in_fp32 rescale_prenorm_residual "
           "num_logits_to_keep lm_head_multiplier mlp_multipliers key_multiplier attention_out_multiplier "
           "attention_in_multiplier ssm_multipliers ssm_in_multiplier ssm_out_multiplier "
           "mamba_norm_before_gate moe_norm_min moe_shared_expert_overlap eod_token_id "
           "mamba_hidden_act mtp_layers_block_type mtp_hybrid_override_pattern rotary_dim "
           "use_qk_norm_in_gdn moe_use_aux_free moe_capacity").split():
    IGNORED_KEYS.setdefault(_k, "no effect on counts")


def _olmo3(cfg, name, source):
    """OLMo-3: OLMo-2's blocks with sliding-window layers (default: three sliding, then one full)."""
    r = _Reader(cfg, "olmo3", _OLMO3)
    n = r.int("num_hidden_layers")
    types = r.layer_types(n, ["sliding_attention" if (i + 1) % 4 else "full_attention" for i in range(n)])
    windows = _window_list(types, r.opt_int("sliding_window"))
    return _llama_like(r, name, source, qk_norm=True, qk_norm_scope="projection", windows=windows)


def _rope_flags(r: _Reader, n: int) -> list[bool]:
    """no_rope_layers (1: the layer rotates, 0: NoPE), default every no_rope_layer_interval-th layer NoPE."""
    given = r.int_list("no_rope_layers", None)
    interval = r.int("no_rope_layer_interval", r.defaults.get("no_rope_layer_interval", 4))
    flags = given or [int((i + 1) % interval != 0) for i in range(n)]
    if len(flags) < n:
        raise InvalidScenario(f"model.no_rope_layers: expected {n} entries, got {len(flags)}")
    return [bool(f) for f in flags[:n]]


def _smollm3(cfg, name, source):
    """SmolLM3: llama-shaped, every fourth layer without rotary embeddings (NoPE); sliding windows
    only on NoPE layers when use_sliding_window."""
    r = _Reader(cfg, "smollm3", _SMOLLM3)
    n = r.int("num_hidden_layers")
    ropes = _rope_flags(r, n)
    use, w = r.bool("use_sliding_window"), r.opt_int("sliding_window")
    default = ["sliding_attention" if (use and w is not None and not ropes[i]) else "full_attention" for i in range(n)]
    types = r.layer_types(n, default)
    windows = _window_list(types, w if use else None)
    return _llama_like(r, name, source, o_bias_key="attention_bias", mlp_bias_key="mlp_bias", windows=windows,
                       ropes=ropes)


def _glm4_moe(cfg, name, source):
    """GLM-4.5: llama-shaped GQA (q/k/v bias from attention_bias, none on o; per-head q/k norms when
    use_qk_norm), dense MLP on the first first_k_dense_replace layers, then DeepSeek-style MoE with
    n_shared_experts x moe_intermediate_size shared experts and a sigmoid router without bias."""
    r = _Reader(cfg, "glm4_moe", _GLM4_MOE, aliases={"num_local_experts": "n_routed_experts"})
    n = r.int("num_hidden_layers")
    first_dense = r.int("first_k_dense_replace", minimum=0)
    dense = DenseFFN(d_ff=r.int("intermediate_size"), activation=r.str("hidden_act"))
    moe = None
    if first_dense < n:
        d_e = r.int("moe_intermediate_size")
        moe = _moe_from(r, experts_key="n_routed_experts", d_ff_key="moe_intermediate_size",
                        shared_d_ff=d_e * r.int("n_shared_experts", minimum=0))
    mtp = r.int("num_mtp_layers", minimum=0) if "num_mtp_layers" in r.cfg else 0
    if mtp:
        r.unmodeled("num_mtp_layers", "multi-token-prediction layers are not built by transformers and not "
                    "in params_total")
    if r.cfg.get("head_dim") is None:   # transformers: hidden // heads, rounded down
        r.cfg["head_dim"] = r.int("hidden_size") // r.int("num_attention_heads")
    return _llama_like(r, name, source, o_bias_key=None, qk_norm=r.bool("use_qk_norm"),
                       ffn_for=lambda i: dense if i < first_dense else moe)


def _minimax_m2(cfg, name, source):
    """MiniMax-M2: every layer MoE (experts of width intermediate_size, router without bias: the
    score-correction bias is a buffer), q/k RMSNorms over the whole projections, no biases."""
    r = _Reader(cfg, "minimax_m2", _MINIMAX_M2, aliases={"num_experts": "num_local_experts"})
    for key in ("use_qk_norm", "qk_norm_type", "shared_intermediate_size", "attn_type_list", "scoring_func",
                "use_routing_bias", "use_mtp", "num_mtp_modules", "mtp_transformer_layers"):
        if key in r.cfg:
            r.raw(key)
            if key in ("shared_intermediate_size", "use_mtp") and r.cfg[key]:
                r.unmodeled(key, "transformers builds no shared experts / MTP modules for minimax_m2; "
                            "counted as built")
    moe = _moe_from(r, experts_key="num_local_experts")
    return _llama_like(r, name, source, qkv_bias_key=None, o_bias_key=None, qk_norm=True,
                       qk_norm_scope="projection", ffn_for=lambda i: moe)


def _per_layer(r: _Reader, key: str, n: int) -> list[int]:
    value = r.raw(key)
    if isinstance(value, list):
        vals = r.int_list(key)
        if len(vals) < n:
            raise InvalidScenario(f"model.{key}: expected {n} entries, got {len(vals)}")
        return vals[:n]
    return [r.int(key)] * n


def _hunyuan_v1_moe(cfg, name, source):
    """Hunyuan-MoE (transformers' hunyuan_v1_moe): per-head q/k RMSNorms, attention_bias on q/k/v/o,
    every layer MoE of num_experts experts of width intermediate_size plus one shared MLP of the
    same width; moe_topk may be per layer. transformers sizes the experts from intermediate_size
    (a file's moe_intermediate_size and num_shared_expert are not read)."""
    r = _Reader(cfg, "hunyuan_v1_moe", _HUNYUAN_MOE, aliases={
        "num_experts_per_tok": "moe_topk", "num_local_experts": "num_experts"})
    n = r.int("num_hidden_layers")
    if isinstance(r.raw("num_experts"), list):
        raise InvalidScenario("model.num_experts: a per-layer list is not supported (transformers builds "
                              "one expert count)")
    experts, d_ff, act = r.int("num_experts"), r.int("intermediate_size"), r.str("hidden_act")
    top_k = _per_layer(r, "moe_topk", n)
    for key in ("moe_intermediate_size", "num_shared_expert", "use_mixed_mlp_moe", "use_qk_norm",
                "use_cla", "cla_share_factor", "moe_drop_tokens", "moe_random_routing_dropped_token",
                "attention_head_dim"):
        if key in r.cfg:
            r.raw(key)
    moes = [MoEFFN(num_experts=experts, top_k=min(k, experts), expert_d_ff=d_ff, shared_d_ff=d_ff, activation=act)
            for k in top_k]
    return _llama_like(r, name, source, qk_norm=True, ffn_for=lambda i: moes[i])


def _ernie4_5_moe(cfg, name, source):
    """ERNIE-4.5 MoE: use_bias on q/k/v/o, every MLP and the LM head (untied bias); MoE on layers
    moe_layer_start_index..moe_layer_end_index whose (i + 1) is a multiple of moe_layer_interval,
    with moe_num_shared_experts x moe_intermediate_size shared experts; the router keeps a per-expert
    score-correction parameter (E), which adds no matmul."""
    r = _Reader(cfg, "ernie4_5_moe", _ERNIE45_MOE, aliases={"num_experts": "moe_num_experts",
                                                          "num_experts_per_tok": "moe_k"})
    n = r.int("num_hidden_layers")
    bias = r.bool("use_bias")
    start = r.int("moe_layer_start_index", minimum=0)
    end = r.raw("moe_layer_end_index")
    end = n - 1 if end == -1 else r.int("moe_layer_end_index", minimum=0)
    step = r.int("moe_layer_interval")
    act = r.str("hidden_act")
    dense = DenseFFN(d_ff=r.int("intermediate_size"), bias=bias, activation=act)
    sparse = [(i + 1) % step == 0 and start <= i <= end for i in range(n)]
    moe = None
    if any(sparse):
        d_e = r.int("moe_intermediate_size")
        moe = MoEFFN(num_experts=r.int("moe_num_experts"), top_k=r.int("moe_k"), expert_d_ff=d_e,
                     router_bias=True, shared_d_ff=d_e * r.int("moe_num_shared_experts", minimum=0),
                     shared_bias=bias, activation=act)
    if "moe_use_aux_free" in r.cfg:
        r.raw("moe_use_aux_free")
    spec = _llama_like(r, name, source, qkv_bias_key="use_bias", o_bias_key="use_bias",
                       ffn_for=lambda i: moe if sparse[i] else dense)
    return dataclasses.replace(spec, head_bias=bias)


def _llama4_text(cfg, name, source):
    """Llama 4 text (Scout, Maverick): GQA with head_dim; iRoPE: layers listed 1 in no_rope_layers
    rotate and attend within chunks of attention_chunk_size, the others (every fourth by default)
    are global NoPE layers; q/k L2 norms (no parameters). MoE layers (moe_layers, default every
    interleave_moe_layer_step-th) hold num_local_experts experts of intermediate_size plus one
    shared expert of the same width; the others a dense MLP of intermediate_size_mlp."""
    r = _Reader(cfg, "llama4_text", _LLAMA4_TEXT)
    n = r.int("num_hidden_layers")
    ropes = _rope_flags(r, n)
    chunk = r.opt_int("attention_chunk_size")
    step = r.int("interleave_moe_layer_step")
    given_moe = r.raw("moe_layers", None)
    moe_layers = set(range(step - 1, n, step) if given_moe is None else r.int_list("moe_layers"))
    r.raw("use_qk_norm")
    act = r.str("hidden_act")
    d_e = r.int("intermediate_size")
    moe = MoEFFN(num_experts=r.int("num_local_experts"), top_k=r.int("num_experts_per_tok"), expert_d_ff=d_e,
                 shared_d_ff=d_e, activation=act)
    dense = DenseFFN(d_ff=r.int("intermediate_size_mlp"), activation=act)
    types = r.raw("layer_types", None)
    chunked = [t == "chunked_attention" for t in types] if isinstance(types, list) and len(types) == n else ropes
    windows = [chunk if (c and chunk) else None for c in chunked]
    return _llama_like(r, name, source, head_dim_rule="given", windows=windows, ropes=ropes,
                       chunked=[bool(w) for w in windows],
                       ffn_for=lambda i: moe if i in moe_layers else dense)


def _qwen3_next(cfg, name, source):
    """Qwen3-Next: layer_types (default: three linear_attention layers, then one full_attention)
    alternate gated DeltaNet layers and gated full attention (q projects to 2 H d_head, half of it
    gating the output; per-head q/k RMSNorms); Qwen-MoE FFN rule with a gated shared expert."""
    r = _Reader(cfg, "qwen3_next", _QWEN3_NEXT)
    n = r.int("num_hidden_layers")
    interval = r.int("full_attention_interval")
    types = r.raw("layer_types", None)
    if types is None:
        types = ["linear_attention" if (i + 1) % interval else "full_attention" for i in range(n)]
    if not isinstance(types, list) or len(types) != n or not set(types) <= {"linear_attention", "full_attention"}:
        raise InvalidScenario(f"model.layer_types: expected {n} entries of 'linear_attention' or "
                              f"'full_attention', got {types!r}")
    sparse, dense, moe = _qwen_moe_ffns(r, n)
    gdn = LinearAttention(num_key_heads=r.int("linear_num_key_heads"), num_value_heads=r.int("linear_num_value_heads"),
                          key_head_dim=r.int("linear_key_head_dim"), value_head_dim=r.int("linear_value_head_dim"),
                          conv_kernel=r.int("linear_conv_kernel_dim"))
    if gdn.num_value_heads % gdn.num_key_heads:
        raise InvalidScenario(f"model.linear_num_key_heads: {gdn.num_key_heads} does not divide "
                              f"linear_num_value_heads {gdn.num_value_heads}")
    spec = _llama_like(r, name, source, qkv_bias_key="attention_bias", o_bias_key="attention_bias", qk_norm=True,
                       head_dim_rule="given", output_gate=True, ffn_for=lambda i: moe if sparse[i] else dense)
    layers = tuple(lay if types[i] == "full_attention" else dataclasses.replace(lay, attention=None, ssm=gdn)
                   for i, lay in enumerate(spec.layers))
    return dataclasses.replace(spec, layers=layers)


def _deepseek_v32(cfg, name, source):
    """DeepSeek-V3.2: DeepSeek-V3's MLA and MoE plus the DSA indexer on every layer (index_n_heads
    heads of index_head_dim over the query latent; each query attends its index_topk best keys).
    mlp_layer_types (dense / sparse per layer) overrides first_k_dense_replace."""
    r = _Reader(cfg, "deepseek_v32", _DEEPSEEK_V32, aliases={"num_local_experts": "n_routed_experts"})
    spec = _deepseek(cfg, name, source, "deepseek_v32", _DEEPSEEK_V32,
                     {"num_local_experts": "n_routed_experts", "num_mtp_layers": "num_nextn_predict_layers"},
                     reader=r)
    rq = r.opt_int("q_lora_rank")
    if rq is None:
        raise InvalidScenario("model.q_lora_rank: DeepSeek-V3.2's indexer reads the query latent; q_lora_rank "
                              "must be set")
    heads, head_dim, topk = r.int("index_n_heads"), r.int("index_head_dim"), r.int("index_topk")
    kinds = r.raw("mlp_layer_types", None)
    first = spec.layers[0].ffn
    if kinds is not None:
        if not isinstance(kinds, list) or len(kinds) != spec.num_layers or not set(kinds) <= {"dense", "sparse"}:
            raise InvalidScenario(f"model.mlp_layer_types: expected {spec.num_layers} entries of 'dense' or "
                                  f"'sparse', got {kinds!r}")
    layers = [dataclasses.replace(lay, attention=dataclasses.replace(
        lay.attention, index_heads=heads, index_head_dim=head_dim, index_topk=topk)) for lay in spec.layers]
    if kinds is not None:
        layers = _retype_mlps(r, layers, kinds, first)
    ignored, unmodeled = r.fields_report()
    return dataclasses.replace(spec, layers=tuple(layers), ignored_fields=ignored, unmodeled_fields=unmodeled)


def _retype_mlps(r: _Reader, layers: list[LayerSpec], kinds: list[str], first: Any) -> list[LayerSpec]:
    act = r.str("hidden_act")
    dense = DenseFFN(d_ff=r.int("intermediate_size"), activation=act)
    d_e = r.int("moe_intermediate_size")
    moe = MoEFFN(num_experts=r.int("n_routed_experts"), top_k=r.int("num_experts_per_tok"), expert_d_ff=d_e,
                 shared_d_ff=d_e * r.int("n_shared_experts", minimum=0), activation=act)
    return [dataclasses.replace(lay, ffn=dense if k == "dense" else moe) for lay, k in zip(layers, kinds, strict=True)]


_NEMOTRON_H_TYPES = {"M": "linear_attention", "E": "moe", "*": "full_attention", "-": "mlp",
                     "mamba": "linear_attention", "attention": "full_attention"}


def _nemotron_h_types(r: _Reader) -> list[str]:
    pattern = r.raw("hybrid_override_pattern", None)
    types = r.raw("layers_block_type", None)
    if types is None and isinstance(pattern, str):
        types = list(pattern)
    if types is None:
        types = ["linear_attention", "moe", "full_attention", "mlp"]
    if not isinstance(types, list):
        raise InvalidScenario(f"model.layers_block_type: expected a list, got {types!r}")
    out = [_NEMOTRON_H_TYPES.get(str(t), str(t)) for t in types]
    bad = sorted(set(out) - {"linear_attention", "moe", "full_attention", "mlp"})
    if bad:
        raise InvalidScenario(f"model.layers_block_type: unknown block types {bad}; accepted: 'M', 'E', '*', '-' "
                              "(or linear_attention, moe, full_attention, mlp)")
    return out


def _nemotron_h(cfg, name, source):
    """Nemotron-H: one mixer per block, each behind one RMSNorm: Mamba-2 ("M"), GQA attention ("*",
    no biases), a plain ReLU^2 MLP ("-") or MoE ("E": plain experts, optionally in a latent of
    moe_latent_size, plus a plain shared MLP). The block list (layers_block_type or
    hybrid_override_pattern) sets the depth; num_hidden_layers is not read. The head is never tied."""
    r = _Reader(cfg, "nemotron_h", _NEMOTRON_H, aliases={"layer_types": "layers_block_type",
                                                       "num_local_experts": "n_routed_experts"})
    types = _nemotron_h_types(r)
    r.raw("num_hidden_layers")
    hidden, vocab = r.int("hidden_size"), r.int("vocab_size")
    heads, kv = _heads(r, hidden)
    attn = StandardAttention(num_heads=heads, num_kv_heads=kv, head_dim=_head_dim_or_split(r, hidden, heads))
    bias = r.bool("use_bias")
    mamba = Mamba2Mixer(num_heads=r.int("mamba_num_heads"), head_dim=r.int("mamba_head_dim"),
                        state_size=r.int("ssm_state_size"), num_groups=r.int("n_groups"),
                        conv_kernel=r.int("conv_kernel"), conv_bias=r.bool("use_conv_bias"), in_bias=bias,
                        out_bias=bias, chunk_size=r.int("chunk_size"))
    mlp_bias, act = r.bool("mlp_bias"), r.str("mlp_hidden_act")
    blocks: dict[str, LayerSpec] = {
        "linear_attention": LayerSpec(attention=None, ffn=None, ssm=mamba, num_norms=1),
        "full_attention": LayerSpec(attention=attn, ffn=None, num_norms=1),
        "mlp": LayerSpec(attention=None, num_norms=1, ffn=DenseFFN(d_ff=r.int("intermediate_size"), gated=False,
                                                                   bias=mlp_bias, activation=act))}
    if "moe" in types:
        latent = r.opt_int("moe_latent_size")
        moe = MoEFFN(num_experts=r.int("n_routed_experts"), top_k=r.int("num_experts_per_tok"),
                     expert_d_ff=r.int("moe_intermediate_size"), gated=False, activation=act,
                     shared_d_ff=r.int("moe_shared_expert_intermediate_size"), shared_gated=False,
                     shared_bias=mlp_bias, latent_size=latent or 0, latent_bias=mlp_bias)
        blocks["moe"] = LayerSpec(attention=None, ffn=moe, num_norms=1)
    if r.bool("tie_word_embeddings"):
        r.unmodeled("tie_word_embeddings", "transformers ties no weights for nemotron_h (separate embedding and "
                    "LM head); counted as built")
    return _finish(r, name, source, [blocks[t] for t in types], RMS, hidden=hidden, vocab=vocab,
                   tie=False, max_seq=r.opt_int("max_position_embeddings"))


def _falcon_h1(cfg, name, source):
    """Falcon-H1: every layer runs GQA attention and a Mamba-2 mixer in parallel on one input norm,
    then a gated MLP behind a second norm. Mamba width d_ssm = mamba_d_ssm (or mamba_expand x h),
    head dim mamba_d_head ("auto": d_ssm / mamba_n_heads); in_proj bias mamba_proj_bias, out_proj
    bias projectors_bias; a gated RMSNorm over d_ssm only when mamba_rms_norm."""
    r = _Reader(cfg, "falcon_h1", _FALCON_H1)
    hidden = r.int("hidden_size")
    d_ssm = r.opt_int("mamba_d_ssm")
    d_ssm = r.int("mamba_expand") * hidden if d_ssm is None else d_ssm
    m_heads = r.int("mamba_n_heads")
    m_head_dim = r.raw("mamba_d_head")
    m_head_dim = d_ssm // m_heads if m_head_dim == "auto" else r.int("mamba_d_head")
    if m_head_dim * m_heads != d_ssm:
        raise InvalidScenario(f"model.mamba_n_heads: {m_heads} heads of {m_head_dim} do not make mamba_d_ssm {d_ssm}")
    mamba = Mamba2Mixer(num_heads=m_heads, head_dim=m_head_dim, state_size=r.int("mamba_d_state"),
                        num_groups=r.int("mamba_n_groups"), conv_kernel=r.int("mamba_d_conv"),
                        conv_bias=r.bool("mamba_conv_bias"), in_bias=r.bool("mamba_proj_bias"),
                        out_bias=r.bool("projectors_bias"), gated_norm=r.bool("mamba_rms_norm"),
                        chunk_size=r.int("mamba_chunk_size"))
    spec = _llama_like(r, name, source, mlp_bias_key="mlp_bias")
    return dataclasses.replace(spec, layers=tuple(dataclasses.replace(lay, ssm=mamba) for lay in spec.layers))


FAMILIES: dict[str, Callable[[Mapping[str, Any], str, str], ModelSpec]] = {
    "llama": _llama, "mistral": _mistral, "mixtral": _mixtral, "qwen2": _qwen2,
    "qwen2_moe": _qwen2_moe, "qwen3": _qwen3, "qwen3_moe": _qwen3_moe,
    "deepseek_v2": _deepseek_v2, "deepseek_v3": _deepseek_v3, "gpt2": _gpt2,
    "gpt_neox": _gpt_neox, "opt": _opt, "nemotron": _nemotron, "gpt_oss": _gpt_oss,
    "gemma2": _gemma2, "phi3": _phi3, "gemma": _gemma, "gemma3_text": _gemma3_text, "olmo2": _olmo2,
    "starcoder2": _starcoder2, "falcon": _falcon, "mpt": _mpt,
    "olmo3": _olmo3, "smollm3": _smollm3, "glm4_moe": _glm4_moe, "minimax_m2": _minimax_m2,
    "hunyuan_v1_moe": _hunyuan_v1_moe, "ernie4_5_moe": _ernie4_5_moe, "llama4_text": _llama4_text,
    "qwen3_next": _qwen3_next, "deepseek_v32": _deepseek_v32, "nemotron_h": _nemotron_h,
    "falcon_h1": _falcon_h1,
}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)


def from_hf_config(config: Mapping[str, Any], *, name: str | None = None, source: str = "") -> ModelSpec:
    """Build the ModelSpec for a Hugging Face config mapping (the content of config.json)."""
    if not isinstance(config, Mapping):
        raise InvalidScenario(f"model: expected a config mapping, got {type(config).__name__}")
    model_type = config.get("model_type")
    if model_type is None:
        raise InvalidScenario(
            "model.model_type: missing; a Hugging Face config must name its model_type "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        hints = did_you_mean(str(model_type), SUPPORTED_MODEL_TYPES)
        hint = f"did you mean {hints[0]!r}? " if hints else ""
        raise UnknownName(
            "model_type", str(model_type), SUPPORTED_MODEL_TYPES,
            message=f"model.model_type: {model_type!r} is not supported; {hint}"
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}",
        )
    label = name or config.get("_name_or_path") or str(model_type)
    limits.check_model_config(config)
    return FAMILIES[model_type](config, label, source)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a config.json (or a flopcast catalog model file, which wraps it under `config`)."""
    from flopcast import inputs

    p = Path(path)
    data = inputs.load_json(inputs.read_text(p, what="model"), what=f"model: {str(p)!r}")
    if not isinstance(data, dict):
        raise InvalidScenario(f"model: {p} must hold a JSON object")
    if "config" in data and isinstance(data["config"], dict) and "model_type" not in data:
        return data["config"]
    return data
