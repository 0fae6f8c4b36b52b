"""The emission policy, driven by scripted tracks: appear, confirm, drift, keyframe, vanish."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import PolicyConfig
from edge.detect import FrameBoxes
from edge.policy import EmbedRequest, EmissionPolicy
from shared.geometry import Box
from shared.messages import Detections, EmitReason, FrameCounts, TrackSummary
from shared.paths import TimedBox, boxes_at

FPS = 25
W, H = 640, 360


def boxes(*tracks: tuple[int, int, float]) -> FrameBoxes:
    """(track id, class id, x) per box; boxes are 40x30 px at (x, 100)."""
    return FrameBoxes(
        np.asarray([[x, 100, x + 40, 130] for _, _, x in tracks], np.float32).reshape(-1, 4),
        np.asarray([c for _, c, _ in tracks], np.int64),
        np.full(len(tracks), 0.9, np.float32),
        np.asarray([t for t, _, _ in tracks], np.int64),
    )


class Script:
    """Feeds frames at 25 fps; answers embedding requests with given vectors."""

    def __init__(self, **config: object) -> None:
        self.policy = EmissionPolicy(PolicyConfig(**config), "cam-01")  # type: ignore[arg-type]
        self.index = 0
        self.sent: list[EmbedRequest] = []
        self.messages: list[object] = []

    def frame(self, fb: FrameBoxes, vector: np.ndarray | None = None) -> list[EmbedRequest]:
        ts = 1_000_000 + self.index * 1_000_000 // FPS
        messages, requests = self.policy.observe(self.index, ts, W, H, fb)
        self.messages += messages
        self.index += 1
        for r in requests:
            v = vector if vector is not None else unit(0)
            if self.policy.on_embedding(r, v):
                self.sent.append(r)
        return requests


def unit(i: int, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i] = 1.0
    return v


def test_first_sight_after_confirmation_then_silence() -> None:
    s = Script(confirm_frames=3, check_interval_s=100, keyframe_interval_s=100)
    asked = [len(s.frame(boxes((7, 2, 10.0)))) for _ in range(10)]
    assert asked == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert [(r.track_id, r.reason) for r in s.sent] == [(7, EmitReason.FIRST_SIGHT)]
    assert s.sent[0].class_id == 2


def test_drift_checks_send_only_when_appearance_moved() -> None:
    s = Script(
        confirm_frames=1,
        check_interval_s=0.2,
        drift_threshold=0.3,
        keyframe_interval_s=100,
        recheck_scale=10,
    )
    s.frame(boxes((1, 2, 10.0)), unit(0))  # first sight
    for _ in range(5):  # 0.2 s later: a check with the same appearance stays quiet
        s.frame(boxes((1, 2, 10.0)), unit(0))
    assert s.policy.stats.drift_checks_quiet == 1
    assert len(s.sent) == 1
    near = (unit(0) * 0.95 + unit(1) * 0.31).astype(np.float32)
    near /= np.linalg.norm(near)
    for _ in range(5):  # cosine distance 0.05 < 0.3: quiet again
        s.frame(boxes((1, 2, 10.0)), near)
    assert len(s.sent) == 1
    for _ in range(5):  # orthogonal: distance 1.0 -> sent as drift
        s.frame(boxes((1, 2, 10.0)), unit(3))
    assert [r.reason for r in s.sent] == [EmitReason.FIRST_SIGHT, EmitReason.DRIFT]


def test_box_scale_change_triggers_an_early_check() -> None:
    s = Script(confirm_frames=1, check_interval_s=100, keyframe_interval_s=100, recheck_scale=1.5)
    s.frame(boxes((1, 2, 10.0)))
    grown = FrameBoxes(
        np.asarray([[10, 100, 80, 160]], np.float32),
        np.asarray([2]),
        np.asarray([0.9], np.float32),
        np.asarray([1]),
    )
    requests = s.frame(grown)
    assert [r.reason for r in requests] == [EmitReason.DRIFT]


def test_keyframe_interval_forces_a_send() -> None:
    s = Script(confirm_frames=1, check_interval_s=100, keyframe_interval_s=1.0, recheck_scale=10)
    for _ in range(2 * FPS + 1):
        s.frame(boxes((4, 5, 10.0)))
    assert [r.reason for r in s.sent] == [
        EmitReason.FIRST_SIGHT,
        EmitReason.KEYFRAME,
        EmitReason.KEYFRAME,
    ]


def test_final_summary_after_lost_frames() -> None:
    # re-linking off: it holds a lost track while a new one may continue it (test_relink.py)
    s = Script(confirm_frames=2, lost_frames=5, path_grid=1, relink_window_s=0)
    for i in range(10):  # constant speed: the path is its two ends
        s.frame(boxes((3, 2 if i < 7 else 7, 10.0 + 5 * i)))
    for _ in range(6):
        s.frame(boxes())
    ends = [m for m in s.messages if isinstance(m, TrackSummary)]
    assert len(ends) == 1
    end = ends[0]
    assert (end.track_id, end.final, end.frames) == (3, True, 10)
    assert end.class_votes == {2: 7, 7: 3}
    assert (end.last_seen_us - end.first_seen_us) / 1e6 == pytest.approx(9 / FPS, abs=1e-6)
    assert [p.offset_ms for p in end.path.points] == [0, 360]
    assert end.path.points[0].box.x1 == pytest.approx(10 / W, abs=1e-4)
    assert end.path.points[-1].box.x1 == pytest.approx(55 / W, abs=1e-4)


def _zigzag_x(i: int) -> float:
    """A car that drives right for 2 s, then left: one corner at frame 50."""
    return 100.0 + 4 * (i if i <= 50 else 100 - i)


def test_summary_path_redraws_every_frame_within_tolerance() -> None:
    s = Script(
        confirm_frames=1,
        lost_frames=3,
        path_tolerance_px=1.5,
        summary_every_s=0,
        relink_window_s=0,  # ended after lost_frames, not held for a re-link
    )
    truth: list[TimedBox] = []
    for i in range(90):
        s.frame(boxes((5, 2, _zigzag_x(i))))
        ts = 1_000_000 + i * 1_000_000 // FPS
        truth.append(TimedBox(ts, Box.from_pixels(_zigzag_x(i), 100, _zigzag_x(i) + 40, 130, W, H)))
    for _ in range(4):
        s.frame(boxes())
    (end,) = [m for m in s.messages if isinstance(m, TrackSummary)]
    assert len(end.path.points) == 3  # start, the corner, the end
    points = [
        TimedBox(t, p.box) for t, p in zip(end.point_times_us(), end.path.points, strict=True)
    ]
    got = boxes_at(points, [p.t_us for p in truth])
    worst = max(abs(g.box.x1 - t.box.x1) * W for g, t in zip(got, truth, strict=True))
    assert worst <= 1.5 + 0.2  # the tolerance, and a ms of time rounding at 100 px/s


def test_keyframe_summaries_continue_the_path_without_overlap() -> None:
    s = Script(
        confirm_frames=1,
        lost_frames=3,
        summary_every_s=1.0,
        path_tolerance_px=0.5,
        relink_window_s=0,  # ended after lost_frames, not held for a re-link
    )
    for i in range(90):  # 3.6 s in view: keyframe summaries at 1, 2 and 3 s, then the final
        s.frame(boxes((5, 2, _zigzag_x(i))))
    for _ in range(4):
        s.frame(boxes())
    got = [m for m in s.messages if isinstance(m, TrackSummary)]
    assert [m.final for m in got] == [False, False, False, True]
    assert [m.frames for m in got] == [26, 51, 76, 90]
    assert s.policy.stats.keyframe_summaries == 3
    times = [t for m in got for t in m.point_times_us()]
    assert times == sorted(set(times))  # each point sent once, in order
    assert times[0] == got[0].first_seen_us
    assert times[-1] == got[-1].last_seen_us
    assert 1_000_000 + 50 * 40_000 in times  # the corner


def test_rate_pressure_spaces_out_keyframe_summaries() -> None:
    s = Script(confirm_frames=1, lost_frames=3, summary_every_s=1.0)
    s.policy.chattiness = 0.5
    for i in range(90):
        s.frame(boxes((5, 2, _zigzag_x(i))))
    got = [m for m in s.messages if isinstance(m, TrackSummary)]
    assert [m.frames for m in got] == [51]  # every 2 s instead of every 1 s


def test_defaults_are_track_level() -> None:
    s = Script()
    for i in range(40):
        s.frame(boxes((1, 2, 10.0 + i), (2, 2, 300.0)))
    s.messages += s.policy.flush()
    kinds = {type(m).__name__ for m in s.messages}
    assert kinds == {"TrackSummary"}  # no FrameCounts, no Detections


def test_flicker_tracks_end_silently_and_flush_ends_the_rest() -> None:
    s = Script(confirm_frames=3, lost_frames=2)
    s.frame(boxes((9, 2, 10.0), (10, 2, 200.0)))  # 9 is seen once: flicker
    for _ in range(4):
        s.frame(boxes((10, 2, 200.0)))
    assert s.policy.stats.flicker_tracks == 1
    assert not [m for m in s.messages if isinstance(m, TrackSummary)]
    ends = s.policy.flush()
    assert [m.track_id for m in ends if isinstance(m, TrackSummary)] == [10]
    assert s.policy.active_tracks == 0


def test_untracked_boxes_are_counted_not_embedded() -> None:
    s = Script(confirm_frames=1, counts_every_frames=1, detections_every_frames=1)
    requests = s.frame(boxes((0, 2, 10.0), (0, 0, 50.0)))
    assert requests == []
    counts = [m for m in s.messages if isinstance(m, FrameCounts)]
    assert counts[-1].counts == {2: 1, 0: 1}
    dets = [m for m in s.messages if isinstance(m, Detections)]
    assert dets[-1].track_ids == (0, 0)


def test_counts_sent_on_change_only() -> None:
    s = Script(counts_every_frames=1, counts_on_change=True, detections_every_frames=0)
    for n in (1, 1, 1, 2, 2, 0):
        s.frame(boxes(*[(i + 1, 2, 10.0 + 60 * i) for i in range(n)]))
    assert [m.counts for m in s.messages if isinstance(m, FrameCounts)] == [{2: 1}, {2: 2}, {}]


def test_pending_request_is_not_repeated_until_answered_or_skipped() -> None:
    policy = EmissionPolicy(PolicyConfig(confirm_frames=1), "cam")
    _, first = policy.observe(0, 0, W, H, boxes((1, 2, 10.0)))
    _, again = policy.observe(1, 40_000, W, H, boxes((1, 2, 10.0)))
    assert len(first) == 1
    assert again == []
    policy.on_skipped(first[0])
    _, retry = policy.observe(2, 80_000, W, H, boxes((1, 2, 10.0)))
    assert [r.reason for r in retry] == [EmitReason.FIRST_SIGHT]
    assert policy.stats.skipped == 1


def test_crowded_frame_keeps_the_most_confident_boxes() -> None:
    n = 600
    fb = FrameBoxes(
        np.tile(np.asarray([[10, 10, 20, 20]], np.float32), (n, 1)),
        np.full(n, 2, np.int64),
        np.linspace(0.01, 0.99, n).astype(np.float32),
        np.arange(1, n + 1, dtype=np.int64),
    )
    s = Script(counts_every_frames=1, detections_every_frames=1, confirm_frames=100)
    s.frame(fb)
    dets = [m for m in s.messages if isinstance(m, Detections)][-1]
    assert len(dets.boxes) == 512
    assert min(dets.confidences) > 0.15  # the 88 least confident were left out
    assert [m for m in s.messages if isinstance(m, FrameCounts)][-1].counts == {2: 600}
    assert s.policy.stats.boxes_truncated == 1


def test_a_track_the_tracker_refinds_stays_one_track_at_the_defaults() -> None:
    """Issue 17: a truck unseen for 45 frames (within the tracker's default buffer of 60) and
    re-found under its id is one track: one first sight, one final summary, all its votes."""
    s = Script()
    for _ in range(40):
        s.frame(boxes((9, 7, 10.0)))  # a truck
    for _ in range(45):
        s.frame(boxes())  # occluded; the tracker still holds it
    for _ in range(20):
        s.frame(boxes((9, 2, 12.0)))  # re-found, now voted a car
    s.messages += s.policy.flush()
    summaries = [m for m in s.messages if isinstance(m, TrackSummary)]
    assert [r.reason for r in s.sent if r.reason is EmitReason.FIRST_SIGHT] == [
        EmitReason.FIRST_SIGHT
    ]
    assert [(m.track_id, m.final) for m in summaries] == [(9, True)]
    assert summaries[0].frames == 60
    assert summaries[0].class_votes == {7: 40, 2: 20}
