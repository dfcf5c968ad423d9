"""The engine's admission limits of one replica, shared by the analytic serving estimate
(estimate/serving.py) and the serving simulator (sim/), so that the scenario keys mean the same in
both:

- `max_num_tokens` (alias `max_tokens_per_iteration`; vLLM max_num_batched_tokens, TensorRT-LLM
  max_num_tokens): the tokens one iteration may carry, prompt chunks plus one per decoding sequence.
- `batch_size`: the concurrent sequences per replica the scenario runs at; `max` (None) for as many
  as the caller's other limits allow (memory and the token budget).
- `max_batch_size` (vLLM max_num_seqs, TensorRT-LLM max_batch_size): the engine's cap on concurrent
  sequences per replica, on top of either.
"""

from __future__ import annotations

from flopcast.specs.serving import InferenceSpec


def token_budget(spec: InferenceSpec) -> int:
    """Tokens one iteration of a replica may carry (prompt chunks + one per decoding sequence)."""
    return spec.max_tokens_per_iteration


def concurrent_sequences(spec: InferenceSpec, *, unlimited: int) -> int:
    """Sequences one replica runs at once: `batch_size` when given, else `unlimited` (what the
    caller's other limits allow: the estimator's memory and budget share, the simulator's token
    budget), never above `max_batch_size`."""
    n = unlimited if spec.batch_size is None else spec.batch_size
    return n if spec.max_batch_size is None else min(n, spec.max_batch_size)
