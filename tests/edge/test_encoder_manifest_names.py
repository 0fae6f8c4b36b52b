"""An encoder named by the models manifest (``--encoder vit-s16``) is the timm model it stands
for: the entry's timm id, its provisioned file, its model_kwargs and preprocessing; the edge and
the cloud's query encoder resolve it alike, so they share one space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloud.config import EncoderConfig
from cloud.encoder import QueryEncoder, WeightsNotFound
from edge.config import TimmEncoderConfig
from edge.embed import TimmEncoder, resolve_model_name
from edge.errors import EdgeError
from shared.models import ModelStore

VIT_S16 = "vit_small_patch16_224.augreg_in21k_ft_in1k"  # the manifest entry vit-s16's timm id


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    monkeypatch.setenv("SEMCOM_MODELS_DIR", str(tmp_path / "models"))
    return ModelStore()


def _random_vit_s16_file(tmp_path: Path) -> Path:
    """A state dict of the ViT-S/16 architecture (random init, seed 7: not the encoder's own
    random-init seed, so an encoder that ignored the file would embed differently)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(7)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path / "vit_s16_random_seed7.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_a_name_not_provisioned_says_what_to_run(store: ModelStore) -> None:
    with pytest.raises(EdgeError, match=r"semcom models pull vit-s16"):
        TimmEncoder(TimmEncoderConfig(name="vit-s16", runtime="torch"))
    with pytest.raises(WeightsNotFound, match=r"semcom models pull vit-s16"):
        QueryEncoder(EncoderConfig(name="vit-s16"))


def test_a_manifest_name_of_another_library_is_refused(store: ModelStore) -> None:
    with pytest.raises(EdgeError, match=r"open_clip"):
        resolve_model_name(TimmEncoderConfig(name="clip-vit-b32-image"))


def test_manifest_name_and_explicit_flags_build_the_same_encoder_and_space(
    store: ModelStore, tmp_path: Path
) -> None:
    weights = _random_vit_s16_file(tmp_path)
    store.import_file(weights, "vit-s16")
    by_name = TimmEncoder(TimmEncoderConfig(name="vit-s16", runtime="torch"))
    by_flags = TimmEncoder(
        TimmEncoderConfig(
            name=VIT_S16,
            weights=weights,
            runtime="torch",
            preprocess={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        )
    )
    assert (by_name.name, by_name.dim, by_name.random_init) == (VIT_S16, 384, False)
    assert by_name.preprocess == by_flags.preprocess
    crops = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(by_name.embed(crops), by_flags.embed(crops), atol=1e-5)
    random = TimmEncoder(TimmEncoderConfig(name=VIT_S16, random_init=True, runtime="torch"))
    assert np.abs(random.embed(crops) - by_name.embed(crops)).max() > 1e-2  # the file counts
    # The cloud resolves the same name to the same model, space and preprocessing.
    query = QueryEncoder(EncoderConfig(name="vit-s16"))
    assert query.name == VIT_S16
    assert query.space == f"{VIT_S16}-384"
    assert query.size == by_name.preprocess.size
    np.testing.assert_allclose(query.mean, by_name.preprocess.mean)


def test_the_users_own_values_override_the_entrys(store: ModelStore, tmp_path: Path) -> None:
    store.import_file(_random_vit_s16_file(tmp_path), "vit-s16")
    config = resolve_model_name(
        TimmEncoderConfig(name="vit-s16", preprocess={"interpolation": "bilinear", "size": 160})
    )
    assert config.name == VIT_S16
    assert config.preprocess.interpolation == "bilinear"
    assert config.preprocess.size == 160
    assert config.preprocess.mean == (0.5, 0.5, 0.5)  # from the entry
    assert config.weights is not None
    assert config.weights.is_file()


@pytest.mark.realdata
def test_the_teams_mobilenetv2_by_its_manifest_name(store: ModelStore, shared_data: Path) -> None:
    """The coral MobileNetV2, imported, is `mobilenetv2_100` with pad_type=same and mean = std =
    0.5 by name alone."""
    file = shared_data / "weights/mobilenet_v2_imagenet/mobilenetv2_100_coral_dequant.safetensors"
    store.import_file(file, "mobilenetv2_100_coral")
    config = resolve_model_name(TimmEncoderConfig(name="mobilenetv2_100_coral"))
    assert config.name == "mobilenetv2_100"
    assert config.model_kwargs == {"pad_type": "same"}
    assert config.preprocess.mean == config.preprocess.std == (0.5, 0.5, 0.5)
    encoder = TimmEncoder(config.model_copy(update={"runtime": "torch"}))
    assert encoder.dim == 1280
    assert not encoder.random_init
