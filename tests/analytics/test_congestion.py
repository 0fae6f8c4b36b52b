"""The congestion rule: occupancy and mean speed to a level."""

from __future__ import annotations

import pytest

from cloud.analytics.congestion import (
    CongestionThresholds,
    congestion_level,
    mean_speed,
    occupancy,
)
from cloud.analytics.scene import CongestionRule
from tests.analytics.scripts import SECOND

KMH = CongestionThresholds.of(CongestionRule(), "km/h")


def test_occupancy_is_the_time_averaged_count() -> None:
    window = (0, 10 * SECOND)
    # one vehicle all along, one for half the window, one before it, one open past its end
    stays = [
        (-SECOND, 11 * SECOND),
        (2 * SECOND, 7 * SECOND),
        (-5 * SECOND, -SECOND),
        (8 * SECOND, 20 * SECOND),
    ]
    assert occupancy(stays, *window) == pytest.approx(1 + 0.5 + 0 + 0.2)
    assert occupancy([], *window) == 0.0
    with pytest.raises(ValueError, match="positive length"):
        occupancy(stays, 5, 5)


def test_mean_speed() -> None:
    assert mean_speed([10.0, 20.0, 30.0]) == 20.0
    assert mean_speed([]) is None


@pytest.mark.parametrize(
    ("occ", "speed", "level"),
    [
        (0.5, 2.0, "free"),  # few vehicles: free whatever their speed
        (0.5, None, "free"),
        (3.0, None, "unknown"),
        (3.0, 40.0, "free"),
        (3.0, 20.0, "free"),  # at slow_below: not slow yet
        (3.0, 19.9, "slow"),
        (3.0, 5.0, "slow"),
        (3.0, 4.9, "jammed"),
        (3.0, 0.0, "jammed"),
    ],
)
def test_levels_in_kmh(occ: float, speed: float | None, level: str) -> None:
    assert congestion_level(occ, speed, KMH) == level


def test_thresholds_by_unit_and_rule() -> None:
    assert (KMH.min_occupancy, KMH.slow_below, KMH.jammed_below) == (2.0, 20.0, 5.0)
    widths = CongestionThresholds.of(CongestionRule(), "image_widths/s")
    assert (widths.slow_below, widths.jammed_below) == (0.2, 0.05)
    tuned = CongestionThresholds.of(
        CongestionRule(min_occupancy=4, slow_below=30, jammed_below=10), "km/h"
    )
    assert congestion_level(3.9, 0.0, tuned) == "free"
    assert congestion_level(4.0, 25.0, tuned) == "slow"
    assert congestion_level(4.0, 9.0, tuned) == "jammed"


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="jammed_below must be below slow_below"):
        CongestionRule(slow_below=5, jammed_below=10)
    with pytest.raises(ValueError, match="give both"):
        CongestionRule(jammed_below=10)
