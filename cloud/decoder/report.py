"""Reconstruction report: rebuilt crops against JPEG at the same byte budget.

The edge sends one code per crop (e.g. int8 at 768-d: 772 bytes). The fair pixel baseline is
the same crop as a JPEG no larger than that code: for each crop the highest quality (1-95,
Pillow, optimised Huffman tables, 4:2:0) whose file fits the budget is found by bisection and
checked. JPEG's fixed headers (~300-600 bytes) mean that for small budgets even quality 1 may
not fit; such crops are counted and left out of the JPEG averages (rebuilt crops are then
also reported on the same subset, so the two columns compare the same crops).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from cloud.decoder.metrics import per_crop_quality

MAX_QUALITY: Final = 95


def _jpeg(crop: NDArray[np.uint8], quality: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(crop, "RGB").save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def jpeg_within(crop: NDArray[np.uint8], budget: int) -> tuple[int, bytes] | None:
    """(quality, JPEG bytes) of the best quality whose file is <= ``budget`` bytes, or None."""
    low = _jpeg(crop, 1)
    if len(low) > budget:
        return None
    best = (1, low)
    lo, hi = 2, MAX_QUALITY
    while lo <= hi:  # sizes grow with quality (nearly monotonic): bisect, keep what fits
        mid = (lo + hi) // 2
        data = _jpeg(crop, mid)
        if len(data) <= budget:
            best = (mid, data)
            lo = mid + 1
        else:
            hi = mid - 1
    return best


def decode_jpeg(data: bytes) -> NDArray[np.uint8]:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.uint8)


@dataclass(frozen=True)
class Comparison:
    crops: int
    code_bytes: int
    rebuilt_psnr: float
    rebuilt_ssim: float
    jpeg_fits: int
    """Crops whose JPEG at quality >= 1 fits the budget."""
    jpeg_psnr: float | None
    jpeg_ssim: float | None
    rebuilt_psnr_same_crops: float | None
    rebuilt_ssim_same_crops: float | None
    jpeg_mean_bytes: float | None
    jpeg_mean_quality: float | None
    jpeg_min_bytes_q1: int
    """The smallest quality-1 JPEG of any crop (how far the budget is from fitting)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(x: NDArray[np.float64]) -> float | None:
    return round(float(x.mean()), 4) if len(x) else None


def compare(
    originals: NDArray[np.uint8], rebuilt: NDArray[np.uint8], budget: int
) -> tuple[Comparison, list[NDArray[np.uint8] | None]]:
    """Quality of ``rebuilt`` and of JPEG within ``budget`` bytes, against ``originals``.

    Also returns each crop's decoded JPEG (None where none fits) for the grid.
    """
    jpegs: list[NDArray[np.uint8] | None] = []
    sizes, qualities = [], []
    smallest = 1 << 30
    for crop in originals:
        smallest = min(smallest, len(_jpeg(crop, 1)))
        found = jpeg_within(crop, budget)
        if found is None:
            jpegs.append(None)
            continue
        quality, data = found
        assert len(data) <= budget
        sizes.append(len(data))
        qualities.append(quality)
        jpegs.append(decode_jpeg(data))
    psnr, ssim = per_crop_quality(rebuilt, originals)
    fit = np.array([j is not None for j in jpegs], bool)
    if fit.any():
        decoded = np.stack([j for j in jpegs if j is not None])
        j_psnr, j_ssim = per_crop_quality(decoded, originals[fit])
    else:
        j_psnr = j_ssim = np.zeros(0)
    result = Comparison(
        crops=len(originals),
        code_bytes=budget,
        rebuilt_psnr=round(float(psnr.mean()), 4) if len(psnr) else float("nan"),
        rebuilt_ssim=round(float(ssim.mean()), 4) if len(ssim) else float("nan"),
        jpeg_fits=int(fit.sum()),
        jpeg_psnr=_mean(j_psnr),
        jpeg_ssim=_mean(j_ssim),
        rebuilt_psnr_same_crops=_mean(psnr[fit]),
        rebuilt_ssim_same_crops=_mean(ssim[fit]),
        jpeg_mean_bytes=round(float(np.mean(sizes)), 1) if sizes else None,
        jpeg_mean_quality=round(float(np.mean(qualities)), 2) if qualities else None,
        jpeg_min_bytes_q1=smallest if len(originals) else 0,
    )
    return result, jpegs


def grid_png(
    originals: NDArray[np.uint8],
    rebuilt: NDArray[np.uint8],
    jpegs: list[NDArray[np.uint8] | None],
    *,
    rows: int = 16,
    scale: int = 2,
    title: str = "",
) -> bytes:
    """A PNG with one row per crop: original | rebuilt | JPEG at equal bytes (grey: none fits)."""
    from PIL import Image, ImageDraw

    n = min(rows, len(originals))
    side = originals.shape[1] * scale
    pad, header = 4, 30
    width = 3 * side + 4 * pad
    canvas = Image.new("RGB", (width, header + n * (side + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for col, label in enumerate(("original", "rebuilt", "JPEG <= code bytes")):
        draw.text((pad + col * (side + pad), 16), label, fill=(0, 0, 0))
    if title:
        draw.text((pad, 2), title, fill=(160, 0, 0))
    for r in range(n):
        y = header + r * (side + pad)
        jpeg = jpegs[r]
        cells: list[NDArray[np.uint8] | None] = [originals[r], rebuilt[r], jpeg]
        for col, cell in enumerate(cells):
            x = pad + col * (side + pad)
            if cell is None:
                draw.rectangle((x, y, x + side - 1, y + side - 1), fill=(200, 200, 200))
                draw.text((x + 4, y + side // 2 - 6), "does not fit", fill=(90, 0, 0))
                continue
            tile = Image.fromarray(cell, "RGB").resize((side, side), Image.Resampling.NEAREST)
            canvas.paste(tile, (x, y))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()
