"""Token bucket and codec-ladder controller, on a scripted clock."""

from __future__ import annotations

import pytest

from edge.ratecontrol import LadderController, LadderSettings, TokenBucket


def test_token_bucket_enforces_rate_and_burst() -> None:
    bucket = TokenBucket(rate_bps=80_000, burst_bytes=5_000, now=0.0)  # 10 kB/s
    assert bucket.delay(5_000, 0.0) == 0.0
    bucket.consume(5_000, 0.0)
    assert bucket.delay(1_000, 0.0) == pytest.approx(0.1)
    assert bucket.available(0.25) == pytest.approx(2_500)
    assert bucket.available(100.0) == 5_000  # never more than the burst
    bucket = TokenBucket(rate_bps=80_000, burst_bytes=5_000, now=0.0)
    sent, t = 0, 0.0
    while t < 10.0:  # a sender that always waits as told moves 10 kB/s (+ the first burst)
        wait = bucket.delay(1_000, t)
        t += wait
        bucket.consume(1_000, t)
        sent += 1_000
    assert 100_000 <= sent <= 100_000 + 5_000 + 1_000
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0, 1, 0.0)


RUNGS = ["f16", "int8", "pq32x8"]
SIZES = [1600, 830, 96]  # frame bytes per rung, as on the wire at 768-d


def _simulate(ladder: LadderController, rate_bps: float, embeddings_per_s: float, seconds: float):
    """A fluid queue fed by the ladder's own picks: returns (utilisation, last queue delay)."""
    delivered_Bps = rate_bps / 8
    backlog = 0.0
    sent = 0.0
    dt = 0.25
    t = 0.0
    other = 1_000.0  # counts and boxes, bytes/s
    delay = 0.0
    while t < seconds:
        n = max(1, round(embeddings_per_s * dt * ladder.chattiness))
        offered = sum(SIZES[ladder.pick()] for _ in range(n)) + other * dt * ladder.chattiness
        backlog += offered
        out = min(backlog, delivered_Bps * dt)
        backlog -= out
        if t >= seconds / 2:
            sent += out
        t += dt
        delay = backlog / delivered_Bps
        ladder.update(delay, rate_bps, t, embeddings_per_s * ladder.chattiness, other)
    return sent / (delivered_Bps * seconds / 2), delay


def test_ladder_dithers_between_rungs_to_fill_the_budget() -> None:
    # 40 embeddings/s: f16 offers 2x a 256 kbit/s budget, int8 just over it, pq a tenth.
    ladder = LadderController(RUNGS, LadderSettings(), 0.0, SIZES)
    utilisation, delay = _simulate(ladder, 256_000.0, 40.0, 60.0)
    assert utilisation > 0.95
    assert delay < 1.0
    assert 1.0 < ladder.level < 2.0  # a mix of int8 and pq, neither alone
    picks = [ladder.pick() for _ in range(1000)]
    share = picks.count(2) / len(picks)
    assert abs(share - (ladder.level - 1.0)) < 0.01  # error diffusion, not chance
    assert ladder.chattiness == 1.0
    assert [step[2] for step in ladder.steps][:1] == ["int8"]


def test_ladder_goes_quiet_when_even_the_cheapest_codec_is_too_much() -> None:
    ladder = LadderController(RUNGS, LadderSettings(), 0.0, SIZES)
    _, delay = _simulate(ladder, 16_000.0, 40.0, 60.0)  # 2 kB/s for 4 kB/s of pq
    assert ladder.codec == "pq32x8"
    assert ladder.chattiness < 1.0
    assert ladder.steps[-1][2] == "pq32x8+quiet"
    assert delay < 2.0


def test_ladder_returns_to_the_richest_codec_with_headroom() -> None:
    ladder = LadderController(RUNGS, LadderSettings(), 0.0, SIZES)
    _simulate(ladder, 256_000.0, 40.0, 20.0)
    assert ladder.level > 1.0
    _simulate(ladder, 10_000_000.0, 40.0, 20.0)  # the link got fast
    assert ladder.level == 0.0
    assert ladder.codec == "f16"


def test_ladder_moves_down_for_an_old_frame_even_with_a_small_backlog() -> None:
    # strict priority keeps the least important frames at the back: their age is the delay
    ladder = LadderController(RUNGS, LadderSettings(), 0.0, SIZES)
    for i in range(1, 9):
        ladder.update(3.0, 256_000.0, i * 0.25, 20.0, 1_000.0)  # 20 x f16 = 32 kB/s = budget
    assert ladder.level > 0.3
