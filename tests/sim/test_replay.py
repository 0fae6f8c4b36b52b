"""The relinker recorder: each box's id as the policy saw it, pre-link frames re-attributed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.config import PolicyConfig
from edge.detect import FrameBoxes
from edge.policy import EmissionPolicy
from edge.relink import Link
from sim.replay import RenameRecorder


@dataclass
class ScriptedRelinker:
    """Renames tracker ids by a fixed alias table from a given frame on (as edge/relink.py
    does once a first-sight embedding decided a link), and links a new id to the old one its
    alias names when asked to match it."""

    alias_from: dict[int, tuple[int, int]]  # tracker id -> (output id, from this ts_us on)
    links: list[Link] = field(default_factory=list)

    def match(self, track_id: int, vector: np.ndarray) -> Link | None:
        if track_id not in self.alias_from:
            return None
        link = Link(track_id, self.alias_from[track_id][0], 0.1, 0.99, 0.08, vector)
        self.links.append(link)
        return link

    def rename(self, boxes: FrameBoxes, ts_us: int) -> FrameBoxes:
        ids = boxes.track_ids.copy()
        for i, raw in enumerate(boxes.track_ids):
            out, since = self.alias_from.get(int(raw), (int(raw), 0))
            ids[i] = out if ts_us >= since else raw
        return FrameBoxes(boxes.xyxy, boxes.class_ids, boxes.confidences, ids)


def _boxes(*ids: int) -> FrameBoxes:
    n = len(ids)
    return FrameBoxes(
        np.zeros((n, 4), np.float32), np.zeros(n, np.int64), np.ones(n, np.float32), np.asarray(ids)
    )


def test_frames_before_a_link_count_for_the_track_it_continues() -> None:
    # tracker id 5 appears at t = 2 and is linked to 1 from t = 4 on (its first sight)
    inner = ScriptedRelinker({5: (1, 4)})
    rec = RenameRecorder(inner)
    for ts, ids in [(0, (1,)), (1, (1, 9)), (2, (5, 9)), (3, (5,)), (4, (5,)), (5, (5,))]:
        out = rec.rename(_boxes(*ids), ts)
        assert len(out) == len(ids)
        if ts == 3:  # 5's first-sight embedding: the policy asks its relinker to match it
            assert rec.match(9, np.ones(8, np.float32)) is None
            assert rec.match(5, np.ones(8, np.float32)) is not None
    assert rec.ids == [1, 1, 9, 5, 9, 5, 1, 1]  # what the policy saw frame by frame
    assert rec.relinked_ids() == [1, 1, 9, 1, 9, 1, 1, 1]
    assert rec.links == inner.links  # everything else is the relinker's


def test_every_link_of_a_long_clip_reaches_the_reference() -> None:
    """A real policy whose relinker makes 300 links (more than the 256 it keeps): every pre-link
    frame of every re-linked tracker id is still attributed to the track it continues."""
    config = PolicyConfig.model_validate(
        {
            "confirm_frames": 3,
            "lost_frames": 30,
            "relink_window_s": 2.0,
            "relink_min_cosine": 0.8,
            "relink_max_offset": 1.0,
            "check_interval_s": 100.0,
            "keyframe_interval_s": 100.0,
            "counts_every_frames": 0,
        }
    )
    policy = EmissionPolicy(config, "cam-01")
    rec = RenameRecorder(policy.relinker)
    policy.relinker = rec  # type: ignore[assignment]  # as sim/measure.py installs it
    look = np.zeros(8, np.float32)
    look[0] = 1.0
    index = 0
    for raw in range(1, 302):  # one parked car whose tracker id changes every 5 frames
        for _ in range(5):
            ts = 1_000_000 + index * 40_000
            box = FrameBoxes(
                np.asarray([[300, 150, 340, 180]], np.float32),
                np.asarray([2]),
                np.asarray([0.9], np.float32),
                np.asarray([raw]),
            )
            _, requests = policy.observe(index, ts, 640, 360, box)
            for r in requests:
                policy.on_embedding(r, look)
            index += 1
        index += 1  # a frame without it: the next id starts after this one was last seen
    assert len(rec.inner.links) == 256  # the edge keeps its bounded history
    assert len(rec.links) == 256
    ids = rec.relinked_ids()
    assert len(ids) == 301 * 5
    assert set(rec.ids) == set(range(1, 302)) | {1}  # each new id was seen before its link
    assert ids == [1] * len(ids)
