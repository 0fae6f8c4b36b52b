"""The crop decoder: it learns, its consistency term sees the edges' encoder, checkpoints
record what they decode and refuse other embeddings, the JPEG baseline keeps its budget."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cloud.decoder.checkpoint import load_decoder, read_checkpoint
from cloud.decoder.dataset import CropDataset
from cloud.decoder.errors import (
    CheckpointError,
    CheckpointNotFound,
    DatasetError,
    DecoderMismatch,
)
from cloud.decoder.losses import FrozenEncoder, LossWeights, ReconstructionLoss
from cloud.decoder.metrics import to_tensor
from cloud.decoder.model import CropDecoder, DecoderSpec
from cloud.decoder.report import compare, grid_png, jpeg_within
from cloud.decoder.train import TrainResult, TrainSettings, train
from tests.cloud.decoder_fixtures import synthetic_crops, synthetic_dataset

TINY = "vit_tiny_patch16_224"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run faster on one torch thread, and one thread never waits at an operator
    for a second one that another busy process holds (two shared cores: 10x in our runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frozen() -> FrozenEncoder:
    return FrozenEncoder(TINY, random_init=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Path, CropDataset]:
    out = tmp_path_factory.mktemp("decoder")
    dataset = synthetic_dataset(48)
    settings = TrainSettings(
        epochs=2,
        batch_size=16,
        width=8,
        device="cpu",
        progress=False,
        weights=LossWeights(consistency=0.2, consistency_every=2, consistency_samples=2),
    )
    return train(dataset, out, settings), out, dataset


def test_loss_decreases_on_generated_crops() -> None:
    torch.manual_seed(0)
    dataset = synthetic_dataset(16, dim=48)
    model = CropDecoder(DecoderSpec(48, 64, width=4))
    loss_fn = ReconstructionLoss(LossWeights(consistency=0.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    target = to_tensor(dataset.crops)
    vectors = torch.from_numpy(dataset.embeddings)
    losses = []
    for step in range(25):
        loss, parts = loss_fn(model(vectors), target, vectors, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert set(parts) == {"l1", "ssim"}
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


@pytest.mark.parametrize("size", [128, 224])
def test_other_output_sizes(size: int) -> None:
    with torch.no_grad():
        out = CropDecoder(DecoderSpec(32, size, width=4)).eval()(torch.randn(2, 32))
    assert out.shape == (2, 3, size, size)
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0
    with pytest.raises(ValueError, match="image_size"):
        DecoderSpec(32, 96)


def test_consistency_reencodes_like_the_edge(frozen: FrozenEncoder) -> None:
    """The frozen encoder is the edge's model with timm's preprocessing: the same crop gives
    the edge's embedding, and the term's gradient reaches the decoder, not the encoder."""
    import timm

    from edge.config import TimmEncoderConfig
    from edge.embed import TimmEncoder

    cfg = timm.data.resolve_model_data_config(frozen.model)
    assert frozen.size == cfg["input_size"][-1]
    assert np.allclose(frozen.mean.flatten().numpy(), cfg["mean"])
    assert np.allclose(frozen.std.flatten().numpy(), cfg["std"])
    crops = synthetic_crops(2, size=224)
    edge = TimmEncoder(TimmEncoderConfig(name=TINY, random_init=True, runtime="torch"))
    with torch.no_grad():
        ours = frozen(to_tensor(crops)).numpy()
    assert np.allclose((ours * edge.embed(crops)).sum(1), 1.0, atol=1e-4)

    model = CropDecoder(DecoderSpec(frozen.dim, 64, width=8))
    loss_fn = ReconstructionLoss(
        LossWeights(l1=0, ssim=0, consistency=1.0, consistency_every=1, consistency_samples=1),
        frozen,
    )
    vectors = torch.from_numpy(edge.embed(crops))
    loss, parts = loss_fn(model(vectors), to_tensor(synthetic_crops(2)), vectors, step=0)
    loss.backward()
    assert set(parts) == {"cosine"}
    assert -1.0 <= parts["cosine"] <= 1.0
    assert float(model.project.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in frozen.parameters())
    assert not loss_fn.consistency_due(1) or loss_fn.weights.consistency_every == 1


def test_training_writes_checkpoints_that_say_what_they_decode(
    trained: tuple[TrainResult, Path, CropDataset],
) -> None:
    result, out, dataset = trained
    assert result.best.is_file()
    assert result.last.is_file()
    meta, state, optimizer = read_checkpoint(result.last)
    assert optimizer is not None
    assert "model" not in state
    assert (meta.encoder, meta.embed_dim, meta.random_init) == (TINY, 192, True)
    assert (meta.codec, meta.code_bytes, meta.image_size) == ("int8", 196, 64)
    assert meta.space == f"{TINY}-192-random-init"
    assert meta.epoch == 2
    assert meta.step == 2 * math.ceil(result.train_crops / 16)
    assert math.isfinite(meta.metrics["psnr"])
    assert 0 < meta.metrics["ssim"] <= 1
    assert result.val_crops > 0
    assert result.train_crops + result.val_crops == len(dataset)
    assert [h.epoch for h in result.history] == [1, 2]
    assert "cosine" in result.history[0].parts
    summary = json.loads((out / "train.json").read_text())
    assert summary["best"]["dataset_key"] == "synthetic-v1"
    assert "RANDOM-INIT" in meta.describe()


def test_resume_continues_from_last(trained: tuple[TrainResult, Path, CropDataset]) -> None:
    result, out, dataset = trained
    settings = TrainSettings(
        epochs=3, batch_size=16, width=8, device="cpu", progress=False,
        weights=LossWeights(consistency=0.0),
    )  # fmt: skip
    again = train(dataset, out, settings, resume=True)
    assert [h.epoch for h in again.history] == [3]
    assert read_checkpoint(out / "last.pt")[0].step == again.history[0].step
    assert again.history[0].step > result.history[-1].step
    epochs = [h["epoch"] for h in json.loads((out / "train.json").read_text())["history"]]
    assert epochs == [1, 2, 3]


def test_resume_refuses_another_encoder(
    trained: tuple[TrainResult, Path, CropDataset],
) -> None:
    _, out, _ = trained
    other = synthetic_dataset(16, encoder="vit_small_patch16_224")
    with pytest.raises(DecoderMismatch, match="encoder"):
        train(other, out, TrainSettings(epochs=1, progress=False), resume=True)


def test_load_refuses_mismatches(trained: tuple[TrainResult, Path, CropDataset]) -> None:
    result, _, dataset = trained
    decoder = load_decoder(result.best, encoder=TINY, embed_dim=192, codec="int8")
    crops = decoder.decode(dataset.embeddings[:3])
    assert crops.shape == (3, 64, 64, 3)
    assert crops.dtype == np.uint8
    for kwargs, field in (
        ({"encoder": "vit_small_patch16_224"}, "encoder"),
        ({"embed_dim": 384}, "embedding dim"),
        ({"codec": "f16"}, "codec"),
        ({"random_init": False}, "random-init encoder"),
    ):
        with pytest.raises(DecoderMismatch) as info:
            load_decoder(result.best, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
    with pytest.raises(DecoderMismatch):
        decoder.decode(np.zeros((1, 384), np.float32))


def test_unusable_checkpoints_are_typed_errors(
    tmp_path: Path, trained: tuple[TrainResult, Path, CropDataset]
) -> None:
    with pytest.raises(CheckpointNotFound):
        load_decoder(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not readable"):
        load_decoder(tmp_path / "garbage.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a semcom-decoder"):
        load_decoder(tmp_path / "other.pt")
    data = trained[0].best.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_decoder(tmp_path / "cut.pt")


def test_split_holds_out_whole_objects() -> None:
    dataset = synthetic_dataset(60, objects=10)
    train_idx, val_idx = dataset.split(0.2, seed=3)
    assert len(train_idx) + len(val_idx) == 60
    assert not set(dataset.groups[train_idx]) & set(dataset.groups[val_idx])
    assert len(set(dataset.groups[val_idx])) == 2


def test_dataset_round_trip_and_damage(tmp_path: Path) -> None:
    dataset = synthetic_dataset(8)
    dataset.save(tmp_path / "d.npz")
    back = CropDataset.load(tmp_path / "d.npz")
    assert back.meta == dataset.meta
    assert np.array_equal(back.crops, dataset.crops)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DatasetError):
        CropDataset.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("budget", [350, 500, 772, 4000])
def test_jpeg_stays_within_the_code_budget(budget: int) -> None:
    for crop in synthetic_crops(4, seed=budget):
        found = jpeg_within(crop, budget)
        if found is None:
            continue
        quality, data = found
        assert len(data) <= budget
        assert 1 <= quality <= 95
    assert jpeg_within(synthetic_crops(1)[0], 10**6) is not None
    assert jpeg_within(synthetic_crops(1)[0], 10**6)[0] == 95  # type: ignore[index]


def test_comparison_and_grid() -> None:
    originals = synthetic_crops(6, seed=5)
    rebuilt = np.clip(originals.astype(np.int16) + 12, 0, 255).astype(np.uint8)
    result, jpegs = compare(originals, rebuilt, budget=900)
    assert result.crops == 6
    assert result.code_bytes == 900
    assert result.jpeg_fits == sum(j is not None for j in jpegs) > 0
    assert result.jpeg_mean_bytes is not None
    assert result.jpeg_mean_bytes <= 900
    assert 20 < result.rebuilt_psnr < 40
    none_fit, jpegs = compare(originals, rebuilt, budget=60)
    assert none_fit.jpeg_fits == 0
    assert none_fit.jpeg_psnr is None
    assert none_fit.jpeg_min_bytes_q1 > 60
    grid = Image.open(io.BytesIO(grid_png(originals, rebuilt, jpegs, rows=4, scale=1)))
    assert grid.size[0] == 3 * 64 + 4 * 4
    assert grid.size[1] > 4 * 64
