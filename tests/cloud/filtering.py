"""The reference meaning of a :class:`SearchFilter`, for test ground truth (plain numpy)."""

from __future__ import annotations

import numpy as np

from cloud.index.base import SearchFilter


def filter_mask(
    where: SearchFilter | None, cameras: np.ndarray, classes: np.ndarray, ts_us: np.ndarray
) -> np.ndarray:
    """Which rows ``where`` keeps: any of the cameras, any of the classes, from <= ts < to."""
    keep = np.ones(len(ts_us), bool)
    if where is None:
        return keep
    if where.cameras is not None:
        keep &= np.isin(cameras, where.cameras)
    if where.classes is not None:
        keep &= np.isin(classes, where.classes)
    if where.from_us is not None:
        keep &= ts_us >= where.from_us
    if where.to_us is not None:
        keep &= ts_us < where.to_us
    return keep
