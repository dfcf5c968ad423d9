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
    rope: bool = True          # False: a no-RoPE layer (Llama 4 iRoPE, SmolLM3): no rotary work
    output_gate: bool = False  # Qwen3-Next: q projects to 2 H d_head, the second half gates the output
    chunked: bool = False      # Llama 4: `window` is a chunk size; queries attend within their chunk

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
    # DeepSeek Sparse Attention (V3.2): an indexer (q from the query latent r_q -> H_I d_I, one shared
    # key h -> d_I with a LayerNorm, head weights h -> H_I) scores every earlier key; each query then
    # attends only its `index_topk` best keys. index_heads == 0: dense MLA.
    index_heads: int = 0
    index_head_dim: int = 0
    index_topk: int | None = None

    kind = "MLA"

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim


Attention = StandardAttention | LatentAttention


@dataclass(frozen=True, slots=True, kw_only=True)
class LinearAttention:
    """Gated DeltaNet (Qwen3-Next linear-attention layers; Yang et al. 2024): in_proj_qkvz
    h -> 2 H_k d_k + 2 H_v d_v (q, k, v and the output gate z), in_proj_ba h -> 2 H_v (beta and the
    decay input), a depthwise causal conv of `conv_kernel` taps over q, k, v (no bias), dt_bias and
    A_log (H_v each), a gated RMSNorm over d_v, out_proj H_v d_v -> h. The recurrent state is
    H_v d_k d_v per sequence (no KV cache); prefill runs the chunked delta rule in chunks of
    `chunk_size` tokens."""

    num_key_heads: int
    num_value_heads: int
    key_head_dim: int
    value_head_dim: int
    conv_kernel: int = 4
    chunk_size: int = 64

    kind = "GDN"
    window = None

    @property
    def conv_dim(self) -> int:
        return 2 * self.num_key_heads * self.key_head_dim + self.num_value_heads * self.value_head_dim


@dataclass(frozen=True, slots=True, kw_only=True)
class Mamba2Mixer:
    """Mamba-2 mixer (Dao & Gu 2024): in_proj h -> 2 d_in + 2 G N + H (gate z, x, B, C, dt), a depthwise
    causal conv of `conv_kernel` taps over x, B, C (d_in + 2 G N channels), dt_bias, A_log and D (H
    each), an optional gated RMSNorm over d_in, out_proj d_in -> h; d_in = H x head_dim. The state is
    H head_dim N SSM elements plus (conv_kernel - 1) conv columns per sequence, whatever its length;
    prefill runs the chunked SSD scan in chunks of `chunk_size` tokens."""

    num_heads: int
    head_dim: int
    state_size: int
    num_groups: int = 1
    conv_kernel: int = 4
    conv_bias: bool = True
    in_bias: bool = False
    out_bias: bool = False
    gated_norm: bool = True
    chunk_size: int = 256

    kind = "Mamba2"
    window = None

    @property
    def d_inner(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.num_groups * self.state_size


StateMixer = LinearAttention | Mamba2Mixer


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
    shared_gated: bool = True   # False: plain up/down shared experts (Nemotron-H)
    shared_bias: bool = False
    # Nemotron-H: experts run in a latent of this width (fc1 h -> latent before, fc2 after); 0: none
    latent_size: int = 0
    latent_bias: bool = False


FFN = DenseFFN | MoEFFN


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerSpec:
    """One decoder block: attention, FFN and `num_norms` hidden-size norms (2 pre-norms for most
    families; 4 for Gemma-2/3's pre/post norms; 1 for Falcon's parallel block sharing one norm).

    Hybrid families: `ssm` is a recurrent-state mixer (Mamba-2, gated DeltaNet), alone (attention
    None: Qwen3-Next's linear layers, Nemotron-H's "M" blocks) or beside attention in parallel
    (Falcon-H1). Nemotron-H blocks hold one mixer each: attention or ssm or ffn, the others None."""

    attention: Attention | None
    ffn: FFN | None
    num_norms: int = 2
    ssm: StateMixer | None = None

    @property
    def window(self) -> int | None:
        """The attention window (None: global, or no attention)."""
        return self.attention.window if self.attention is not None else None


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
    head_bias: bool = False     # ERNIE-4.5's use_bias: the LM head has a V bias (not tied)
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
    def first_attention(self) -> Attention:
        """The first layer's attention that exists (hybrid models may open with a state mixer); for a
        model of state mixers only, a stand-in with the mixer's heads (what tensor parallelism splits)."""
        attn = next((lay.attention for lay in self.layers if lay.attention is not None), None)
        if attn is not None:
            return attn
        ssm = next(lay.ssm for lay in self.layers if lay.ssm is not None)
        heads = ssm.num_value_heads if isinstance(ssm, LinearAttention) else ssm.num_heads
        return StandardAttention(num_heads=heads, num_kv_heads=heads, head_dim=1)

    @property
    def attention_kind(self) -> str:
        kinds = sorted({mixer.kind for layer in self.layers for mixer in (layer.attention, layer.ssm)
                        if mixer is not None})
        return "+".join(kinds)

    def summary(self) -> dict[str, object]:
        """Architecture facts for reports (shapes, not counts)."""
        attn = next((lay.attention for lay in self.layers if lay.attention is not None), None)
        moe = next((lay.ffn for lay in self.layers if isinstance(lay.ffn, MoEFFN)), None)
        dense = next((lay.ffn for lay in self.layers if isinstance(lay.ffn, DenseFFN)), None)
        windows = sorted({lay.window for lay in self.layers if lay.window})
        out: dict[str, object] = {
            "family": self.family,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "attention": self.attention_kind,
            "num_heads": attn.num_heads if attn is not None else 0,
            "tie_embeddings": self.tie_embeddings,
            "positions": self.positions,
        }
        if isinstance(attn, StandardAttention):
            out["num_kv_heads"] = attn.num_kv_heads
            out["head_dim"] = attn.head_dim
        elif attn is not None:
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
            out["num_sliding_layers"] = sum(lay.window is not None for lay in self.layers)
        num_state = sum(lay.ssm is not None for lay in self.layers)
        if num_state:
            out["num_state_layers"] = num_state
        if self.max_seq_len:
            out["max_seq_len"] = self.max_seq_len
        return out
