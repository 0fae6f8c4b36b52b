"""A track broken by an occlusion sends one first-sight embedding: the pipeline end to end.

The scripted detector reports the red rectangle of ``tests.conftest.write_video`` as tracker id
1, loses it for 5 frames (an occlusion), then reports it again as a new tracker id 2, as
ByteTrack does when it cannot re-associate a box. Everything else is real: the video's frames,
the policy and its re-link, crops, the random-init ViT (its embeddings of the same rectangle
agree), the codec.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge.capture import VideoFileSource
from edge.config import PolicyConfig, TimmEncoderConfig
from edge.detect import FrameBoxes
from edge.embed import TimmEncoder
from edge.pipeline import EdgePipeline
from edge.policy import EmissionPolicy
from shared.messages import Embedding, EmitReason, TrackEnd, TrackSummary
from shared.vectors import create_codec

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)

HIDDEN = range(12, 17)  # frames without the rectangle


class OccludedDetector:
    """The red rectangle: tracker id 1 before the occlusion, 2 after it."""

    name = "scripted-occlusion"

    def __init__(self) -> None:
        self.i = 0

    def track(self, image: np.ndarray) -> FrameBoxes:
        i, self.i = self.i, self.i + 1
        if i in HIDDEN:
            return FrameBoxes.empty()
        x = 10 + 6 * i
        return FrameBoxes(
            np.asarray([[x, 60, x + 70, 110]], np.float32),
            np.asarray([2]),
            np.asarray([0.9], np.float32),
            np.asarray([1 if i < HIDDEN.start else 2]),
        )

    def reset(self) -> None:
        self.i = 0


@pytest.fixture(scope="module")
def encoder() -> TimmEncoder:
    return TimmEncoder(TimmEncoderConfig(name="test_vit", random_init=True))


def run(video: Path, encoder: TimmEncoder, **policy: object) -> list[object]:
    config = PolicyConfig.model_validate(
        {"confirm_frames": 3, "relink_min_cosine": 0.9, "detections_every_frames": 0, **policy}
    )
    pipeline = EdgePipeline(
        OccludedDetector(),
        encoder,
        create_codec("f16", encoder.dim),
        EmissionPolicy(config, "cam-01"),
        2.5,
    )
    source = VideoFileSource(video, loop=False, pace=False, sample_fps=None)
    out: list[object] = []
    for frame in source.frames(threading.Event()):
        out += [m for _, m in pipeline.process(frame)]
    return out + [m for _, m in pipeline.finish()]


def first_sights(messages: list[object]) -> list[int]:
    return [
        m.track_id
        for m in messages
        if isinstance(m, Embedding) and m.reason is EmitReason.FIRST_SIGHT
    ]


def finals(messages: list[object]) -> list[tuple[int, int]]:
    """(track id, frames) of each track's final message."""
    return [
        (m.track_id, m.frames)
        for m in messages
        if isinstance(m, TrackEnd) or (isinstance(m, TrackSummary) and m.final)
    ]


@pytest.mark.parametrize("lost_frames", [30, 3], ids=["still-open", "already-ended"])
def test_an_occluded_track_sends_one_first_sight(
    tiny_video: Path, encoder: TimmEncoder, lost_frames: int
) -> None:
    messages = run(tiny_video, encoder, lost_frames=lost_frames)
    assert first_sights(messages) == [1]
    ids = {t for t, _ in finals(messages)}
    assert ids == {1}
    assert sum(n for _, n in finals(messages)) == 30 - len(HIDDEN)


def test_without_relink_the_occlusion_makes_two_tracks(
    tiny_video: Path, encoder: TimmEncoder
) -> None:
    messages = run(tiny_video, encoder, relink_window_s=0)
    assert first_sights(messages) == [1, 2]
    assert {t for t, _ in finals(messages)} == {1, 2}
