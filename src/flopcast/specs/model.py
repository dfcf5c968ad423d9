"""ModelSpec: a decoder-only transformer as a small union of attention and FFN variants.

Legend (docs/notation.md): L layers, h hidden size, H query heads, H_kv key/value heads, d_head head
dim, d_ff FFN hidden size, V vocabulary, E routed experts, k experts per token.

The spec holds what determines parameter, FLOP and byte counts; everything else in a Hugging Face
config is listed in `ignored_fields` (known not to change the counts) or `unmodeled_fields`
(present, understood, but not represented: they are reported, never silently dropped).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

NormKind = Literal["rmsnorm", "layernorm"]
QKNormScope = Literal["head", "projection"]
Positions = Literal["rope", "learned", "alibi", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NormSpec:
    """A normalization layer over a vector of `dim` elements: weight (dim) and optional bias (dim).
    `affine=False` (OPT's layer_norm_elementwise_affine) has no parameters."""

    kind: NormKind
    bias: bool = False
    affine: bool = True

    def params(self, dim: int) -> int:
        if not self.affine:
            return 0
        return dim * (2 if self.bias else 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class StandardAttention:
    """Multi-head attention with H query heads sharing H_kv key/value heads (MHA: H_kv = H,
    MQA: H_kv = 1, GQA otherwise). q: h -> H d_head, k and v: h -> H_kv d_head, o: H d_head -> h.

    `qk_norm` is an RMSNorm on q and k: over each head's d_head elements, weights shared by the heads
    (Qwen3, Gemma-3: 2 d_head weights) when `qk_norm_scope == "head"`, or over the whole projection
    (OLMo-2: (H + H_kv) d_head weights) when it is "projection". `sinks` is one learned logit per head
    (gpt-oss). `window` caps the attended keys (sliding-window layers); None means global."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    out_bias: bool = False
    qk_norm: bool = False
    qk_norm_scope: QKNormScope = "head"
    sinks: bool = False
    window: int | None = None

    @property
    def kind(self) -> str:
        if self.num_kv_heads == self.num_heads:
            return "MHA"
        if self.num_kv_heads == 1:
            return "MQA"
        return "GQA"


@dataclass(frozen=True, slots=True, kw_only=True)
class LatentAttention:
    """Multi-head latent attention (DeepSeek-V2/V3). Queries go through a low-rank bottleneck
    (q_a: h -> r_q, RMSNorm, q_b: r_q -> H (d_nope + d_rope)) or a plain projection when
    `q_lora_rank` is None; keys/values are compressed to a latent of `kv_lora_rank` plus one shared
    rope key (kv_a: h -> r_kv + d_rope, RMSNorm over r_kv, kv_b: r_kv -> H (d_nope + d_v));
    o: H d_v -> h. The KV cache holds the latent and the rope key: r_kv + d_rope per token."""

    num_heads: int
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    bias: bool = False  # attention_bias: on q_a (or none), kv_a and o
    window: int | None = None

    kind = "MLA"

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim


Attention = StandardAttention | LatentAttention


@dataclass(frozen=True, slots=True, kw_only=True)
class DenseFFN:
    """Position-wise MLP. Gated (SwiGLU/GeGLU): gate and up h -> d_ff, down d_ff -> h.
    Plain (GeLU/ReLU/ReLU^2): up h -> d_ff, down d_ff -> h."""

    d_ff: int
    gated: bool = True
    bias: bool = False
    activation: str = "silu"


@dataclass(frozen=True, slots=True, kw_only=True)
class MoEFFN:
    """Mixture of experts: a router h -> E (optional bias), E routed experts of width
    `expert_d_ff` of which each token uses `top_k`, and optionally always-on shared experts of total
    width `shared_d_ff` (DeepSeek: n_shared * moe_intermediate; Qwen2-MoE: a separate size), with an
    optional sigmoid gate h -> 1 on the shared output (Qwen2-MoE)."""

    num_experts: int
    top_k: int
    expert_d_ff: int
    gated: bool = True
    expert_bias: bool = False
    router_bias: bool = False
    shared_d_ff: int = 0
    shared_gate: bool = False
    activation: str = "silu"


FFN = DenseFFN | MoEFFN


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerSpec:
    """One decoder block: attention, FFN and `num_norms` hidden-size norms (2 pre-norms for most
    families; 4 for Gemma-2/3's pre/post norms; 1 for Falcon's parallel block sharing one norm)."""

    attention: Attention
    ffn: FFN
    num_norms: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """A decoder-only language model, exactly as Hugging Face `transformers` builds it.

    Embedding: V x e token table (e = `embedding_dim`, equal to h unless OPT's word_embed_proj_dim
    differs, in which case project_in e -> h and project_out h -> e exist); learned positions
    `position_rows` x h when `positions == "learned"`; "rope" and "alibi" (a fixed per-head linear bias
    on the scores: MPT, some Falcons) have no parameters and no matmul FLOPs. Head: h (or e) -> V,
    sharing the token table when `tie_embeddings`."""

    name: str
    family: str
    vocab_size: int
    hidden_size: int
    layers: tuple[LayerSpec, ...]
    norm: NormSpec
    final_norm: bool = True
    tie_embeddings: bool = False
    positions: Positions = "rope"
    position_rows: int = 0
    embedding_dim: int | None = None
    max_seq_len: int | None = None
    source: str = ""
    ignored_fields: tuple[str, ...] = ()
    unmodeled_fields: tuple[tuple[str, str], ...] = ()  # (field, what is not modeled)
    notes: tuple[str, ...] = field(default=())
    # multi-token-prediction modules (DeepSeek-V3's num_nextn_predict_layers): not built by
    # transformers, so not in params_total; counted by counts.params_mtp and in training
    mtp_layers: int = 0
    # Distinct layers and, per layer, the index of its distinct spec: computed once, so estimators
    # never hash layer specs on a hot path.
    distinct_layers: tuple[LayerSpec, ...] = field(init=False, compare=False, repr=False)
    layer_group_index: tuple[int, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[LayerSpec, int] = {}
        ids = tuple(index.setdefault(layer, len(index)) for layer in self.layers)
        object.__setattr__(self, "distinct_layers", tuple(index))
        object.__setattr__(self, "layer_group_index", ids)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def embed_dim(self) -> int:
        return self.embedding_dim if self.embedding_dim is not None else self.hidden_size

    @property
    def is_moe(self) -> bool:
        return any(isinstance(layer.ffn, MoEFFN) for layer in self.layers)

    def layer_groups(self) -> list[tuple[LayerSpec, int]]:
        """Distinct layers with their multiplicity, in first-seen order (counts are per group)."""
        counts = Counter(self.layer_group_index)
        return [(spec, counts[i]) for i, spec in enumerate(self.distinct_layers)]

    @property
    def attention_kind(self) -> str:
        kinds = sorted({layer.attention.kind for layer in self.layers})
        return "+".join(kinds)

    def summary(self) -> dict[str, object]:
        """Architecture facts for reports (shapes, not counts)."""
        first = self.layers[0]
        attn = first.attention
        moe = next((lay.ffn for lay in self.layers if isinstance(lay.ffn, MoEFFN)), None)
        dense = next((lay.ffn for lay in self.layers if isinstance(lay.ffn, DenseFFN)), None)
        windows = sorted({lay.attention.window for lay in self.layers if lay.attention.window})
        out: dict[str, object] = {
            "family": self.family,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "attention": self.attention_kind,
            "num_heads": attn.num_heads,
            "tie_embeddings": self.tie_embeddings,
            "positions": self.positions,
        }
        if isinstance(attn, StandardAttention):
            out["num_kv_heads"] = attn.num_kv_heads
            out["head_dim"] = attn.head_dim
        else:
            out.update(
                q_lora_rank=attn.q_lora_rank, kv_lora_rank=attn.kv_lora_rank,
                qk_nope_head_dim=attn.qk_nope_head_dim, qk_rope_head_dim=attn.qk_rope_head_dim,
                v_head_dim=attn.v_head_dim,
            )
        if dense is not None:
            out["ffn_hidden_size"] = dense.d_ff
        if moe is not None:
            out.update(
                num_experts=moe.num_experts, experts_per_token=moe.top_k,
                expert_ffn_hidden_size=moe.expert_d_ff, shared_ffn_hidden_size=moe.shared_d_ff,
                num_moe_layers=sum(isinstance(lay.ffn, MoEFFN) for lay in self.layers),
            )
        if windows:
            out["sliding_window"] = windows[0] if len(windows) == 1 else windows
            out["num_sliding_layers"] = sum(lay.attention.window is not None for lay in self.layers)
        if self.max_seq_len:
            out["max_seq_len"] = self.max_seq_len
        return out
