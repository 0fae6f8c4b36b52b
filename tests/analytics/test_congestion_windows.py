"""The pure parts of the congestion windows: which windows a track's stays touch, one
window's figures, and the level a window changes from (unknown windows passed over)."""

from __future__ import annotations

import pytest

from cloud.analytics.congestion import CongestionThresholds
from cloud.analytics.congestion_store import UNKNOWN_HOLD, WindowRow, previous_level
from cloud.analytics.congestion_windows import Stay, WindowSpec, figures, touched
from cloud.analytics.scene import CongestionRule
from cloud.analytics.store import EventRow
from tests.analytics.scripts import SECOND

W = 60 * SECOND
SPEC = WindowSpec(W, 3600 * SECOND)
RULE = CongestionThresholds.of(CongestionRule(min_occupancy=1.0), "km/h")  # slow 20, jammed 5


def zone_row(kind: str, zone: str, ordinal: int, at_us: int, **details: int) -> EventRow:
    return EventRow(kind, zone, ordinal, at_us, None, None, None, "v", dict(details))


def test_the_windows_a_tracks_stays_touch() -> None:
    rows = [
        zone_row("zone_entry", "a", 0, 50 * SECOND),
        zone_row("zone_exit", "a", 0, 130 * SECOND, entered_us=50 * SECOND),
        zone_row("zone_entry", "a", 1, 200 * SECOND),  # open: until the last sighting
        zone_row("zone_entry", "b", 0, 10 * SECOND),
        zone_row("line_crossing", "gate", 0, 20 * SECOND),
    ]
    got = touched(rows, 250 * SECOND, SPEC)
    assert got == {"a": {0, W, 2 * W, 3 * W, 4 * W}, "b": {0, W, 2 * W, 3 * W, 4 * W}}
    # an exit whose entry is not among the rows: its details hold the entry
    assert touched([zone_row("zone_exit", "a", 3, 70 * SECOND, entered_us=0)], 0, SPEC) == {
        "a": {0, W}
    }
    # a stay open for days touches no window after the longest stay a window counts
    short = WindowSpec(W, 2 * W)
    assert touched([zone_row("zone_entry", "a", 0, 0)], 100 * W, short) == {
        "a": {0, W, 2 * W, 3 * W}
    }


def test_a_windows_figures() -> None:
    stays = [
        Stay(1, -10 * SECOND, 70 * SECOND),  # all window
        Stay(2, 30 * SECOND, 60 * SECOND),  # half of it, ending at its end
        Stay(2, 60 * SECOND, 90 * SECOND),  # the same car again, after the window
        Stay(3, 60 * SECOND, 60 * SECOND),  # nothing
    ]
    speeds = {1: 3.0, 2: 5.0}
    f = figures(stays, speeds, 0, SPEC, RULE)
    assert (f.occupancy, f.vehicles, f.mean_speed, f.level) == (1.5, 2, 4.0, "jammed")
    f = figures(stays, {}, 0, SPEC, RULE)
    assert (f.mean_speed, f.level) == (None, "unknown")
    f = figures(stays, {2: 30.0}, 0, SPEC, RULE)  # the mean of the speeds known
    assert (f.mean_speed, f.level) == (30.0, "free")
    # a stay that began longer than max_stay before the window does not count in it
    f = figures([Stay(1, -2 * W, 2 * W)], speeds, 0, WindowSpec(W, W), RULE)
    assert (f.occupancy, f.vehicles) == (0.0, 0)
    assert figures([Stay(1, -W, 2 * W)], speeds, 0, WindowSpec(W, W), RULE).occupancy == 1.0


def window(level: str) -> WindowRow:
    return WindowRow(W, 2.0, None, "km/h", 2, level, False, "v")


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        ({}, "free"),  # no row: no vehicle, free
        ({-1: "jammed"}, "jammed"),
        ({-1: "unknown", -2: "slow"}, "slow"),  # unknown windows passed over
        ({-1: "unknown", -3: "jammed"}, "free"),  # ... down to a window without a row: free
        ({-i: "unknown" for i in range(1, UNKNOWN_HOLD + 1)} | {-UNKNOWN_HOLD - 1: "slow"}, "slow"),
        ({-i: "unknown" for i in range(1, UNKNOWN_HOLD + 2)} | {-UNKNOWN_HOLD - 2: "slow"}, "free"),
    ],
)
def test_the_level_a_window_changes_from(before: dict[int, str], expected: str) -> None:
    rows = {k * W: window(level) for k, level in before.items()}
    assert previous_level(rows, 0, W) == expected
