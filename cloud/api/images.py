"""Uploaded query images: PNG or JPEG bytes -> an RGB image, or a precise reason why not.

Only the header is read before the size check, so a small file that claims a huge image is
refused before any pixel is decoded. EXIF orientation is applied (phone photos are stored
sideways with a rotation tag).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from PIL import Image

FORMATS: Final = ("PNG", "JPEG")
MAX_PIXELS: Final = 40_000_000
"""Largest accepted image (width x height); far more than an object crop needs."""


class ImageError(ValueError):
    """Bytes that are not a usable PNG or JPEG image."""


def decode_image(data: bytes) -> Image.Image:
    """An RGB image from PNG or JPEG ``data``; :class:`ImageError` otherwise."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        opened = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = opened.size
        if width * height > MAX_PIXELS:
            raise ImageError(f"image of {width}x{height} px exceeds {MAX_PIXELS} px")
        opened.load()
        rgb = ImageOps.exif_transpose(opened).convert("RGB")
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"not a {' or '.join(FORMATS)} image") from None
    except Exception as exc:  # decoders of untrusted bytes raise many types (struct.error, ...)
        raise ImageError(f"the image does not decode: {exc}") from None
    if min(rgb.size) < 1:
        raise ImageError("the image is empty")
    return rgb
