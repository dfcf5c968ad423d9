"""Serving engines: each engine's KV-cache memory accounting (catalog/frameworks.yaml kv_memory, as
its source states it) and the scheduling semantics of DeepSpeed-FastGen (Dynamic SplitFuse) and
Hugging Face TGI in both the analytic estimate and the simulator."""

from __future__ import annotations

import dataclasses

import pytest

from flopcast import catalog, units
from flopcast.errors import InvalidScenario
from flopcast.estimate import serving as sv_mod
from flopcast.run.serving import estimate_serving, simulate_serving
from flopcast.sim.engine import simulate
from flopcast.sim.workload import WorkloadSpec
from flopcast.specs.serving import inference_from_mapping

LLAMA2_7B = catalog.get_model("llama-2-7b")
A100 = catalog.get_hardware("a100-sxm-80gb")
H100 = catalog.get_hardware("h100-sxm")
GIB = units.GiB


def _split(engine: str, hw=A100, model=LLAMA2_7B, **extra):
    spec = inference_from_mapping({"engine": engine, "input_tokens": 128, "output_tokens": 2048, **extra})
    return sv_mod.memory_split(sv_mod.prepare(model, hw, spec)), spec


@pytest.mark.parametrize("engine, rule", [
    ("vllm", lambda c, w, a: 0.9 * c - w - a - GIB),                 # gpu_memory_utilization of total
    ("trtllm", lambda c, w, a: 0.9 * (c - w - a - GIB)),             # free_gpu_memory_fraction of free
    ("tgi", lambda c, w, a: 0.9 * (c - w - a - GIB)),                # TGI_WIGGLE_ROOM of free after warm-up
    ("lmdeploy", lambda c, w, a: 0.8 * (c - w - GIB)),               # cache_max_entry_count of free after weights
    ("fastgen", lambda c, w, a: (c - w - a - GIB) - 1e9),            # MemoryConfig RESERVE 1 GB
])
def test_kv_capacity_follows_each_engines_rule(engine, rule):
    """The KV cache is what the engine's own rule gives (sources in catalog/frameworks.yaml), from
    the device memory, the weights and the activation workspace; the four parts sum to the device."""
    (weights, workspace, rest, kv), _ = _split(engine)
    cap = A100.hbm_capacity_bytes
    assert kv == pytest.approx(rule(cap, weights, workspace), rel=1e-12)
    assert weights + workspace + rest + kv == pytest.approx(cap, rel=1e-12)


def test_sglang_mem_fraction_static_is_its_server_args_rule():
    """SGLang's default mem_fraction_static on an 80 GiB part at tp 1 and an 8192-token chunk:
    reserved = max(512 + 1.5 x 8192 + 2 x 256 + 1024 / 8, 10 x 1024) = 13440 MB, f = (81920 - 13440)
    / 81920 rounded to 0.836; KV = f C - W (the static share holds weights and the KV pool)."""
    assert sv_mod.sglang_mem_fraction_static(80 * GIB, 8192, 1, 1) == 0.836
    # below 60 GB no 10 GB floor: 40 GiB, tp 8 (graph bs 160): 512 + 6144 + 320 + 1024 = 8000 MB
    assert sv_mod.sglang_mem_fraction_static(40 * GIB, 4096, 8, 1) == round((40960 - 8000) / 40960, 3)
    (weights, _, _, kv), _ = _split("sglang")
    assert kv == pytest.approx(0.836 * A100.hbm_capacity_bytes - weights, rel=1e-12)


def test_kv_memory_fraction_overrides_the_engines_default():
    """inference.kv_memory_fraction replaces the engine's fraction in the engine's own rule."""
    (w, a, _, kv), spec = _split("vllm", kv_memory_fraction=0.5)
    assert spec.kv_memory_fraction == 0.5
    assert kv == pytest.approx(0.5 * A100.hbm_capacity_bytes - w - a - GIB, rel=1e-12)
    (w, _, _, kv), _ = _split("lmdeploy", kv_memory_fraction=0.95)
    assert kv == pytest.approx(0.95 * (A100.hbm_capacity_bytes - w - GIB), rel=1e-12)


@pytest.mark.parametrize("bad", [0, 1.5, -0.1, "0.9", True, float("nan")])
def test_kv_memory_fraction_outside_0_1_is_refused(bad):
    """A fraction outside (0, 1] (or not a number) is refused with one line naming the key."""
    with pytest.raises(InvalidScenario, match=r"inference.kv_memory_fraction: expected a fraction"):
        inference_from_mapping({"kv_memory_fraction": bad})


def test_lmdeploy_llama2_7b_a100_capacity():
    """LMDeploy's A100 benchmark (docs/en/benchmark/a100_fp16.md, v0.1.0a1) runs batch 64 of Llama-2-7B
    at 128 + 2048 tokens. 64 whole sequences cannot be resident at once: 64 x 2176 tokens x 0.5 MiB
    = 68 GiB beside 12.55 GiB of fp16 weights exceeds the 80 GiB part, so the engine holds fewer at
    full length (TurboMind admits and evicts by blocks). By LMDeploy's accounting (0.8 of the memory
    free after the weights) 50 fit; by vLLM's (0.9 of total) 54."""
    sc = {"model": "llama-2-7b", "hardware": "a100-sxm-80gb", "cluster": {"num_devices": 1},
          "inference": {"engine": "lmdeploy", "input_tokens": 128, "output_tokens": 2048, "batch_size": 64}}
    est = estimate_serving(sc)
    kv_seq = 2176 * 32 * 2 * 4096 * 2
    assert est.memory_breakdown_bytes["weights"] + 64 * kv_seq > A100.hbm_capacity_bytes
    assert est.max_batch_size == 50 and not est.fits and "only 50 sequences fit" in est.infeasible_reason
    sc["inference"]["engine"] = "vllm"
    assert estimate_serving(sc).max_batch_size == 54


def test_fastgen_and_tgi_defaults():
    """fastgen: SplitFuse budget 768 tokens, 512 sequences, scheduler splitfuse; tgi: prefill budget
    4096 (max_batch_prefill_tokens), scheduler tgi; the budget and cap can still be set."""
    fg = inference_from_mapping({"engine": "fastgen"})
    assert (fg.max_tokens_per_iteration, fg.max_batch_size) == (768, 512)
    assert inference_from_mapping({"engine": "fastgen", "max_num_tokens": 2048}).max_tokens_per_iteration == 2048
    tg = inference_from_mapping({"engine": "tgi"})
    assert (tg.max_tokens_per_iteration, tg.max_batch_size) == (4096, None)
    base = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
            "inference": {"input_tokens": 512, "output_tokens": 64,
                          "workload": {"num_requests": 20, "arrival": {"process": "poisson", "rate_per_s": 5}}}}
    for engine, sched in (("fastgen", "splitfuse"), ("tgi", "tgi"), ("vllm", "sarathi")):
        sc = {**base, "inference": {**base["inference"], "engine": engine}}
        out = simulate_serving(sc).to_dict()
        assert [a["value"] for a in out["assumptions"] if a["name"] == "scheduler"] == [sched]


def test_tgi_decode_waits_for_prefills_in_infer():
    """TGI runs prompts in their own forwards: the time per decode step is the decode-only step plus
    the amortised prefill forwards (B I / O prompt tokens per step), so TPOT exceeds the fused
    (chunked-prefill) engine's at the same batch and the TPOT equals the step time."""
    sc = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
          "inference": {"engine": "tgi", "input_tokens": 1024, "output_tokens": 128, "batch_size": 32}}
    tgi = estimate_serving(sc)
    sv = sv_mod.prepare(catalog.get_model("llama-3.1-8b"), H100, tgi.spec)
    dec = sum(sv_mod.iteration_breakdown_s(sv, 32, 1024 + 64, 0, 1024, 32).values())
    per_step = 32 * 1024 / 128
    P = max(1024.0, min(4096.0, per_step * 20))
    pre = per_step / P * sum(sv_mod.iteration_breakdown_s(sv, 0, 0, P, 1024, P / 1024).values())
    assert tgi.tpot_s == pytest.approx(dec + pre, rel=1e-12)
    assert tgi.output_tokens_per_s == pytest.approx(32 / (dec + pre), rel=1e-12)
    fused = estimate_serving({**sc, "inference": {**sc["inference"], "engine": "vllm"}})
    assert tgi.tpot_s > fused.tpot_s


class _Recorder:
    """An iteration cost that records what every iteration carries and takes 10 ms."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def time_s(self, n_dec, ctx_sum, n_pre, keys_sum, n_sampled):
        self.calls.append((n_dec, n_pre))
        return 0.01


def test_splitfuse_forwards_fill_the_budget_exactly():
    """Dynamic SplitFuse: with prompts waiting, every forward carries exactly the 768-token budget
    (decodes first, prompt chunks to fill it, long prompts split across forwards)."""
    spec = inference_from_mapping({"engine": "fastgen"})
    rec = _Recorder()
    simulate(catalog.get_model("llama-3.1-8b"), H100, spec,
             WorkloadSpec(num_requests=40, process="burst", input_tokens=WorkloadSpec().input_tokens,
                          output_tokens=dataclasses.replace(WorkloadSpec().output_tokens, value=16)),
             scheduler="splitfuse", cost=rec)
    # 40 prompts of 1024 tokens: while prompt tokens remain, each forward is full
    total_prompt = 40 * 1024
    done, full = 0, 0
    for n_dec, n_pre in rec.calls:
        if done + n_pre < total_prompt:
            assert n_dec + n_pre == 768
            full += 1
        done += n_pre
    assert full >= total_prompt // 768 - 1


def test_tgi_router_batches_prefills_and_decodes_separately():
    """TGI: a forward is a prefill (no decodes) or a decode of the whole batch; the first prefill
    of a burst takes prompts while they fit max_batch_prefill_tokens (4 x 1000 <= 4096 < 5 x 1000);
    with B running, a new prefill waits for floor(1.2 B) requests or 20 decode steps."""
    spec = inference_from_mapping({"engine": "tgi"})
    rec = _Recorder()
    w = WorkloadSpec(num_requests=12, process="burst",
                     input_tokens=dataclasses.replace(WorkloadSpec().input_tokens, value=1000),
                     output_tokens=dataclasses.replace(WorkloadSpec().output_tokens, value=50))
    simulate(catalog.get_model("llama-3.1-8b"), H100, spec, w, scheduler="tgi", cost=rec)
    assert all(n_dec == 0 or n_pre == 0 for n_dec, n_pre in rec.calls)
    assert rec.calls[0] == (0, 4000)
    # 4 running, 8 waiting >= floor(4.8): the next forward is the second prefill of 4 prompts
    assert rec.calls[1] == (0, 4000)
    # 8 running, 4 waiting < floor(9.6): decode for 20 steps, then the forced prefill
    assert rec.calls[2:22] == [(8, 0)] * 20
    assert rec.calls[22] == (0, 4000)


def test_tgi_v3_long_prompts_on_8xh100_within_20_percent():
    """TGI v3's published long test (huggingface/text-generation-inference docs/source/conceptual/
    chunking.md, raw results, 1st run: Llama 3.1 70B on 8xH100, 20 requests of ~10k prompt tokens and
    50 output tokens from 10 clients, 200k prompt tokens in 12.1 s = 16.5k prompt tokens/s) is
    predicted within 20% with the shipped calibration (-12% when written). It is a check here rather
    than a validation row: see the note in validation/extra_runs.yaml. 20% is the issue's target for
    FastGen/TGI rows (one figure: no spread to quote)."""
    sc = {"model": "llama-3.1-70b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
          "inference": {"tp": 8, "engine": "tgi", "batch_size": 10, "input_tokens": 10000, "output_tokens": 50}}
    measured = 200_000 / 12.1
    assert estimate_serving(sc).input_tokens_per_s == pytest.approx(measured, rel=0.20)
