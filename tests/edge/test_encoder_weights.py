"""Building the timm encoder (shared by the edge and the cloud): model_kwargs, weights files with
precise errors, headless loading of a file with a classifier, preprocessing overrides.

Random-init models only (``test_vit``, a 64-d ViT timm registers for tests, and a random-init
MobileNetV2): no pretrained weights are needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.config import TimmEncoderConfig, load_config
from edge.embed import TimmEncoder
from edge.errors import ConfigError, EdgeError, ModelNotFound
from shared.errors import EncoderWeightsMismatch, EncoderWeightsUnreadable
from shared.timm_encoder import build_model, parse_model_kwargs, parse_scalar

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)


def _crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def vit_state() -> dict[str, Any]:
    """The seeded random-init test_vit's headless state dict."""
    return dict(build_model("test_vit", random_init=True).state_dict())


def _save(state: dict[str, Any], path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_model_kwargs_reach_the_model() -> None:
    from timm.layers import Conv2dSame

    plain, same = (
        TimmEncoder(TimmEncoderConfig(name="mobilenetv2_100", random_init=True, model_kwargs=kw))
        for kw in ({}, {"pad_type": "same"})
    )
    # TensorFlow "SAME" padding on the 5 strided convs (the others pad statically)
    assert sum(isinstance(m, Conv2dSame) for m in plain._model.modules()) == 0
    assert sum(isinstance(m, Conv2dSame) for m in same._model.modules()) == 5
    # the same seeded weights, padded otherwise: other embeddings
    crops = _crops(2, 224)
    cos = (plain.embed(crops) * same.embed(crops)).sum(axis=1)
    assert np.all(cos < 0.999)


def test_model_kwargs_are_typed_from_flags_and_refuse_what_semcom_sets() -> None:
    assert parse_model_kwargs(["pad_type=same", "drop_rate=0.1", "depth=2", "flag=true"]) == {
        "pad_type": "same",
        "drop_rate": 0.1,
        "depth": 2,
        "flag": True,
    }
    assert parse_scalar("1e-3") == 0.001
    assert parse_scalar("v1.2") == "v1.2"
    with pytest.raises(ValueError, match="KEY=VALUE, got 'pad_type'"):
        parse_model_kwargs(["pad_type"])
    with pytest.raises(ValueError, match="may not set 'num_classes'"):
        parse_model_kwargs(["num_classes=1000"])
    with pytest.raises(ConfigError, match=r"num_classes.*\(from the command line\)"):
        load_config(
            None, {"source.uri": "x.mp4", "encoder.model_kwargs": {"num_classes": 5}}, environ={}
        )
    environ = {"SEMCOM_EDGE__ENCODER__MODEL_KWARGS__PAD_TYPE": "same"}
    config = load_config(None, {"source.uri": "x.mp4"}, environ=environ)
    assert isinstance(config.encoder, TimmEncoderConfig)
    assert config.encoder.model_kwargs == {"pad_type": "same"}


def test_weights_file_loads_exactly(vit_state: dict[str, Any], tmp_path: Path) -> None:
    path = _save(vit_state, tmp_path / "vit.safetensors")
    random = TimmEncoder(TimmEncoderConfig(name="test_vit", random_init=True))
    loaded = TimmEncoder(TimmEncoderConfig(name="test_vit", weights=path))
    assert not loaded.random_init
    crops = _crops(3, 160)
    np.testing.assert_allclose(loaded.embed(crops), random.embed(crops), atol=1e-6)


def test_a_key_mismatch_is_one_error_listing_the_keys(
    vit_state: dict[str, Any], tmp_path: Path
) -> None:
    state = dict(vit_state)
    state["blocks.0.attn.qkv.weight_renamed"] = state.pop("blocks.0.attn.qkv.weight")
    del state["norm.bias"]
    path = _save(state, tmp_path / "renamed.safetensors")
    with pytest.raises(EdgeError) as info:
        TimmEncoder(TimmEncoderConfig(name="test_vit", weights=path))
    cause = info.value.__cause__
    assert isinstance(cause, EncoderWeightsMismatch)
    assert sorted(cause.missing) == ["blocks.0.attn.qkv.weight", "norm.bias"]
    assert cause.unexpected == ["blocks.0.attn.qkv.weight_renamed"]
    text = str(info.value)
    assert "2 missing key(s): " in text
    assert "blocks.0.attn.qkv.weight" in text
    assert "1 unexpected key(s): blocks.0.attn.qkv.weight_renamed" in text
    assert "--model-kwargs" in text
    assert "pad_type=same" in text
    assert str(path) in text


def test_a_foreign_file_lists_the_first_keys_and_counts(
    vit_state: dict[str, Any], tmp_path: Path
) -> None:
    """A MobileNetV2 file given to a ViT: counts of each kind, only the first ten named."""
    mobilenet = build_model("mobilenetv2_100", random_init=True).state_dict()
    path = _save(dict(mobilenet), tmp_path / "mobilenet.safetensors")
    with pytest.raises(EdgeError) as info:
        TimmEncoder(TimmEncoderConfig(name="test_vit", weights=path))
    cause = info.value.__cause__
    assert isinstance(cause, EncoderWeightsMismatch)
    text = str(info.value)
    assert f"{len(vit_state)} missing key(s)" in text
    assert f"{len(mobilenet)} unexpected key(s)" in text
    assert f"({len(mobilenet) - 10} more)" in text
    assert len(cause.unexpected) == len(mobilenet)
    listed = text.split("unexpected key(s): ")[1].split(", ...")[0].split(", ")
    assert listed == cause.unexpected[:10]


def test_wrong_shapes_are_named_with_both_shapes(vit_state: dict[str, Any], tmp_path: Path) -> None:
    state = dict(vit_state)
    state["norm.weight"] = state["norm.weight"][:32].clone()
    path = _save(state, tmp_path / "narrow.safetensors")
    with pytest.raises(EdgeError) as info:
        TimmEncoder(TimmEncoderConfig(name="test_vit", weights=path))
    assert "1 key(s) of the wrong shape: norm.weight (file [32], model [64])" in str(info.value)
    assert "missing" not in str(info.value)


def test_a_file_with_a_classifier_loads_headless(tmp_path: Path) -> None:
    """The file of a model trained with a 10-class head (saved by torch.save, wrapped as a
    checkpoint with a DataParallel ``module.`` prefix): the head is dropped, the rest loads, and
    the embedding is the classifier's input (the pooled features)."""
    import timm
    import torch

    torch.manual_seed(7)
    classifier = timm.create_model("test_vit", pretrained=False, num_classes=10).eval()
    state = {f"module.{k}": v for k, v in classifier.state_dict().items()}
    assert "module.head.weight" in state
    path = tmp_path / "classifier.pth"
    torch.save({"epoch": 3, "state_dict": state}, path)
    encoder = TimmEncoder(TimmEncoderConfig(name="test_vit", weights=path))
    crops = _crops(2, 160)
    pixels = torch.from_numpy(encoder.preprocess.apply(crops))
    with torch.inference_mode():
        pooled = classifier.forward_head(classifier.forward_features(pixels), pre_logits=True)
    expected = torch.nn.functional.normalize(pooled, dim=1).numpy()
    np.testing.assert_allclose(encoder.embed(crops), expected, atol=1e-5)


def test_unreadable_and_missing_files_are_typed_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(EdgeError, match="cannot be read as a state dict") as info:
        TimmEncoder(TimmEncoderConfig(name="test_vit", weights=garbage))
    assert isinstance(info.value.__cause__, EncoderWeightsUnreadable)
    with pytest.raises(ModelNotFound, match="fix --encoder-weights"):
        TimmEncoder(TimmEncoderConfig(name="test_vit", weights=tmp_path / "absent.pth"))


def test_preprocess_override() -> None:
    default = TimmEncoder(TimmEncoderConfig(name="mobilenetv2_100", random_init=True))
    assert default.preprocess.mean == pytest.approx((0.485, 0.456, 0.406))
    assert (default.preprocess.size, default.preprocess.interpolation) == (224, "bicubic")
    config = load_config(
        None,
        {
            "source.uri": "x.mp4",
            "encoder.name": "mobilenetv2_100",
            "encoder.random_init": True,
            "encoder.preprocess": {"mean": "0.5,0.5,0.5", "std": [0.5, 0.5, 0.5], "size": 192},
            "encoder.preprocess.interpolation": "bilinear",
        },
        environ={},
    )
    assert isinstance(config.encoder, TimmEncoderConfig)
    enc = TimmEncoder(config.encoder)
    assert (enc.preprocess.mean, enc.preprocess.std) == ((0.5,) * 3, (0.5,) * 3)
    assert (enc.preprocess.size, enc.preprocess.interpolation) == (192, "bilinear")
    assert enc.embed(_crops(2, 192)).shape == (2, 1280)
    with pytest.raises(ConfigError, match=r"std.*must be > 0.*SEMCOM_EDGE__ENCODER__PREPROCESS"):
        load_config(
            None,
            {"source.uri": "x.mp4"},
            environ={"SEMCOM_EDGE__ENCODER__PREPROCESS__STD": "0.5,0,0.5"},
        )


def test_the_cloud_builds_the_same_encoder(tmp_path: Path) -> None:
    """Same name, model_kwargs, weights file and preprocessing: the cloud's query encoder and the
    edge's encoder give the same vector for the same crop; a bad file is the cloud's error."""
    from PIL import Image

    from cloud.config import EncoderConfig
    from cloud.encoder import EncoderError, QueryEncoder

    model_kwargs = {"pad_type": "same"}
    state = build_model("mobilenetv2_100", random_init=True, model_kwargs=model_kwargs)
    path = _save(dict(state.state_dict()), tmp_path / "m.safetensors")
    preprocess = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    edge = TimmEncoder(
        TimmEncoderConfig(
            name="mobilenetv2_100", weights=path, model_kwargs=model_kwargs, preprocess=preprocess
        )
    )
    cloud = QueryEncoder(
        EncoderConfig(
            name="mobilenetv2_100", weights=path, model_kwargs=model_kwargs, preprocess=preprocess
        )
    )
    assert (cloud.size, cloud.interpolation) == (edge.preprocess.size, "bicubic")
    np.testing.assert_allclose(cloud.mean, 0.5)
    crops = _crops(2, 224)
    np.testing.assert_allclose(
        cloud.embed([Image.fromarray(c) for c in crops]), edge.embed(crops), atol=1e-5
    )
    with pytest.raises(EncoderError, match=r"do not fit the timm model test_vit.*`encoder`"):
        QueryEncoder(EncoderConfig(name="test_vit", weights=path))
