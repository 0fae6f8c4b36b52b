"""Boxes in normalised frame coordinates, and the paper's square-crop rule.

On the wire a box is four unsigned 16-bit fixed-point numbers (units of 1/65535 of the frame
width or height: 0.03 px at 2048 px), so a :class:`Box` quantises its coordinates when built and
round-trips exactly.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Final

from shared.errors import InvalidMessage

BOX_UNITS: Final = 65_535
_BOX_STRUCT: Final = struct.Struct("<4H")
BOX_WIRE_BYTES: Final = _BOX_STRUCT.size
#: Side scale of the RoI crop (Onsu et al. 2025, Algorithm 1: S = 2.5).
PAPER_CROP_SCALE: Final = 2.5


def _quantise(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidMessage(name, f"expected a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidMessage(name, f"{v} is not finite")
    if not 0.0 <= v <= 1.0:
        raise InvalidMessage(name, f"{v} is outside the normalised range [0, 1]")
    return round(v * BOX_UNITS) / BOX_UNITS


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box, coordinates normalised to [0, 1] of the frame (x right, y down)."""

    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        for name in ("x1", "y1", "x2", "y2"):
            object.__setattr__(self, name, _quantise(f"Box.{name}", getattr(self, name)))
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise InvalidMessage("Box", f"corners out of order: {self}")

    @classmethod
    def from_pixels(
        cls, x1: float, y1: float, x2: float, y2: float, width: int, height: int
    ) -> Box:
        """Build from pixel corners in a ``width`` x ``height`` frame, clipping to the frame."""
        if width <= 0 or height <= 0:
            raise InvalidMessage("Box", f"frame size must be positive, got {width}x{height}")

        def norm(v: float, size: int) -> float:
            return min(max(v / size, 0.0), 1.0)

        return cls(norm(x1, width), norm(y1, height), norm(x2, width), norm(y2, height))

    def to_pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Corners in pixels of a ``width`` x ``height`` frame."""
        return (self.x1 * width, self.y1 * height, self.x2 * width, self.y2 * height)

    def to_bytes(self) -> bytes:
        """The 8-byte wire form: four little-endian uint16 fixed-point coordinates."""
        return _BOX_STRUCT.pack(
            *(round(v * BOX_UNITS) for v in (self.x1, self.y1, self.x2, self.y2))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Box:
        """The box of an 8-byte wire form; :class:`InvalidMessage` if its corners are out of
        order. Its coordinates are already in range and quantised (k / 65535), so only the
        order is checked here (every received box passes here: the cloud's hot loop)."""
        x1, y1, x2, y2 = _BOX_STRUCT.unpack(data)
        if x2 < x1 or y2 < y1:
            return cls(x1 / BOX_UNITS, y1 / BOX_UNITS, x2 / BOX_UNITS, y2 / BOX_UNITS)  # raises
        box = object.__new__(cls)
        for name, units in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2)):
            object.__setattr__(box, name, units / BOX_UNITS)
        return box


@dataclass(frozen=True, slots=True)
class PixelRegion:
    """A crop region in integer pixels, half-open: columns [x1, x2), rows [y1, y2)."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1


def square_crop_region(
    box_px: tuple[float, float, float, float],
    frame_width: int,
    frame_height: int,
    scale: float = PAPER_CROP_SCALE,
) -> PixelRegion:
    """The RoI crop of a detection, by the paper's Algorithm 1.

    Scale the box's width and height by ``scale``, take a square of side max(scaled w, scaled h)
    centred on the box centre, and clip it to the frame. Clipping follows the paper: near a frame
    edge the region is no longer square (the resize to the encoder input then stretches it).
    The result always holds at least one pixel.
    """
    if frame_width <= 0 or frame_height <= 0:
        raise ValueError(f"frame size must be positive, got {frame_width}x{frame_height}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"crop scale must be a positive number, got {scale}")
    x1, y1, x2, y2 = box_px
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    side = max((x2 - x1) * scale, (y2 - y1) * scale, 1.0)
    half = side / 2.0
    left = min(max(math.floor(cx - half), 0), frame_width - 1)
    top = min(max(math.floor(cy - half), 0), frame_height - 1)
    right = max(min(math.ceil(cx + half), frame_width), left + 1)
    bottom = max(min(math.ceil(cy + half), frame_height), top + 1)
    return PixelRegion(left, top, right, bottom)
