"""Filter masks of the faiss backend's columns: the same rows whichever way they are computed."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.index.columns import _EQUALITY_MAX, _member


@pytest.mark.parametrize("count", [1, 2, 5, _EQUALITY_MAX, _EQUALITY_MAX + 1, 100])
def test_member_is_isin_on_both_sides_of_the_equality_limit(count: int) -> None:
    rng = np.random.default_rng(count)
    column = rng.integers(0, 200, 5_000).astype(np.int32)
    values = tuple(int(v) for v in rng.choice(250, size=count, replace=False))
    values += values[:1]  # a repeated value changes nothing
    assert np.array_equal(_member(column, values), np.isin(column, values))
