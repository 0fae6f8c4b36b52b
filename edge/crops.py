"""RoI crops: the paper's square region around each box, resized to the encoder input."""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.geometry import square_crop_region

INTERPOLATION: Final = {
    "bicubic": cv2.INTER_CUBIC,
    "bilinear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
}


def extract_crops(
    image: NDArray[np.uint8],
    boxes_xyxy: NDArray[np.float32],
    size: int,
    scale: float,
    interpolation: str = "bicubic",
) -> NDArray[np.uint8]:
    """(n, size, size, 3) RGB crops of a BGR frame, one per box (S-scaled square, clipped)."""
    height, width = image.shape[:2]
    out = np.empty((len(boxes_xyxy), size, size, 3), np.uint8)
    flag = INTERPOLATION.get(interpolation, cv2.INTER_LINEAR)
    for i, box in enumerate(boxes_xyxy):
        r = square_crop_region(
            (float(box[0]), float(box[1]), float(box[2]), float(box[3])), width, height, scale
        )
        patch = image[r.y1 : r.y2, r.x1 : r.x2]
        shrink = patch.shape[0] > size or patch.shape[1] > size
        resized = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else flag)
        out[i] = resized[:, :, ::-1]  # BGR -> RGB
    return out
