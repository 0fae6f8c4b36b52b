"""A scripted stand-in for YOLO on the synthetic videos of ``tests/conftest.py``."""

from __future__ import annotations

import numpy as np

from edge.detect import FrameBoxes


class GroundTruthDetector:
    """Reports the two moving rectangles ``tests.conftest.write_video`` draws, tracked.

    It stands in for the detector only (synthetic frames hold no real objects); everything
    downstream (policy, crops, the random-init ViT, codec, framing) stays real.
    """

    name = "ground-truth"

    def __init__(self) -> None:
        self.i = 0

    def track(self, image: np.ndarray) -> FrameBoxes:
        x = 10 + 6 * self.i
        w = image.shape[1]
        self.i += 1
        return FrameBoxes(
            np.asarray([[x, 60, x + 70, 110], [w - x - 60, 120, w - x, 170]], np.float32),
            np.asarray([2, 7]),
            np.asarray([0.9, 0.8], np.float32),
            np.asarray([1, 2]),
        )

    def reset(self) -> None:
        self.i = 0
