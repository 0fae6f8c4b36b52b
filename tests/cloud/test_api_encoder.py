"""The query encoder: the edges' model and preprocessing, seeded random weights, unit vectors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cloud.config import EncoderConfig
from cloud.encoder import EncoderError, QueryEncoder, WeightsNotFound
from cloud.store import space_name
from tests.cloud.api_fixtures import image_png

TINY = "vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def encoder() -> QueryEncoder:
    return QueryEncoder(EncoderConfig(name=TINY, random_init=True))


def _images() -> list[Image.Image]:
    return [Image.open(io.BytesIO(image_png(seed))) for seed in (1, 2, 3)]


def test_space_and_preprocessing_come_from_the_model(encoder: QueryEncoder) -> None:
    assert (encoder.dim, encoder.size, encoder.interpolation) == (192, 224, "bicubic")
    assert encoder.space == space_name(TINY, 192, True) == f"{TINY}-192-random-init"
    np.testing.assert_allclose(encoder.mean, [0.5, 0.5, 0.5])
    pixels = encoder.preprocess(_images())
    assert pixels.shape == (3, 3, 224, 224)
    assert pixels.dtype == np.float32
    assert pixels.min() >= -1.0  # (x - 0.5) / 0.5 of 0-1 pixels
    assert pixels.max() <= 1.0


def test_vectors_are_unit_norm_and_per_image(encoder: QueryEncoder) -> None:
    vectors = encoder.embed(_images())
    assert vectors.shape == (3, 192)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
    one = encoder.embed(_images()[:1])
    np.testing.assert_allclose(one[0], vectors[0], atol=1e-5)  # batching changes nothing
    assert encoder.embed([]).shape == (0, 192)


def test_random_init_weights_are_the_same_in_every_process(encoder: QueryEncoder) -> None:
    """Seeded in a forked RNG: a second build agrees, and the caller's RNG is untouched."""
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    again = QueryEncoder(EncoderConfig(name=TINY, random_init=True))
    assert torch.equal(torch.random.get_rng_state(), before)
    np.testing.assert_array_equal(again.embed(_images()), encoder.embed(_images()))


def test_missing_weights_and_unknown_models_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFound, match=r"encoder\.weights"):
        QueryEncoder(EncoderConfig(name=TINY, weights=tmp_path / "missing.safetensors"))
    with pytest.raises(EncoderError, match="unknown timm model"):
        QueryEncoder(EncoderConfig(name="no_such_model_v9", random_init=True))
