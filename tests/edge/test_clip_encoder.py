"""The edge's open_clip image tower, with RANDOM-INIT weights (no CLIP weights are reachable
here): unit vectors of the model's joint-space width, open_clip's own preprocessing, seeded
weights, and the config's refusals in one clear message each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge.clip_encoder import OpenClipEncoder
from edge.config import load_config
from edge.embed import build_encoder
from edge.encoder_config import OpenClipEncoderConfig
from edge.errors import ConfigError, EdgeError, ModelNotFound

#: the smallest open_clip architecture (43 M parameters, 256-d): about 1 s to build here
MODEL = "ViT-S-32-alt"


def random_init_config(**changes: object) -> OpenClipEncoderConfig:
    return OpenClipEncoderConfig.model_validate({"model": MODEL, "random_init": True, **changes})


@pytest.fixture(scope="module")
def encoder() -> OpenClipEncoder:
    built = build_encoder(random_init_config())
    assert isinstance(built, OpenClipEncoder)
    return built


def crops(n: int = 4, size: int = 224) -> np.ndarray:
    """Distinct square RGB crops: a coloured block on noise."""
    rng = np.random.default_rng(5)
    out = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8) // 3
    for i in range(n):
        out[i, 40 + 10 * i : 150, 30 : 120 + 15 * i] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


def test_random_init_image_tower_embeds_crops_to_unit_vectors(encoder: OpenClipEncoder) -> None:
    import open_clip

    assert encoder.name == f"open_clip:{MODEL}"
    assert (encoder.dim, encoder.runtime, encoder.random_init) == (256, "torch", True)
    assert encoder.dim == open_clip.get_model_config(MODEL)["embed_dim"]
    vectors = encoder.embed(crops())
    assert vectors.shape == (4, 256)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)
    np.testing.assert_allclose(encoder.embed(crops()[:1])[0], vectors[0], atol=1e-5)
    assert encoder.embed(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 256)


def test_preprocessing_is_open_clips_own(encoder: OpenClipEncoder) -> None:
    """Size, mean, std and interpolation come from open_clip's preprocess config, and a crop
    becomes the very tensor open_clip's own evaluation transform makes of it."""
    import open_clip
    from PIL import Image

    model, _, transform = open_clip.create_model_and_transforms(MODEL)
    cfg = open_clip.get_model_preprocess_cfg(model)
    p = encoder.preprocess
    assert (p.size, p.size) == tuple(cfg["size"])
    np.testing.assert_allclose(p.mean, cfg["mean"])
    np.testing.assert_allclose(p.std, cfg["std"])
    assert p.interpolation == cfg["interpolation"] == "bicubic"
    crop = crops(1)[0]
    theirs = transform(Image.fromarray(crop)).numpy()
    np.testing.assert_allclose(p.apply(crop[None])[0], theirs, atol=1e-5)


def test_random_init_weights_are_seeded_and_leave_the_callers_rng_alone(
    encoder: OpenClipEncoder,
) -> None:
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    again = build_encoder(random_init_config(batch_size=3))
    assert torch.equal(torch.random.get_rng_state(), before)
    np.testing.assert_allclose(again.embed(crops()), encoder.embed(crops()), atol=1e-6)


def test_the_config_refuses_onnx_and_missing_weights_in_one_message() -> None:
    base = {"source.uri": "road.mp4", "encoder.type": "open_clip", "encoder.model": MODEL}
    with pytest.raises(ConfigError, match=r"encoder\.open_clip\.runtime.*PyTorch only") as err:
        load_config(None, {**base, "encoder.random_init": True, "encoder.runtime": "onnx"}, {})
    assert "use runtime torch" in str(err.value)
    with pytest.raises(ConfigError, match=r"needs weights: `pretrained`.*`random_init`"):
        load_config(None, base, {})
    config = load_config(None, {**base, "encoder.pretrained": "openai"}, {})
    assert isinstance(config.encoder, OpenClipEncoderConfig)


def test_missing_weights_and_unknown_models_are_typed_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFound, match=r"laion2b_s34b_b79k.*copy ~/\.cache/huggingface"):
        build_encoder(OpenClipEncoderConfig(model="ViT-B-32", pretrained="laion2b_s34b_b79k"))
    with pytest.raises(ModelNotFound, match=r"missing\.bin"):
        build_encoder(OpenClipEncoderConfig(model=MODEL, weights=tmp_path / "missing.bin"))
    with pytest.raises(EdgeError, match="unknown open_clip model 'ViT-Nope'"):
        build_encoder(random_init_config(model="ViT-Nope"))
    with pytest.raises(EdgeError, match=r"no pretrained tag 'nope'.*its tags: none"):
        build_encoder(OpenClipEncoderConfig(model=MODEL, pretrained="nope"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(EdgeError, match=r"junk\.bin.*not ViT-S-32-alt weights"):
        build_encoder(OpenClipEncoderConfig(model=MODEL, weights=junk))


def test_the_encoder_flag_names_an_open_clip_model_as_its_encoder_name_reads() -> None:
    from edge.cli import flag_overrides

    flags = flag_overrides(source="road.mp4", encoder="open_clip:ViT-B-32:laion2b_s34b_b79k")
    config = load_config(None, flags, {}).encoder
    assert isinstance(config, OpenClipEncoderConfig)
    assert (config.model, config.pretrained, config.random_init) == (
        "ViT-B-32",
        "laion2b_s34b_b79k",
        False,
    )
    flags = flag_overrides(
        source="road.mp4", encoder=f"open_clip:{MODEL}", random_init_encoder=True
    )
    config = load_config(None, flags, {}).encoder
    assert isinstance(config, OpenClipEncoderConfig)
    assert (config.model, config.pretrained, config.random_init) == (MODEL, None, True)
