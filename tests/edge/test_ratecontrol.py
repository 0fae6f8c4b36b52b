"""Token bucket and codec-ladder controller, on a scripted clock."""

from __future__ import annotations

import pytest

from edge.ratecontrol import LadderController, LadderSettings, TokenBucket, burst_for


def test_token_bucket_enforces_rate_and_burst() -> None:
    bucket = TokenBucket(rate_bps=80_000, burst_bytes=5_000, now=0.0)  # 10 kB/s
    assert bucket.delay(5_000, 0.0) == pytest.approx(0.5)  # it starts empty: no first burst
    assert bucket.delay(5_000, 0.5) == 0.0
    bucket.consume(5_000, 0.5)
    assert bucket.delay(1_000, 0.5) == pytest.approx(0.1)
    assert bucket.available(0.75) == pytest.approx(2_500)
    assert bucket.available(100.0) == 5_000  # never more than the burst
    bucket = TokenBucket(rate_bps=80_000, burst_bytes=5_000, now=0.0)
    sent, t = 0, 0.0
    while True:  # a sender that always waits as told moves 10 kB/s, and no more
        t += bucket.delay(1_000, t)
        if t >= 10.0:
            break
        bucket.consume(1_000, t)
        sent += 1_000
    assert 99_000 <= sent <= 100_000
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0, 1, 0.0)


def test_a_frame_larger_than_the_burst_goes_at_the_rate_not_below_it() -> None:
    # 3 kB frames through a 1 kB bucket: each waits for a full bucket and leaves a debt that
    # the next one pays; the average is the rate (before: each waited 2x too long).
    bucket = TokenBucket(rate_bps=80_000, burst_bytes=1_000, now=0.0)
    sent, t = 0, 0.0
    while True:
        t += bucket.delay(3_000, t)
        if t >= 10.0:
            break
        bucket.consume(3_000, t)
        sent += 3_000
    assert 100_000 - 3_000 <= sent <= 100_000 + 3_000


def test_restart_forgets_unused_budget_but_keeps_a_debt() -> None:
    bucket = TokenBucket(rate_bps=80_000, burst_bytes=5_000, now=0.0)
    assert bucket.available(10.0) == 5_000  # a lull fills the bucket ...
    bucket.restart(10.0)  # ... a new connection does not spend it in one burst
    assert bucket.available(10.0) == 0.0
    bucket.consume(2_000, 10.0)
    bucket.restart(10.0)
    assert bucket.available(10.0) == -2_000


def test_the_default_burst_is_a_second_of_budget() -> None:
    assert burst_for(64_000) == 8_000
    assert burst_for(4_000) == 1024  # 1 s is 500 B: at least 1 KiB
    assert burst_for(1_000_000) == 125_000
    assert burst_for(1_000_000, 4096) == 4096  # configured: as configured


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
