"""The relinker recorder: each box's id as the policy saw it, pre-link frames re-attributed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.detect import FrameBoxes
from sim.replay import RenameRecorder


@dataclass
class _Link:
    new_id: int
    old_id: int


@dataclass
class ScriptedRelinker:
    """Renames tracker ids by a fixed alias table from a given frame on (as edge/relink.py
    does once a first-sight embedding decided a link)."""

    alias_from: dict[int, tuple[int, int]]  # tracker id -> (output id, from this ts_us on)
    links: list[_Link] = field(default_factory=list)

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
    inner = ScriptedRelinker({5: (1, 4)}, [_Link(5, 1)])
    rec = RenameRecorder(inner)
    for ts, ids in [(0, (1,)), (1, (1, 9)), (2, (5, 9)), (3, (5,)), (4, (5,)), (5, (5,))]:
        out = rec.rename(_boxes(*ids), ts)
        assert len(out) == len(ids)
    assert rec.ids == [1, 1, 9, 5, 9, 5, 1, 1]  # what the policy saw frame by frame
    assert rec.relinked_ids() == [1, 1, 9, 1, 9, 1, 1, 1]
    assert rec.links == inner.links  # everything else is the relinker's
