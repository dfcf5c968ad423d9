"""The pipeline-schedule simulator (flopcast.estimate.pipeline): the published closed forms in the
regime they were derived for, and bounds that hold for every schedule and every stage time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopcast.estimate.pipeline import SCHEDULES, chunks_per_rank, refusal, simulate


def uniform(schedule, pp, m, f, b, w, vpp=1, p2p=0.0):
    return simulate(schedule, pp, vpp, m, [f] * pp, [b] * pp, [w] * pp, p2p)


@pytest.mark.parametrize("pp", [2, 4, 8])
@pytest.mark.parametrize("m", [1, 3, 8, 32])
def test_1f1b_bubble_is_p_minus_1_micro_batches(pp, m):
    """1F1B with equal stages: step = (m + p - 1)(F + B + 2 p2p), the bubble (p - 1)(F + B) plus the
    fill's transfers (Narayanan et al. SC'21), for any m, also m < p."""
    f, b, w, c = 1.0, 1.3, 0.8, 0.05
    t = uniform("1f1b", pp, m, f, b, w, p2p=c)
    assert t.step_s == pytest.approx((m + pp - 1) * (f + b + w + 2 * c), rel=1e-12)


@pytest.mark.parametrize("pp,vpp,m", [(2, 2, 4), (4, 2, 8), (4, 3, 12), (8, 4, 16), (4, 2, 4)])
def test_interleaved_bubble_is_p_minus_1_over_v(pp, vpp, m):
    """Interleaved 1F1B with equal stages: bubble = (p - 1)(F + B) / v (Narayanan et al. SC'21)."""
    f, b = 1.0, 2.1
    t = uniform("interleaved", pp, m, f, b, 0.0, vpp=vpp)
    assert t.step_s - m * (f + b) == pytest.approx((pp - 1) * (f + b) / vpp, rel=1e-12)


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 4), (4, 8), (8, 16), (8, 24)])
@pytest.mark.parametrize("f,b,w", [(1, 1, 1), (1, 1.5, 0.7), (1.2, 1, 0.5)])
def test_zb_h1_bubble(pp, m, f, b, w):
    """ZB-H1 with equal stages, m >= p and W <= F: bubble = (p - 1)(F + B - W) (Qi et al. 2024,
    sec. 3.1), B the input-gradient pass."""
    t = uniform("zero_bubble", pp, m, f, b, w)
    assert t.step_s - m * (f + b + w) == pytest.approx((pp - 1) * (f + b - w), rel=1e-12)


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 8), (4, 12), (8, 16), (8, 20)])
@pytest.mark.parametrize("fb,w", [(1, 1), (1, 0.5), (1.4, 0.9)])
def test_dualpipe_bubble_is_the_deepseek_table(pp, m, fb, w):
    """DualPipe with equal stages, F = B (input) and W <= F: bubble = (PP/2 - 1)(F&B + B - 3W)
    (DeepSeek-V3 report Table 2, deepseek-ai/DualPipe README), with B the whole backward and F&B an
    overlapped forward-backward chunk that is no faster than the two in turn (F + B)."""
    t = uniform("dualpipe", pp, m, fb, fb, w)
    full_b = fb + w
    assert t.step_s - m * (2 * fb + w) == pytest.approx((pp / 2 - 1) * (fb + full_b + full_b - 3 * w), rel=1e-12)


@pytest.mark.parametrize("ranks,m", [(2, 4), (4, 8), (4, 10), (8, 16)])
def test_dualpipev_bubble_is_the_deepseek_table(ranks, m):
    """DualPipeV: the same table over PP = 2 ranks stages of half a rank's layers each."""
    f = b = w = 1.0
    t = uniform("dualpipev", ranks, m, f, b, w)
    fc = bc = wc = 0.5
    assert t.step_s - m * 3 == pytest.approx((ranks - 1) * ((fc + bc + wc) + (bc + wc) - 3 * wc), rel=1e-12)


@pytest.mark.parametrize("schedule,pp,peaks", [
    ("1f1b", 4, (4, 3, 2, 1)), ("dualpipe", 4, (5, 5, 5, 5)), ("dualpipev", 4, (4.5,) * 4)])
def test_in_flight_micro_batches(schedule, pp, peaks):
    """1F1B rank r holds p - r micro-batches; DualPipe PP + 1 chunks on every rank and DualPipeV
    PP + 1 chunks of half a rank each (DeepSeek-V3 report Table 2 and the DualPipe README)."""
    assert uniform(schedule, pp, 16, 1, 1, 1).peak_inflight == peaks


def test_interleaved_first_rank_holds_korthikanti_chunks():
    """Interleaved rank 0 holds 2(p - 1) + (v - 1) p + 1 chunks (Korthikanti et al. 2022, 4.2.3)."""
    pp, vpp = 4, 2
    t = uniform("interleaved", pp, 16, 1, 1, 0, vpp=vpp)
    assert t.peak_inflight[0] * vpp == 2 * (pp - 1) + (vpp - 1) * pp + 1


def test_published_constraints_are_refused():
    """DualPipe needs an even pp and an even m >= 2 pp, DualPipeV m >= 2 pp (deepseek-ai/DualPipe
    asserts); Megatron's interleaved schedule m a multiple of pp."""
    assert "DualPipe" in refusal("dualpipe", 4, 1, 1)
    assert refusal("dualpipe", 4, 1, 7) and refusal("dualpipe", 3, 1, 12) and refusal("dualpipe", 4, 1, 6)
    assert refusal("dualpipe", 4, 1, 8) is None
    assert refusal("dualpipev", 4, 1, 7) and refusal("dualpipev", 4, 1, 8) is None
    assert refusal("interleaved", 4, 2, 6) and refusal("interleaved", 4, 2, 8) is None
    with pytest.raises(ValueError, match="DualPipe"):
        uniform("dualpipe", 4, 1, 1, 1, 1)


@st.composite
def scenarios(draw):
    schedule = draw(st.sampled_from(SCHEDULES))
    pp = draw(st.sampled_from([2, 4, 6] if schedule == "dualpipe" else [1, 2, 3, 4, 5] if schedule in (
        "1f1b", "gpipe") else [2, 3, 4, 5]))
    vpp = draw(st.integers(2, 3)) if schedule == "interleaved" else 1
    m = draw(st.integers(1, 20))
    if schedule == "interleaved":
        m = pp * draw(st.integers(1, 4))
    if schedule in ("dualpipe", "dualpipev"):
        m = max(m + m % 2, 2 * pp)
    times = st.floats(0.05, 3.0)
    f = draw(st.lists(times, min_size=pp, max_size=pp))
    b = draw(st.lists(times, min_size=pp, max_size=pp))
    w = draw(st.lists(st.floats(0.0, 2.0), min_size=pp, max_size=pp))
    return schedule, pp, vpp, m, f, b, w, draw(st.floats(0.0, 0.5))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_step_bounds_for_every_schedule(case):
    """For every schedule and stage times: step >= one micro-batch's forward through every stage and
    backward (input gradients) back with its transfers; step >= the busiest rank's work and
    transfers; every rank holds between 1 and m vpp chunks; the critical path's counts times the
    stage times give the step."""
    schedule, pp, vpp, m, f, b, w, c = case
    assert refusal(schedule, pp, vpp, m) is None
    t = simulate(schedule, pp, vpp, m, f, b, w, c)
    n = chunks_per_rank(schedule, vpp)
    # a micro-batch passes every rank's chunks once each way (a DualPipe one each rank's one stage)
    path = sum(f[r] + b[r] + 2 * c * n for r in range(pp))
    assert t.step_s >= path * (1 - 1e-12)
    busiest = max(m * (f[r] + b[r] + w[r]) + 2 * m * n * c for r in range(pp))
    assert t.step_s >= busiest * (1 - 1e-12)
    for peak in t.peak_inflight:
        assert 1 <= peak * n <= m * n
    summed = t.path_sends * c + sum(t.path_f[r] * f[r] + t.path_b[r] * b[r] + t.path_w[r] * w[r] for r in range(pp))
    assert summed == pytest.approx(t.step_s, rel=1e-9)


def test_dualpipe_one_micro_batch_is_not_faster_than_1f1b():
    """The issue's case: DualPipe at pp 4 with one micro-batch is refused (it was charged a bubble
    smaller than one micro-batch's pass through four stages)."""
    assert refusal("dualpipe", 4, 1, 1) is not None
    one = uniform("1f1b", 4, 1, 1, 1, 1)
    assert one.step_s == pytest.approx(4 * 3)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["1f1b", "interleaved", "zero_bubble", "zb_h2", "dualpipe", "dualpipev", "gpipe"]),
       st.sampled_from([2, 4]), st.integers(0, 30), st.data())
def test_long_steps_extrapolate_the_steady_state(schedule, pp, extra, data):
    """The estimator's cached timeline of many micro-batches (two short ones extended linearly once
    the steady state is reached, else simulated whole) equals the whole simulation."""
    from flopcast.estimate.training.schedule import _period, _steady_m, _timeline

    vpp = 2 if schedule == "interleaved" else 1
    q = _period(schedule, pp)
    m = _steady_m(schedule, pp) + q * (3 + extra)
    times = st.floats(0.1, 2.0)
    f, b, w = (tuple(data.draw(st.lists(times, min_size=pp, max_size=pp))) for _ in range(3))
    full = simulate(schedule, pp, vpp, m, f, b, w, 0.01)
    assert _timeline(schedule, pp, vpp, m, f, b, w, 0.01).step_s == pytest.approx(full.step_s, rel=1e-9)
