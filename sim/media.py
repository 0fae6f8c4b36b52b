"""What sending pixels would cost: H.264 and JPEG sizes of the frames a camera sees.

The baselines semcom is compared with (``semcom demo``, the simulator's payload strategies):

- **raw**: ``width * height * 3`` bytes per frame (8-bit RGB);
- **H.264**: the frames encoded with libx264 (PyAV) at a constant rate factor, as a camera
  streaming video to the cloud would send them; the size is the Annex B bitstream (every
  packet, SPS/PPS included), without a container or transport headers;
- **JPEG**: one frame compressed on its own (Pillow), as an MJPEG camera or a per-frame upload.

Frames are ``H x W x 3`` ``uint8`` arrays in **BGR** order (OpenCV's, and the edge's
:class:`~edge.capture.Frame`). libx264 needs even dimensions for 4:2:0 chroma: an odd last
row or column is left out of the H.264 measurement (at most one pixel line of each frame).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from sim.errors import MeasureError

if TYPE_CHECKING:
    from av.video.codeccontext import VideoCodecContext
    from av.video.frame import VideoFrame

DEFAULT_CRF: Final = 28
"""libx264 constant rate factor of the H.264 baseline (lower: better quality, more bytes)."""
DEFAULT_PRESET: Final = "medium"
"""libx264's own default speed/size trade-off."""

Image = NDArray[np.uint8]


class MediaError(MeasureError):
    """A frame that cannot be measured (wrong shape or dtype, or a size change mid-stream)."""


def raw_bytes(width: int, height: int, frames: int = 1) -> int:
    """Uncompressed 8-bit RGB: ``width * height * 3`` bytes per frame."""
    return width * height * 3 * frames


def _check(frame: Image) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise MediaError(
            f"expected an H x W x 3 uint8 BGR frame, got shape {frame.shape} dtype {frame.dtype}"
        )
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise MediaError(f"frame of {frame.shape[1]}x{frame.shape[0]} px is too small to encode")


class H264Meter:
    """Encodes frames one by one with libx264 and counts the bitstream's bytes.

    Streaming, so a caller can measure a long or live source without keeping its frames; every
    frame must have the size of the first. Not thread-safe: feed it from one thread.
    """

    def __init__(self, fps: float, crf: int = DEFAULT_CRF, *, preset: str = DEFAULT_PRESET) -> None:
        if not fps > 0:
            raise MediaError(f"fps must be positive, got {fps}")
        if not 0 <= crf <= 51:
            raise MediaError(f"crf must be 0-51 (libx264), got {crf}")
        self.fps = fps
        self.crf = crf
        self.preset = preset
        self.frames = 0
        self.bytes = 0
        self.width = 0
        self.height = 0
        self._context: VideoCodecContext | None = None
        self._closed = False

    def _open(self, width: int, height: int) -> VideoCodecContext:
        from av.video.codeccontext import VideoCodecContext

        rate = Fraction(self.fps).limit_denominator(1001)
        context = VideoCodecContext.create("libx264", "w")
        context.width = width
        context.height = height
        context.pix_fmt = "yuv420p"
        context.framerate = rate
        context.time_base = 1 / rate
        context.options = {"crf": str(self.crf), "preset": self.preset}
        return context

    def add(self, frame: Image) -> None:
        """Encode one BGR frame (the size of the first one)."""
        import av

        if self._closed:
            raise MediaError("this meter is closed")
        _check(frame)
        height, width = frame.shape[0] & ~1, frame.shape[1] & ~1
        if self._context is None:
            self._context = self._open(width, height)
            self.width, self.height = int(frame.shape[1]), int(frame.shape[0])
        elif (frame.shape[1], frame.shape[0]) != (self.width, self.height):
            raise MediaError(
                f"frame {self.frames} is {frame.shape[1]}x{frame.shape[0]} px, the stream "
                f"{self.width}x{self.height} px"
            )
        image = np.ascontiguousarray(frame[:height, :width])
        video_frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        video_frame.pts = self.frames
        self._count(video_frame)
        self.frames += 1

    def _count(self, frame: VideoFrame | None) -> None:
        assert self._context is not None
        for packet in self._context.encode(frame):
            self.bytes += packet.size

    def close(self) -> int:
        """Flush the encoder; returns the total H.264 bytes of every frame added."""
        if not self._closed and self._context is not None:
            self._count(None)
        self._closed = True
        return self.bytes


def h264_bytes(
    frames: Iterable[Image],
    fps: float,
    crf: int = DEFAULT_CRF,
    *,
    preset: str = DEFAULT_PRESET,
) -> int:
    """Bytes of ``frames`` (BGR, all the same size) as one H.264 stream at ``fps`` frames/s."""
    meter = H264Meter(fps, crf, preset=preset)
    for frame in frames:
        meter.add(frame)
    return meter.close()


def jpeg_bytes(frame: Image, quality: int = 75) -> int:
    """Bytes of one BGR frame as a baseline JPEG (Pillow, 4:2:0) at ``quality`` (1-95)."""
    from PIL import Image as PilImage

    if not 1 <= quality <= 95:
        raise MediaError(f"JPEG quality must be 1-95 (Pillow), got {quality}")
    _check(frame)
    buffer = io.BytesIO()
    PilImage.fromarray(np.ascontiguousarray(frame[..., ::-1])).save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.getbuffer().nbytes
