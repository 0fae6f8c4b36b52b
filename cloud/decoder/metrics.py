"""Image quality of rebuilt crops: PSNR (dB) and SSIM per crop, from torchmetrics."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

BATCH = 256


def to_tensor(crops: NDArray[np.uint8]) -> Any:
    """(n, s, s, 3) uint8 -> (n, 3, s, s) float32 torch tensor in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0


def per_crop_quality(
    rebuilt: NDArray[np.uint8], original: NDArray[np.uint8]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """PSNR (dB, data range 1) and SSIM (Gaussian 11x11 window) of each crop pair.

    Averages of per-crop values are reported (not the PSNR of the pooled MSE), so one
    badly rebuilt crop counts as one crop.
    """
    import torch
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    if rebuilt.shape != original.shape:
        raise ValueError(f"shapes differ: {rebuilt.shape} vs {original.shape}")
    psnr: list[NDArray[np.float64]] = []
    ssim: list[NDArray[np.float64]] = []
    with torch.inference_mode():
        for i in range(0, len(original), BATCH):
            a = to_tensor(rebuilt[i : i + BATCH])
            b = to_tensor(original[i : i + BATCH])
            p = peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))
            s = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
            assert isinstance(p, torch.Tensor)
            assert isinstance(s, torch.Tensor)
            psnr.append(p.double().numpy())
            ssim.append(s.double().numpy())
    if not psnr:
        return np.zeros(0), np.zeros(0)
    # identical crops give +inf PSNR; cap at 100 dB so means stay finite
    return np.minimum(np.concatenate(psnr), 100.0), np.concatenate(ssim)
