"""Token bucket and codec-ladder controller, on a scripted clock."""

from __future__ import annotations

import itertools

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


def test_ladder_steps_down_under_backlog_and_back_up_when_calm() -> None:
    ladder = LadderController(
        ["f16", "int8", "pq32x8"], LadderSettings(hold_s=5, min_dwell_s=1), now=0.0
    )
    rate = 256_000.0
    assert ladder.update(1_000, rate, 0.0) == "f16"
    # A 200 kB backlog at 256 kbit/s is 6.25 s of queue: step down, once per dwell time.
    assert ladder.update(200_000, rate, 1.0) == "int8"
    assert ladder.update(200_000, rate, 1.5) == "int8"
    assert ladder.update(200_000, rate, 2.1) == "pq32x8"
    assert ladder.chattiness == 1.0
    assert ladder.update(200_000, rate, 3.2) == "pq32x8"  # past the last codec: quieter policy
    assert ladder.chattiness == 0.5
    assert ladder.update(200_000, rate, 4.3) == "pq32x8"  # no further rung
    # Calm (queue delay < 0.25 s) for hold_s before each step up.
    t = 5.0
    seen = []
    while t < 40.0:
        seen.append(ladder.update(0, rate, t))
        t += 0.5
    assert seen[-1] == "f16"
    assert [s[2] for s in ladder.steps] == [
        "int8",
        "pq32x8",
        "pq32x8+quiet",
        "pq32x8",
        "int8",
        "f16",
    ]
    ups = [s[0] for s in ladder.steps[3:]]
    assert all(b - a >= 5.0 for a, b in itertools.pairwise(ups))


def test_ladder_ignores_middling_delay() -> None:
    ladder = LadderController(["f16", "int8"], LadderSettings(), now=0.0)
    for t in range(30):
        ladder.update(32_000, 256_000.0, float(t))  # 1 s of queue: between the water marks
    assert ladder.codec == "f16"
    assert ladder.steps == []
