"""The replay report's ack-latency histogram: mergeable across edges, 1 % resolution."""

from __future__ import annotations

import numpy as np

from edge.replay import latency_histogram


def test_latency_histogram_rounds_to_three_digits_and_counts() -> None:
    hist = latency_histogram(np.array([1.234, 1.2341, 12.5, 987.6, 12_345.0, 0.05]))
    assert hist == {"0.05": 1, "1.23": 2, "12.5": 1, "988": 1, "12300": 1}
    assert list(hist) == sorted(hist, key=float)
