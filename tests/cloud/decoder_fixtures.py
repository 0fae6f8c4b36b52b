"""Generated material for the decoder tests: synthetic crops, embeddings that describe them.

The crops are coloured boxes on a shaded background; the "embedding" is a fixed random
projection of an 8x8 thumbnail, normalised like an encoder's output, so a decoder can learn
to invert it in a few steps (a random-init ViT would need many more).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from cloud.decoder.dataset import CropDataset, DatasetMeta
from shared.vectors import create_codec


def synthetic_crops(n: int, size: int = 64, seed: int = 0) -> NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = rng.uniform(40, 160, 3).astype(np.float32)
        img = base[None, None, :] + 60 * ramp[:, None, None] * rng.uniform(-1, 1, 3)
        x0, y0 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(size // 4, size // 2, 2)
        img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, 3)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def describe_crops(crops: NDArray[np.uint8], dim: int, seed: int = 1) -> NDArray[np.float32]:
    """Unit vectors: a fixed random projection of each crop's 8x8 thumbnail."""
    n, size = len(crops), crops.shape[1]
    k = size // 8
    thumbs = crops.reshape(n, 8, k, 8, k, 3).mean(axis=(2, 4)).reshape(n, -1) / 255.0 - 0.5
    proj = np.random.default_rng(seed).standard_normal((thumbs.shape[1], dim)).astype(np.float32)
    x = thumbs.astype(np.float32) @ proj
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), np.float32)


def synthetic_dataset(
    n: int = 48,
    dim: int = 192,
    size: int = 64,
    *,
    encoder: str = "vit_tiny_patch16_224",
    random_init: bool = True,
    codec: str = "int8",
    objects: int = 8,
) -> CropDataset:
    """``n`` crops in ``objects`` groups, embeddings through ``codec`` like the builder's."""
    crops = synthetic_crops(n, size)
    c = create_codec(codec, dim)
    vectors = c.decode(c.encode(describe_crops(crops, dim)))
    meta = DatasetMeta(
        encoder=encoder,
        embed_dim=dim,
        random_init=random_init,
        codec=c.codec_id,
        codec_hash=c.content_hash.hex(),
        code_bytes=c.code_bytes,
        image_size=size,
        crop_scale=2.5,
        detector="synthetic",
        key="synthetic-v1",
        codec_spec=codec,
    )
    groups = np.arange(n, dtype=np.int64) % objects
    return CropDataset(crops, vectors, groups, np.full(n, 2, np.int64), meta)
