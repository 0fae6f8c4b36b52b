"""Fidelity measures against hand-computed cases: one car moving right at 2 px per second on a
100 x 100 frame, seen once a second for 10 s, and what the cloud knows of it from each way of
sending (every box, every 5th box, a TrackEnd only, a TrackSummary)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.geometry import Box
from shared.messages import Detections, Embedding, EmitReason, Message, TrackEnd, TrackSummary
from shared.pathwire import PathPoint, TrackPath
from sim.fidelity import CloudView, Reference, measure_fidelity, view_of
from sim.measure import RoI

T0_US = 1_700_000_000_000_000
W = H = 100
FRAMES = 10  # one a second


def _box(i: int) -> Box:
    cx = 0.1 + 0.02 * i  # 2 px per frame to the right
    return Box(cx - 0.05, 0.45, cx + 0.05, 0.55)


def _rois(track: int = 1, cls: int = 2, frames: range = range(FRAMES)) -> list[RoI]:
    return [RoI(float(i), track, cls, 0.9, _box(i)) for i in frames]


def _reference(rois: list[RoI]) -> Reference:
    return Reference.of(rois, [float(i) for i in range(FRAMES)], W, H)


def _detections(i: int, track: int = 1, cls: int = 2) -> Detections:
    return Detections("cam", (_box(i),), (cls,), (0.9,), (track,))


def _view(messages: list[tuple[float, Message]]) -> CloudView:
    return view_of(((t, m, None, None) for t, m in messages), T0_US)


def test_every_box_sent_loses_nothing() -> None:
    fid = measure_fidelity(_reference(_rois()), _view([(i, _detections(i)) for i in range(10)]))
    assert fid.path_rmse_pct == pytest.approx(0.0, abs=1e-3)  # boxes are quantised to 1/65535
    assert fid.objects_in_view_error == pytest.approx(0.0)
    assert fid.confirmed_exact
    assert fid.confirmed_reference == fid.confirmed_estimate == {2: 1}
    assert fid.path_frames == 10
    assert fid.path_unknown_frames == 0
    assert fid.track_r10_ratio is None  # no embeddings: nothing to measure
    assert fid.fresh.queries == fid.stored.queries == 0


def test_every_fifth_box_has_the_hand_computed_errors() -> None:
    # known at t = 0 and 5: exact in between (linear motion), held at x(5) for t = 6..9:
    # off by 2, 4, 6, 8 px -> mean squared 4 * (1 + 4 + 9 + 16) / 10 = 12 px^2
    fid = measure_fidelity(_reference(_rois()), _view([(0, _detections(0)), (5, _detections(5))]))
    assert fid.path_rmse_pct == pytest.approx(100 * math.sqrt(12) / W, rel=1e-3)
    # the cloud knows the track for t in [0, 5]: 6 of the window's 10 frames
    assert fid.objects_in_view_error == pytest.approx(0.4)
    assert fid.confirmed_exact


def test_a_track_end_gives_its_span_and_untimed_path() -> None:
    end = TrackEnd(
        "cam", 1, T0_US, T0_US + 9_000_000, 10, {2: 10}, (_box(0), _box(3), _box(6), _box(9))
    )
    fid = measure_fidelity(_reference(_rois()), _view([(9.0, end)]))
    # 4 points spread evenly over 0..9 s are exactly where the car was (t = 0, 3, 6, 9)
    assert fid.path_rmse_pct == pytest.approx(0.0, abs=1e-3)
    assert fid.objects_in_view_error == pytest.approx(0.0)


def test_a_track_summary_path_is_timed() -> None:
    # points at 0 and 9 s only: linear motion, so interpolation in time is exact
    path = TrackPath(1, (PathPoint(0, _box(0)), PathPoint(9000, _box(9))))
    summary = TrackSummary("cam", 1, T0_US, T0_US + 9_000_000, 10, {2: 10}, True, path)
    fid = measure_fidelity(_reference(_rois()), _view([(9.0, summary)]))
    assert fid.path_rmse_pct == pytest.approx(0.0, abs=1e-2)
    assert fid.objects_in_view_error == pytest.approx(0.0)
    assert fid.confirmed_exact


def test_tracks_the_cloud_never_heard_of_are_counted_apart() -> None:
    rois = _rois() + _rois(track=7, cls=5) + _rois(track=9, cls=5, frames=range(2))
    fid = measure_fidelity(_reference(rois), _view([(i, _detections(i)) for i in range(10)]))
    assert fid.path_unknown_frames == 12  # track 7 (10 frames) and the flicker track 9 (2)
    assert fid.path_frames == 10
    assert fid.confirmed_reference == {2: 1, 5: 1}  # track 9 is flicker (< 3 frames)
    assert fid.confirmed_estimate == {2: 1}
    assert not fid.confirmed_exact
    # window means: car 1.0 known, class 5: 1.0 + 0.2 missed -> 1.2 / 2.2
    assert fid.objects_in_view_error == pytest.approx(1.2 / 2.2)


def _embedding(track: int, i: int) -> Embedding:
    return Embedding("cam", track, EmitReason.KEYFRAME, 2, 0.9, _box(i), 1, b"\x01")


def test_same_track_recall_is_a_ratio_to_f32() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((30, 32)).astype(np.float32)
    items = []
    for track in range(30):  # two sightings 5 s apart per track, close to the track's centre
        for i in (0, 5):
            v = centres[track] + 0.05 * rng.standard_normal(32).astype(np.float32)
            v /= np.linalg.norm(v)
            items.append((float(i), track + 1, v))
    exact = view_of(((t, _embedding(k, int(t)), v, v) for t, k, v in items), T0_US)
    ratio, r10, r10_f32, queries = _recall(exact)
    assert queries == 60
    assert ratio == pytest.approx(1.0)
    assert r10 == r10_f32 == 1.0
    # a decoded code off unit length (PQ's) is searched by cosine, as the index does
    scales = rng.uniform(0.2, 5.0, len(items)).astype(np.float32)
    scaled = view_of(
        ((t, _embedding(k, int(t)), v * scales[j], v) for j, (t, k, v) in enumerate(items)), T0_US
    )
    assert _recall(scaled)[0] == pytest.approx(1.0)
    # a codec that keeps nothing of the vector: the own track is found about by chance (10 / 59)
    noise = rng.standard_normal((60, 32)).astype(np.float32)
    lost = view_of(
        ((t, _embedding(k, int(t)), noise[j], v) for j, (t, k, v) in enumerate(items)), T0_US
    )
    assert _recall(lost)[0] < 0.5


def _recall(view: CloudView) -> tuple[float, float, float, int]:
    """The stored measure: the sent embeddings searched against each other."""
    ref = _reference(_rois())
    stored = measure_fidelity(ref, view).stored
    assert stored.ratio is not None
    assert stored.codec is not None
    assert stored.f32 is not None
    return stored.ratio, stored.codec, stored.f32, stored.queries


def test_a_relinked_tracker_id_counts_as_the_track_it_continues() -> None:
    # the tracker lost the car after t = 4 and gave it id 5 at t = 6; the edge re-linked 5 to 1
    rois = _rois(frames=range(5)) + _rois(track=5, frames=range(6, 10))
    messages: list[tuple[float, Message]] = [(i, _detections(i)) for i in (0, 4, 6, 9)]
    raw = measure_fidelity(Reference.of(rois, [float(i) for i in range(10)], W, H), _view(messages))
    assert raw.confirmed_reference == {2: 2}  # two tracker ids
    assert raw.path_unknown_frames == 4
    ids = [1] * len(rois)  # the policy's ids: 5 re-linked to 1
    linked = Reference.of(rois, [float(i) for i in range(10)], W, H, track_ids=ids)
    fid = measure_fidelity(linked, _view(messages))
    assert fid.confirmed_exact
    assert fid.confirmed_reference == {2: 1}
    assert fid.path_unknown_frames == 0
    assert fid.path_rmse_pct == pytest.approx(0.0, abs=1e-3)


def test_a_track_is_in_view_between_its_sightings() -> None:
    # the detector missed the car at t = 4 and 5; the tracker kept it: it was in view
    rois = _rois(frames=range(4)) + _rois(frames=range(6, 10))
    fid = measure_fidelity(_reference(rois), _view([(0, _detections(0)), (9, _detections(9))]))
    assert fid.objects_in_view_error == pytest.approx(0.0)
    assert fid.path_rmse_pct == pytest.approx(0.0, abs=1e-3)
