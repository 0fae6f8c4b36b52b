"""Same-track recall of fresh sightings against the sent embeddings (sim/track_recall.py),
against hand-computed cases on 3-d unit vectors, and the sampling of those sightings."""

from __future__ import annotations

import numpy as np
import pytest

from shared.geometry import Box
from sim.fidelity import Reference
from sim.measure import RoI
from sim.track_recall import Queries, SentVector, fresh_recall

E = np.eye(3, dtype=np.float32)  # three unit directions


def _sent(track: int, t: float, decoded: np.ndarray, original: np.ndarray) -> SentVector:
    return SentVector(track, 2, t, decoded.astype(np.float32), original.astype(np.float32))


def _queries(rows: list[tuple[int, float, np.ndarray]]) -> Queries:
    return Queries(
        np.stack([v for _, _, v in rows]).astype(np.float32),
        np.asarray([k for k, _, _ in rows], np.int64),
        np.asarray([t for _, t, _ in rows], np.float64),
    )


def test_a_codec_that_swaps_two_tracks_loses_their_queries() -> None:
    # the cloud holds one sighting per track at t = 0; f32 finds each track from a fresh crop
    # of it at t = 5 (k = 1); the codec decodes track 1's code as track 2's direction and back
    sent = [
        _sent(1, 0.0, E[1], E[0]),
        _sent(2, 0.0, E[0], E[1]),
        _sent(3, 0.0, E[2], E[2]),
    ]
    near = np.asarray([[1.0, 0.1, 0.0], [0.1, 1.0, 0.0], [0.0, 0.1, 1.0]], np.float32)
    q = _queries([(1, 5.0, near[0]), (2, 5.0, near[1]), (3, 5.0, near[2])])
    r = fresh_recall(sent, q, k=1)
    assert r.f32 == 1.0
    assert r.codec == pytest.approx(1 / 3)  # only track 3 is found
    assert r.ratio == pytest.approx(1 / 3)
    assert (r.queries, r.skipped) == (3, 0)
    # k = 2: every track's own sighting is among the two nearest again
    assert fresh_recall(sent, q, k=2).ratio == pytest.approx(1.0)


def test_near_copies_are_not_candidates_and_unknown_tracks_are_skipped() -> None:
    # track 1 sent at t = 0 (direction 0) and t = 5 (direction 1); a query at t = 0.2 that is
    # nearly a copy of the t = 0 sighting may only find the t = 5 one (k = 1): track 2's
    # direction 2 is nearer than it, so f32 misses; a query of track 1 at t = 2.5 finds t = 0
    sent = [_sent(1, 0.0, E[0], E[0]), _sent(1, 5.0, E[1], E[1]), _sent(2, 0.0, E[2], E[2])]
    copy = np.asarray([1.0, 0.0, 0.1], np.float32)
    between = np.asarray([1.0, 0.0, 0.2], np.float32)
    q = _queries([(1, 0.2, copy), (1, 2.5, between), (9, 3.0, E[0])])  # track 9: never sent
    r = fresh_recall(sent, q, k=1)
    assert (r.queries, r.skipped) == (2, 1)
    assert r.f32 == pytest.approx(0.5)  # the copy's only candidate of its track is direction 1
    assert r.codec == pytest.approx(0.5)
    assert r.ratio == pytest.approx(1.0)


def test_no_query_of_a_sent_track_leaves_the_measure_undefined() -> None:
    sent = [_sent(1, 0.0, E[0], E[0])]
    r = fresh_recall(sent, _queries([(1, 0.5, E[0])]))  # within 1 s of the only sighting
    assert r.ratio is None
    assert (r.queries, r.skipped) == (0, 1)
    assert fresh_recall(sent, None).ratio is None


def test_queries_take_the_policy_ids_of_their_rows() -> None:
    # the tracker's id 5 continues track 1 (re-linked by the edge), id 0 is an untracked box
    box = Box(0.1, 0.1, 0.2, 0.2)
    rois = [RoI(0.0, 1, 2, 0.9, box), RoI(2.0, 5, 2, 0.9, box), RoI(2.0, 0, 2, 0.9, box)]
    vectors = np.stack([E[0], E[1], E[2]])
    ref = Reference.of(rois, [0.0, 2.0], 100, 100, [1, 1, 0], ([0, 1, 2], vectors))
    assert ref.queries is not None
    assert ref.queries.tracks.tolist() == [1, 1]
    assert ref.queries.times_s.tolist() == [0.0, 2.0]
    np.testing.assert_array_equal(ref.queries.vectors, vectors[:2])
    with pytest.raises(ValueError, match="2 query vectors for 3 rows"):
        Reference.of(rois, [0.0, 2.0], 100, 100, None, ([0, 1, 2], vectors[:2]))


def test_the_sampler_crops_as_the_pipeline_and_reuses_its_crops() -> None:
    from edge.config import TimmEncoderConfig
    from edge.crops import extract_crops
    from edge.detect import FrameBoxes
    from edge.embed import TimmEncoder
    from sim.queries import QuerySampler
    from sim.replay import CachingEncoder

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (120, 160, 3), np.uint8)
    boxes = FrameBoxes(
        np.asarray([[10, 10, 40, 50], [60, 20, 100, 80], [5, 5, 20, 20]], np.float32),
        np.asarray([2, 2, 0], np.int64),
        np.asarray([0.9, 0.8, 0.7], np.float32),
        np.asarray([3, 4, 0], np.int64),  # the third box is not tracked
    )
    encoder = CachingEncoder(TimmEncoder(TimmEncoderConfig(name="test_vit", random_init=True)))
    p = encoder.preprocess
    sampler = QuerySampler(encoder, 2.5, every=5)
    encoder.new_frame()
    asked = encoder.embed(extract_crops(image, boxes.xyxy[:1], p.size, 2.5, p.interpolation))
    sampler.add(10, image, boxes, row0=7)
    assert sampler.sample.rows == [7, 8]  # the two tracked boxes, as recording rows
    assert encoder.computed == 2  # the policy's crop of the first box was reused
    np.testing.assert_array_equal(sampler.sample.vectors[0], asked[0])
    sampler.add(11, image, boxes, row0=10)  # not a sampled frame
    assert sampler.sample.rows == [7, 8]
    assert sampler.sample.array(encoder.dim).shape == (2, encoder.dim)
    with pytest.raises(ValueError, match="must be >= 1"):
        QuerySampler(encoder, 2.5, every=0)


def test_the_interval_draws_whole_tracks() -> None:
    from sim.track_recall import track_interval

    same = np.asarray([True, True, False, True])
    tracks = np.asarray([1, 1, 2, 2], np.int64)
    assert track_interval(same, same, tracks) == (1.0, 1.0)  # a codec that loses nothing
    # track 1 found by both (2 of 2), track 2 by f32 only in 1 of 2: the point ratio is 2/3;
    # a draw of track 2 twice gives 0 / 1 = 0, of track 1 twice 1: the interval spans both
    codec = np.asarray([True, True, False, False])
    lo, hi = track_interval(codec, same, tracks) or (None, None)
    assert (lo, hi) == (0.0, 1.0)
    assert track_interval(codec, same, np.asarray([1, 1, 1, 1], np.int64)) is None


def test_fresh_recall_reports_its_interval() -> None:
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((20, 16)).astype(np.float32)
    sent = [_sent(k + 1, 0.0, centres[k], centres[k]) for k in range(20)]
    rows = [(k + 1, 5.0, centres[k] + 0.1 * rng.standard_normal(16)) for k in range(20)]
    r = fresh_recall(sent, _queries(rows))
    assert r.ratio == pytest.approx(1.0)
    assert r.ci95 == (1.0, 1.0)
