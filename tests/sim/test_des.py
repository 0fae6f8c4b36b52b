"""The discrete-event simulation against closed-form cases, and the real rate controller in it."""

from __future__ import annotations

import numpy as np
import pytest

from sim.des import SimSettings, max_cameras, simulate
from sim.profiles import LinkProfile
from sim.strategies import Payload


def _payload(times: np.ndarray, size: int, duration: float, name: str = "p") -> Payload:
    return Payload(
        name, "", times.astype(np.float64), np.full(len(times), size, np.int64), duration, 1
    )


def _periodic(every_s: float, size: int, duration: float) -> Payload:
    return _payload(np.arange(0, duration, every_s), size, duration)


def test_one_camera_constant_rate_latency_is_transmission_plus_propagation() -> None:
    link = LinkProfile(name="fixed", rate_bps=1e6, rtt_ms=100)
    payload = _periodic(0.1, 1_000, 10.0)  # 80 kbit/s on 1 Mbit/s: never queues
    r = simulate(payload, link, SimSettings(duration_s=10.0, stagger=False))
    expected_ms = 1_000 * 8 / 1e6 * 1e3 + 50.0  # 8 ms on the air + half the RTT
    assert r.messages == 100
    assert r.delivered_fraction == 1.0
    for pct in (50, 95, 99):
        assert r.latency_ms(pct) == pytest.approx(expected_ms, abs=1e-6)
    assert r.offered_Bps == pytest.approx(10_000)


def test_md1_mean_queueing_delay_matches_the_closed_form() -> None:
    """Poisson arrivals, deterministic service: W = rho / (2 mu (1 - rho))."""
    lam, size, rate, duration = 50.0, 1_250, 1e6, 300.0
    mu = rate / 8 / size  # 100 messages/s
    rho = lam / mu
    rng = np.random.default_rng(7)
    times = np.cumsum(rng.exponential(1 / lam, int(lam * duration * 1.2)))
    payload = _payload(times[times < duration], size, duration)
    link = LinkProfile(name="md1", rate_bps=rate, rtt_ms=0)
    r = simulate(payload, link, SimSettings(duration_s=duration, stagger=False, drain_s=5))
    waiting = r.mean_latency_s - 1 / mu
    assert waiting == pytest.approx(rho / (2 * mu * (1 - rho)), rel=0.1)


def test_overload_delivers_the_link_rate_and_reports_the_rest_as_missing() -> None:
    link = LinkProfile(name="thin", rate_bps=100_000, rtt_ms=20)
    payload = _periodic(0.04, 1_000, 10.0)  # 200 kbit/s offered on 100 kbit/s
    r = simulate(payload, link, SimSettings(duration_s=10.0, drain_s=5.0, stagger=False))
    assert r.delivered_Bps == pytest.approx(100_000 / 8, rel=0.02)  # goodput within the run
    # 250 kB offered in 10 s; the link carries 12.5 kB/s for 10 s + 5 s of drain
    assert r.delivered_fraction == pytest.approx(0.75, abs=0.02)
    assert r.latency_ms(95) is None  # more than 5 % never arrived: not a finite p95


def test_loss_is_retransmitted_after_an_rtt_and_runs_are_reproducible() -> None:
    link = LinkProfile(name="lossy", rate_bps=2e6, rtt_ms=100, jitter_ms=5, loss=0.1)
    payload = _periodic(0.1, 6_000, 20.0)  # 5 packets per message
    settings = SimSettings(duration_s=20.0, cameras=3, seed=3)
    a = simulate(payload, link, settings)
    b = simulate(payload, link, settings)
    assert a.delivered_fraction == 1.0
    assert a.retransmitted_bytes > 0
    assert np.array_equal(a.latencies_s, b.latencies_s)
    clean = simulate(payload, link.model_copy(update={"loss": 0.0}), settings)
    p99 = a.latency_ms(99)
    clean_p99 = clean.latency_ms(99)
    assert p99 is not None
    assert clean_p99 is not None
    assert p99 > clean_p99 + 90  # a retransmitted message waits at least one more RTT
    c = simulate(payload, link, SimSettings(duration_s=20.0, cameras=3, seed=4))
    assert not np.array_equal(a.latencies_s, c.latencies_s)


def test_cameras_share_the_cell() -> None:
    link = LinkProfile(name="cell", rate_bps=1e6, rtt_ms=10)
    payload = _periodic(0.1, 1_000, 10.0)  # 80 kbit/s each
    one = simulate(payload, link, SimSettings(duration_s=10.0, cameras=1))
    many = simulate(payload, link, SimSettings(duration_s=10.0, cameras=11))
    assert many.offered_Bps == pytest.approx(11 * one.offered_Bps)
    assert many.delivered_fraction == 1.0
    assert (many.latency_ms(99) or 0) > (one.latency_ms(99) or 0)


def test_capacity_search_finds_the_largest_cell_load_within_the_target() -> None:
    link = LinkProfile(name="cell", rate_bps=1e6, rtt_ms=10)
    payload = _periodic(0.1, 1_000, 5.0)  # 80 kbit/s per camera: 11 fit at 90 %
    settings = SimSettings(duration_s=5.0, drain_s=2.0)
    cap = max_cameras(payload, link, settings, target_ms=500.0, limit=100)
    assert cap.cameras == 11
    assert not cap.capped
    tight = max_cameras(payload, link, settings, target_ms=5.0, limit=100)  # below RTT/2
    assert tight.cameras == 0
    assert max_cameras(payload, link, settings, target_ms=500.0, limit=4).capped


def test_the_edge_rate_controller_steps_down_the_ladder_on_a_thin_link() -> None:
    n = 500
    duration = 20.0
    times = np.arange(n) * duration / n  # 25 embeddings/s
    rung_sizes = np.stack([np.full(n, 1_600), np.full(n, 850)], axis=1).astype(np.int64)
    payload = Payload(
        "semcom-ladder",
        "",
        times,
        rung_sizes[:, 0].copy(),
        duration,
        n,
        ("f16", "int8"),
        rung_sizes,
        np.zeros(n, bool),
    )
    thin = LinkProfile(name="thin", rate_bps=200_000, rtt_ms=50)  # f16 needs 320 kbit/s
    r = simulate(payload, thin, SimSettings(duration_s=duration, stagger=False))
    assert r.rung_messages.get("int8", 0) > r.rung_messages.get("f16", 0)
    wide = LinkProfile(name="wide", rate_bps=5e6, rtt_ms=50)
    w = simulate(payload, wide, SimSettings(duration_s=duration, stagger=False))
    assert w.rung_messages == {"f16": n}
