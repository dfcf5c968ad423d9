"""Hypothesis strategies: small random Hugging Face configs of every supported family.

Optional keys are sometimes omitted, so that flopcast's copy of each config class's defaults is
exercised too. Sizes stay tiny so a real forward pass under torch's FLOP counter takes
milliseconds; head dims are even (rotary embeddings need it) and multiples of 8 where a family
rotates only part of the head.
"""

from __future__ import annotations

from hypothesis import strategies as st

FAMILIES = ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "deepseek_v2",
            "deepseek_v3", "gpt2", "gpt_neox", "opt", "nemotron", "gpt_oss", "gemma2", "phi3", "gemma",
            "gemma3_text", "olmo2", "starcoder2", "falcon", "mpt", "olmo3", "smollm3", "glm4_moe",
            "minimax_m2", "hunyuan_v1_moe", "ernie4_5_moe", "llama4_text", "qwen3_next", "deepseek_v32",
            "nemotron_h", "falcon_h1")

small = st.integers(min_value=1, max_value=48)


@st.composite
def maybe(draw, cfg: dict, key: str, strategy) -> None:
    """Set cfg[key] from strategy, or leave it out (the config class default applies)."""
    if draw(st.booleans()):
        cfg[key] = draw(strategy)


@st.composite
def _heads(draw, *, head_dim_mult: int = 2):
    heads = draw(st.sampled_from([1, 2, 3, 4, 6, 8]))
    kv = draw(st.sampled_from([d for d in range(1, heads + 1) if heads % d == 0]))
    head_dim = head_dim_mult * draw(st.integers(min_value=1, max_value=8 // max(1, head_dim_mult // 2)))
    return heads, kv, head_dim


@st.composite
def llama_like(draw, family: str, *, explicit_head_dim: bool | None = None, head_dim_mult: int = 2) -> dict:
    heads, kv, head_dim = draw(_heads(head_dim_mult=head_dim_mult))
    cfg: dict = {
        "model_type": family,
        "vocab_size": draw(st.integers(min_value=4, max_value=300)),
        "num_hidden_layers": draw(st.integers(min_value=1, max_value=4)),
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "intermediate_size": draw(small),
        "tie_word_embeddings": draw(st.booleans()),
        "max_position_embeddings": 256,
    }
    give_head_dim = draw(st.booleans()) if explicit_head_dim is None else explicit_head_dim
    if give_head_dim:
        cfg["head_dim"] = head_dim  # independent of hidden / heads (Gemma, Qwen3 style)
        # Some config classes (llama, gemma2) still insist that heads divide hidden.
        cfg["hidden_size"] = heads * draw(st.integers(min_value=1, max_value=12))
    else:
        cfg["hidden_size"] = heads * head_dim
    return cfg


@st.composite
def config_for(draw, family: str) -> dict:
    b = st.booleans()
    if family == "llama":
        cfg = draw(llama_like("llama"))
        draw(maybe(cfg, "attention_bias", b))
        draw(maybe(cfg, "mlp_bias", b))
    elif family == "mistral":
        cfg = draw(llama_like("mistral"))
        cfg["sliding_window"] = draw(st.one_of(st.none(), st.integers(16, 64)))
    elif family == "mixtral":
        cfg = draw(llama_like("mixtral"))
        e = draw(st.integers(1, 6))
        cfg.update(num_local_experts=e, num_experts_per_tok=draw(st.integers(1, e)))
        cfg["sliding_window"] = draw(st.one_of(st.none(), st.integers(16, 64)))
    elif family in ("qwen2", "qwen3"):
        cfg = draw(llama_like(family))
        if family == "qwen3":
            draw(maybe(cfg, "attention_bias", b))
        if draw(b):
            cfg.update(use_sliding_window=True, sliding_window=draw(st.integers(16, 64)),
                       max_window_layers=draw(st.integers(0, 4)))
    elif family == "qwen2_moe":
        cfg = draw(llama_like("qwen2_moe"))
        e = draw(st.integers(0, 6))
        cfg.update(num_experts=e, num_experts_per_tok=draw(st.integers(1, max(1, e))),
                   moe_intermediate_size=draw(small), shared_expert_intermediate_size=draw(small),
                   decoder_sparse_step=draw(st.integers(1, 3)))
        draw(maybe(cfg, "qkv_bias", b))
        draw(maybe(cfg, "mlp_only_layers", st.lists(st.integers(0, 3), max_size=2, unique=True)))
    elif family == "qwen3_moe":
        cfg = draw(llama_like("qwen3_moe"))
        e = draw(st.integers(1, 6))
        cfg.update(num_experts=e, num_experts_per_tok=draw(st.integers(1, e)),
                   moe_intermediate_size=draw(small), decoder_sparse_step=draw(st.integers(1, 3)))
        draw(maybe(cfg, "attention_bias", b))
        draw(maybe(cfg, "mlp_only_layers", st.lists(st.integers(0, 3), max_size=2, unique=True)))
    elif family in ("deepseek_v2", "deepseek_v3"):
        heads = draw(st.sampled_from([1, 2, 4]))
        n = draw(st.integers(1, 4))
        # DeepSeek-V3 scores each expert group by its top-2 experts: groups need >= 2 experts.
        e = draw(st.integers(2 if family == "deepseek_v3" else 1, 6))
        cfg = {
            "model_type": family, "vocab_size": draw(st.integers(4, 300)),
            "hidden_size": heads * draw(st.integers(2, 12)), "num_hidden_layers": n,
            "num_attention_heads": heads, "num_key_value_heads": heads,
            "intermediate_size": draw(small), "moe_intermediate_size": draw(small),
            # DeepSeek-V2's complex-number rope needs even strides: even kv_lora and nope dims.
            "kv_lora_rank": 2 * draw(st.integers(1, 12)),
            "q_lora_rank": draw(st.one_of(st.none(), st.integers(1, 24))),
            "qk_nope_head_dim": 2 * draw(st.integers(1, 6)),
            "qk_rope_head_dim": 2 * draw(st.integers(1, 4)),
            "v_head_dim": draw(st.integers(1, 12)),
            "n_routed_experts": e, "num_experts_per_tok": draw(st.integers(1, e)),
            "n_shared_experts": draw(st.integers(0, 2)),
            "first_k_dense_replace": draw(st.integers(0, n)),
            "tie_word_embeddings": draw(b), "max_position_embeddings": 256,
        }
        if family == "deepseek_v3":
            cfg.update(n_group=1, topk_group=1)
        else:
            cfg.update(topk_method="greedy")
            draw(maybe(cfg, "mlp_bias", st.just(False)))
        draw(maybe(cfg, "attention_bias", b))
    elif family == "gpt2":
        heads = draw(st.sampled_from([1, 2, 4]))
        cfg = {"model_type": "gpt2", "vocab_size": draw(st.integers(4, 300)),
               "n_embd": heads * 2 * draw(st.integers(1, 8)), "n_head": heads,
               "n_layer": draw(st.integers(1, 4)), "n_positions": draw(st.integers(16, 128)),
               "tie_word_embeddings": draw(b)}
        draw(maybe(cfg, "n_inner", st.one_of(st.none(), small)))
    elif family == "gpt_neox":
        heads = draw(st.sampled_from([1, 2, 4]))
        cfg = {"model_type": "gpt_neox", "vocab_size": draw(st.integers(4, 300)),
               "hidden_size": heads * 8 * draw(st.integers(1, 2)), "num_attention_heads": heads,
               "num_hidden_layers": draw(st.integers(1, 4)), "intermediate_size": draw(small),
               "tie_word_embeddings": draw(b), "max_position_embeddings": 256}
        draw(maybe(cfg, "attention_bias", b))
    elif family == "opt":
        heads = draw(st.sampled_from([1, 2, 4]))
        hidden = heads * 2 * draw(st.integers(1, 8))
        cfg = {"model_type": "opt", "vocab_size": draw(st.integers(4, 300)), "hidden_size": hidden,
               "num_attention_heads": heads, "num_hidden_layers": draw(st.integers(1, 4)),
               "ffn_dim": draw(small), "max_position_embeddings": draw(st.integers(16, 128)),
               "word_embed_proj_dim": draw(st.one_of(st.just(hidden), st.integers(2, 32))),
               "tie_word_embeddings": draw(b)}
        for key in ("do_layer_norm_before", "enable_bias", "layer_norm_elementwise_affine",
                    "_remove_final_layer_norm"):
            draw(maybe(cfg, key, b))
    elif family == "nemotron":
        cfg = draw(llama_like("nemotron", head_dim_mult=4))
        draw(maybe(cfg, "attention_bias", b))
        draw(maybe(cfg, "mlp_bias", b))
    elif family == "gpt_oss":
        cfg = draw(llama_like("gpt_oss", explicit_head_dim=True))
        e = draw(st.integers(1, 6))
        cfg.update(num_local_experts=e, num_experts_per_tok=draw(st.integers(1, e)),
                   sliding_window=draw(st.integers(16, 64)))
        draw(maybe(cfg, "attention_bias", b))
    elif family == "gemma2":
        cfg = draw(llama_like("gemma2", explicit_head_dim=True))
        cfg["sliding_window"] = draw(st.integers(16, 64))
        draw(maybe(cfg, "attention_bias", b))
    elif family == "phi3":
        cfg = draw(llama_like("phi3"))
        cfg["sliding_window"] = draw(st.one_of(st.none(), st.integers(16, 64)))
    elif family == "gemma":
        cfg = draw(llama_like("gemma", explicit_head_dim=True))
        draw(maybe(cfg, "attention_bias", b))
    elif family == "gemma3_text":
        cfg = draw(llama_like("gemma3_text", explicit_head_dim=True))
        draw(maybe(cfg, "sliding_window", st.integers(16, 64)))
        draw(maybe(cfg, "sliding_window_pattern", st.integers(1, 4)))
        kinds = st.sampled_from(["full_attention", "sliding_attention"])
        n = cfg["num_hidden_layers"]
        draw(maybe(cfg, "layer_types", st.lists(kinds, min_size=n, max_size=n)))
        draw(maybe(cfg, "attention_bias", b))
    elif family == "olmo2":
        cfg = draw(llama_like("olmo2"))
        draw(maybe(cfg, "attention_bias", b))
    elif family == "starcoder2":
        cfg = draw(llama_like("starcoder2"))
        draw(maybe(cfg, "sliding_window", st.one_of(st.none(), st.integers(16, 64))))
        draw(maybe(cfg, "use_bias", b))
    elif family == "falcon":
        heads = draw(st.sampled_from([1, 2, 4, 8]))
        cfg = {"model_type": "falcon", "vocab_size": draw(st.integers(4, 300)),
               "hidden_size": heads * 2 * draw(st.integers(1, 6)), "num_attention_heads": heads,
               "num_hidden_layers": draw(st.integers(1, 4)), "max_position_embeddings": 256}
        draw(maybe(cfg, "ffn_hidden_size", st.one_of(st.none(), small)))
        for key in ("alibi", "bias", "tie_word_embeddings", "multi_query"):
            draw(maybe(cfg, key, b))
        if draw(b):
            # Falcon-40B layout: grouped K/V heads; its forward needs the parallel block.
            cfg["new_decoder_architecture"] = True
            draw(maybe(cfg, "num_kv_heads", st.sampled_from([d for d in range(1, heads + 1) if heads % d == 0])))
            draw(maybe(cfg, "num_ln_in_parallel_attn", st.sampled_from([None, 1, 2])))
        else:
            draw(maybe(cfg, "new_decoder_architecture", st.just(False)))
            draw(maybe(cfg, "parallel_attn", b))
            if cfg.get("multi_query", True):
                draw(maybe(cfg, "num_kv_heads", st.integers(1, 4)))  # unused by transformers here
    elif family == "mpt":
        heads = draw(st.sampled_from([1, 2, 3, 4]))
        cfg = {"model_type": "mpt", "vocab_size": draw(st.integers(4, 300)),
               "d_model": heads * draw(st.integers(1, 8)), "n_heads": heads,
               "n_layers": draw(st.integers(1, 4)), "max_seq_len": draw(st.integers(16, 128))}
        draw(maybe(cfg, "tie_word_embeddings", b))
        # Keys transformers does not honour: the oracle shows they leave the built model unchanged.
        draw(maybe(cfg, "expansion_ratio", st.integers(1, 4)))
        draw(maybe(cfg, "no_bias", b))
        draw(maybe(cfg, "learned_pos_emb", b))
        attn = st.fixed_dictionaries({}, optional={
            "attn_type": st.sampled_from(["multihead_attention", "multiquery_attention"]),
            "qk_ln": b, "alibi": b, "alibi_bias_max": st.integers(1, 8)})
        draw(maybe(cfg, "attn_config", attn))
    else:
        cfg = draw(new_family_config(family))
    # Token ids of the default configs (e.g. Phi-3's pad 32000) would fall outside tiny vocabularies.
    cfg.update(pad_token_id=None, bos_token_id=None, eos_token_id=None)
    return cfg


def _experts(draw, cfg: dict, *, experts_key: str = "num_experts", top_key: str = "num_experts_per_tok",
             low: int = 1) -> None:
    e = draw(st.integers(low, 6))
    cfg[experts_key] = e
    cfg[top_key] = draw(st.integers(1, e))


HYBRID_FAMILIES = ("qwen3_next", "deepseek_v32", "nemotron_h", "falcon_h1")


@st.composite
def new_family_config(draw, family: str) -> dict:
    """The 2025 families: MoE variants, no-RoPE / chunked layers, hybrid DeltaNet and Mamba-2 models."""
    if family in HYBRID_FAMILIES:
        return draw(_hybrid_family_config(family))
    b = st.booleans()
    n = draw(st.integers(1, 5))
    if family == "olmo3":
        cfg = draw(llama_like("olmo3"))
        cfg["sliding_window"] = draw(st.integers(2, 64))
        draw(maybe(cfg, "attention_bias", b))
    elif family == "smollm3":
        cfg = draw(llama_like("smollm3"))
        cfg["num_hidden_layers"] = n
        draw(maybe(cfg, "no_rope_layer_interval", st.integers(1, 3)))
        draw(maybe(cfg, "no_rope_layers", st.lists(st.integers(0, 1), min_size=n, max_size=n)))
        draw(maybe(cfg, "use_sliding_window", b))
        draw(maybe(cfg, "sliding_window", st.integers(2, 64)))
        draw(maybe(cfg, "attention_bias", b))
        draw(maybe(cfg, "mlp_bias", b))
    elif family == "glm4_moe":
        cfg = draw(llama_like("glm4_moe", explicit_head_dim=True, head_dim_mult=4))   # half the head rotates
        cfg["num_hidden_layers"] = n
        _experts(draw, cfg, experts_key="n_routed_experts", low=2)   # group scores take each group's top 2
        cfg.update(moe_intermediate_size=draw(small), n_shared_experts=draw(st.integers(0, 2)),
                   first_k_dense_replace=draw(st.integers(0, n)))
        draw(maybe(cfg, "use_qk_norm", b))
        draw(maybe(cfg, "attention_bias", b))
    elif family == "minimax_m2":
        cfg = draw(llama_like("minimax_m2", explicit_head_dim=True))
        _experts(draw, cfg, experts_key="num_local_experts")
    elif family == "hunyuan_v1_moe":
        cfg = draw(llama_like("hunyuan_v1_moe", explicit_head_dim=True))
        cfg["num_hidden_layers"] = n
        e = draw(st.integers(1, 6))
        cfg["num_experts"] = e
        cfg["moe_topk"] = draw(st.one_of(st.integers(1, e), st.lists(st.integers(1, e), min_size=n, max_size=n)))
        draw(maybe(cfg, "attention_bias", b))
    elif family == "ernie4_5_moe":
        cfg = draw(llama_like("ernie4_5_moe"))
        cfg["num_hidden_layers"] = n
        _experts(draw, cfg, experts_key="moe_num_experts", top_key="moe_k")
        cfg.update(moe_intermediate_size=draw(small), moe_num_shared_experts=draw(st.integers(0, 2)),
                   moe_layer_start_index=draw(st.integers(0, n)), moe_layer_interval=draw(st.integers(1, 2)))
        draw(maybe(cfg, "moe_layer_end_index", st.integers(-1, n)))
        draw(maybe(cfg, "use_bias", b))
    elif family == "llama4_text":
        cfg = draw(llama_like("llama4_text", explicit_head_dim=True))
        cfg["num_hidden_layers"] = n
        _experts(draw, cfg, experts_key="num_local_experts")
        cfg.update(intermediate_size_mlp=draw(small), attention_chunk_size=draw(st.integers(2, 16)))
        draw(maybe(cfg, "interleave_moe_layer_step", st.integers(1, 3)))
        draw(maybe(cfg, "no_rope_layer_interval", st.integers(1, 3)))
        draw(maybe(cfg, "use_qk_norm", b))
        draw(maybe(cfg, "attention_bias", b))
    else:
        raise ValueError(family)
    return cfg


@st.composite
def _hybrid_family_config(draw, family: str) -> dict:
    """Qwen3-Next (gated DeltaNet), DeepSeek-V3.2 (DSA indexer), Nemotron-H and Falcon-H1 (Mamba-2)."""
    b = st.booleans()
    n = draw(st.integers(1, 5))
    if family == "qwen3_next":
        cfg = draw(llama_like("qwen3_next", explicit_head_dim=True, head_dim_mult=8))   # a quarter rotates
        cfg["num_hidden_layers"] = n
        kh = draw(st.sampled_from([1, 2]))
        cfg.update(linear_num_key_heads=kh, linear_num_value_heads=kh * draw(st.integers(1, 2)),
                   linear_key_head_dim=draw(st.integers(1, 8)), linear_value_head_dim=draw(st.integers(1, 8)),
                   moe_intermediate_size=draw(small), shared_expert_intermediate_size=draw(small),
                   decoder_sparse_step=draw(st.integers(1, 2)))
        _experts(draw, cfg)
        draw(maybe(cfg, "linear_conv_kernel_dim", st.integers(2, 4)))
        draw(maybe(cfg, "full_attention_interval", st.integers(1, 3)))
        draw(maybe(cfg, "mlp_only_layers", st.lists(st.integers(0, 4), max_size=2, unique=True)))
        draw(maybe(cfg, "attention_bias", b))
    elif family == "deepseek_v32":
        cfg = draw(config_for("deepseek_v3"))
        cfg["model_type"] = "deepseek_v32"
        cfg.pop("pad_token_id"), cfg.pop("bos_token_id"), cfg.pop("eos_token_id")
        cfg["q_lora_rank"] = draw(st.integers(1, 24))
        cfg["index_head_dim"] = cfg["qk_rope_head_dim"] + 2 * draw(st.integers(0, 4))
        cfg.update(index_n_heads=draw(st.integers(1, 4)), index_topk=draw(st.integers(1, 16)))
        if draw(b):
            cfg["mlp_layer_types"] = draw(st.lists(st.sampled_from(["dense", "sparse"]),
                                                   min_size=cfg["num_hidden_layers"],
                                                   max_size=cfg["num_hidden_layers"]))
    elif family == "nemotron_h":
        # Mamba head and state dims >= 2: torch.einsum turns a contraction over a size-1 dim into an
        # element-wise product, which the FLOP counter does not see.
        heads, kv, head_dim = draw(_heads())
        mh, groups = draw(st.sampled_from([(1, 1), (2, 1), (2, 2), (4, 2)]))
        cfg = {"model_type": "nemotron_h", "vocab_size": draw(st.integers(4, 300)),
               "hidden_size": draw(st.integers(2, 24)), "num_attention_heads": heads, "num_key_value_heads": kv,
               "head_dim": head_dim, "layers_block_type": draw(st.lists(
                   st.sampled_from(["linear_attention", "moe", "full_attention", "mlp"]), min_size=1, max_size=5)),
               "intermediate_size": draw(small), "mamba_num_heads": mh, "mamba_head_dim": draw(st.integers(2, 6)),
               "n_groups": groups, "ssm_state_size": draw(st.integers(2, 8)),
               "moe_intermediate_size": draw(small), "moe_shared_expert_intermediate_size": draw(small),
               "tie_word_embeddings": draw(b), "chunk_size": draw(st.integers(2, 8))}
        _experts(draw, cfg, experts_key="n_routed_experts", low=2)
        for key in ("mlp_bias", "use_bias", "use_conv_bias"):
            draw(maybe(cfg, key, b))
        draw(maybe(cfg, "conv_kernel", st.integers(2, 4)))
        draw(maybe(cfg, "moe_latent_size", st.integers(1, 12)))
    elif family == "falcon_h1":
        cfg = draw(llama_like("falcon_h1"))
        cfg["num_hidden_layers"] = n
        mh, groups = draw(st.sampled_from([(1, 1), (2, 1), (2, 2), (4, 2)]))
        cfg.update(mamba_n_heads=mh, mamba_n_groups=groups, mamba_d_ssm=mh * draw(st.integers(2, 6)),
                   mamba_d_state=draw(st.integers(2, 8)), mamba_chunk_size=draw(st.integers(2, 8)))
        for key in ("mamba_conv_bias", "mamba_proj_bias", "projectors_bias", "mamba_rms_norm",
                    "attention_bias", "mlp_bias"):
            draw(maybe(cfg, key, b))
        draw(maybe(cfg, "mamba_d_conv", st.integers(2, 4)))
    else:
        raise ValueError(family)
    return cfg


def hf_config_object(cfg: dict):
    """The transformers config object for a config mapping (as AutoConfig would build it)."""
    from transformers import CONFIG_MAPPING

    kwargs = {k: v for k, v in cfg.items() if k not in ("model_type", "quantization_config")}
    return CONFIG_MAPPING[cfg["model_type"]](**kwargs)


def build_meta(cfg: dict):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config_object(cfg))


def meta_param_count(cfg: dict) -> int:
    return sum(p.numel() for p in build_meta(cfg).parameters())
