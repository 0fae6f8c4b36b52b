"""The pretrained MobileNetV2 keeps meaning on real crops, through the edge's own code.

Crops come from the five shared clips through the edge's detector (the int8 YOLO11n ONNX at
320 px), its tracker (ByteTrack) and its crop rule (the S = 2.5 square, resized to the encoder's
input), every 6th frame; they are embedded by :func:`edge.embed.build_encoder` with the encoder
config an operator writes for this file (``pad_type=same``, mean = std = 0.5), in the runtime
the edge picks by default.

1. For each crop, the nearest neighbour among the crops of OTHER tracks has its YOLO class:
   0.852 measured here on 1,540 crops of 122 tracks (majority class 0.573; the team measured
   0.88 on 2,321 crops, majority 0.58).
2. That bar alone does not need meaning: the S = 2.5 crop is mostly background and a crop's
   nearest other track is mostly of the same clip and scene, so the seeded random-init twin
   scores 0.808 on it. Across clips it falls behind: the nearest crop from ANOTHER CLIP has the
   query's class for 0.575 of crops with the pretrained weights and 0.331 with random ones
   (persons occur in one clip only, which caps this figure), so the pretrained one must lead by
   0.15.

Neither figure catches wrong preprocessing (ImageNet mean/std: 0.842 and 0.569; no pad_type:
0.847 and 0.527): car / bus / truck / person is too coarse for it. The ImageNet stills do (the
second test): top-1 of the file's own classifier on the edge's features falls from 21/24 to
13/24 and 19/24 (docs/architecture.md, "Encoder").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from edge.config import CropConfig, DetectorConfig, SourceConfig, TimmEncoderConfig
from edge.embed import Encoder, build_encoder

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.filterwarnings(
        "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
    ),
]

WEIGHTS = Path("weights/mobilenet_v2_imagenet/mobilenetv2_100_coral_dequant.safetensors")
DETECTOR = Path("weights/yolo11n_int8_coco_320.onnx")
CLIPS = (
    "cars_kraten.mp4",
    "cars_gorknnlite.mp4",
    "highway_reckon762.mp4",
    "traffic_pruthi.mp4",
    "people_walking_gorknnlite.mp4",
)
STRIDE = 6  # every 6th frame goes to the detector and tracker
MIN_AGREEMENT = 0.80
MIN_LEAD_OVER_RANDOM = 0.15
CLIP_STRIDE = 1_000_000  # track ids of clip k are k * CLIP_STRIDE + the tracker's id


@dataclass(frozen=True)
class Sample:
    crops: NDArray[np.uint8]  # (n, size, size, 3) RGB, as the edge embeds them
    classes: NDArray[np.int64]  # YOLO (COCO) class of each crop's box
    tracks: NDArray[np.int64]  # unique across clips


def pretrained_config(data: Path, **overrides: object) -> TimmEncoderConfig:
    """What an operator writes for the shared MobileNetV2 file (see PROVENANCE.md)."""
    base: dict[str, object] = {
        "name": "mobilenetv2_100",
        "weights": data / WEIGHTS,
        "model_kwargs": {"pad_type": "same"},
        "preprocess": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        "threads": 2,
        "batch_size": 32,
    }
    return TimmEncoderConfig.model_validate({**base, **overrides})


def tracked_crops(data: Path, encoder: Encoder) -> Sample:
    """Crops of tracked road users: the edge's source, detector, tracker and crop rule."""
    from edge.capture import open_source
    from edge.crops import extract_crops
    from edge.detect import Detector

    detector = Detector(DetectorConfig(model=str(data / DETECTOR), imgsz=320))
    p = encoder.preprocess
    scale = CropConfig().scale
    crops, classes, tracks = [], [], []
    for clip_index, clip in enumerate(CLIPS):
        detector.reset()
        source = open_source(SourceConfig(uri=str(data / "videos" / clip), pace=False))
        for frame in source.frames(threading.Event()):
            if frame.index % STRIDE:
                continue
            boxes = detector.track(frame.image)
            kept = boxes.track_ids > 0  # tracked objects only
            if not kept.any():
                continue
            crops.append(
                extract_crops(frame.image, boxes.xyxy[kept], p.size, scale, p.interpolation)
            )
            classes.append(boxes.class_ids[kept])
            tracks.append(clip_index * CLIP_STRIDE + boxes.track_ids[kept])
    return Sample(np.concatenate(crops), np.concatenate(classes), np.concatenate(tracks))


def agreement(
    vectors: NDArray[np.float32], classes: NDArray[np.int64], groups: NDArray[np.int64]
) -> float:
    """Share of crops whose nearest neighbour (cosine) from another group has their class."""
    similarity = vectors @ vectors.T
    similarity[groups[:, None] == groups[None, :]] = -np.inf
    nearest = similarity.argmax(axis=1)
    return float((classes[nearest] == classes).mean())


@pytest.fixture(scope="module")
def encoder(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    # the runtime the edge picks by default on this machine (auto)
    return build_encoder(
        pretrained_config(shared_data, onnx_cache_dir=tmp_path_factory.mktemp("onnx"))
    )


@pytest.fixture(scope="module")
def sample(shared_data: Path, encoder: Encoder) -> Sample:
    return tracked_crops(shared_data, encoder)


def test_nearest_neighbours_have_the_same_class(
    shared_data: Path, encoder: Encoder, sample: Sample, tmp_path: Path
) -> None:
    assert not encoder.random_init
    assert encoder.dim == 1280
    assert len(sample.classes) > 1000
    assert len(np.unique(sample.tracks)) > 80
    clips = sample.tracks // CLIP_STRIDE
    vectors = encoder.embed(sample.crops)
    other_track = agreement(vectors, sample.classes, sample.tracks)
    other_clip = agreement(vectors, sample.classes, clips)
    twin = build_encoder(
        pretrained_config(shared_data, random_init=True, weights=None, onnx_cache_dir=tmp_path)
    )
    random_clip = agreement(twin.embed(sample.crops), sample.classes, clips)
    _, counts = np.unique(sample.classes, return_counts=True)
    print(
        f"\n{len(sample.classes)} crops, {len(np.unique(sample.tracks))} tracks, "
        f"{encoder.runtime}: "
        f"nearest neighbour of the same class from another track {other_track:.3f} (majority "
        f"class {counts.max() / len(sample.classes):.3f}), from another clip {other_clip:.3f} "
        f"(random-init twin {random_clip:.3f})"
    )
    assert other_track >= MIN_AGREEMENT
    assert other_clip >= random_clip + MIN_LEAD_OVER_RANDOM


def _imagenet_still(path: Path, side: int) -> NDArray[np.uint8]:
    """Resize the short side to side * 256 / 224, centre-crop side x side (ImageNet's eval)."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = side * 256 / 224 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
    w, h = image.size
    left, top = (w - side) // 2, (h - side) // 2
    return np.asarray(image.crop((left, top, left + side, top + side)), np.uint8)


def test_the_file_classifier_names_the_imagenet_stills_from_the_edge_features(
    shared_data: Path, encoder: Encoder
) -> None:
    """The check that catches wrong preprocessing: the file's own 1001-class classifier applied
    to the edge's (unit-norm) features of the 24 ImageNet vehicle stills. Measured top-1: 21/24
    as configured, 13/24 with ImageNet mean/std, 19/24 without pad_type, 0/24 random."""
    from safetensors.torch import load_file

    folder = shared_data / "weights" / "mobilenet_v2_imagenet"
    classifier = load_file(str(folder / WEIGHTS.name))["classifier.weight"].reshape(1001, -1)
    labels = (folder / "imagenet_labels.txt").read_text().splitlines()
    files = sorted((shared_data / "images" / "imagenet_vehicles").glob("*.JPEG"))
    assert len(files) == 24
    stills = np.stack([_imagenet_still(p, encoder.preprocess.size) for p in files])
    top = (encoder.embed(stills) @ classifier.numpy().T).argmax(axis=1)
    names = [p.stem.split("_", 1)[1].replace("_", " ") for p in files]  # n02701002_ambulance
    hits = sum(name in labels[k].lower() for name, k in zip(names, top, strict=True))
    print(f"\nImageNet stills, top-1 of the file's classifier on the edge's features: {hits}/24")
    assert hits >= 20
