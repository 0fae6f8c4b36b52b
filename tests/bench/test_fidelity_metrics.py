"""``bench fidelity``'s measures on constructed pools with known answers, and its split."""

from __future__ import annotations

import numpy as np
import pytest

from semcom.bench import fidelity_run
from semcom.bench.fidelity_data import CropSample
from semcom.bench.fidelity_run import SplitError, make_folds, run
from shared.pq import fit_pq
from sim.recall_metrics import Pool, per_query, summarise, top_k

S = 1_000_000


def _circle(angles: list[float]) -> np.ndarray:
    a = np.asarray(angles)
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


# crop: (track, class, time in us, angle); neighbours are nearest by angle
CROPS = [
    (1, 0, 0, 0.00),  # 0: the query of most checks
    (1, 0, S // 2, 0.01),  # 1: own track, 0.5 s later: a near-copy, not a re-identification
    (1, 0, 3 * S, 0.30),  # 2: own track, 3 s later
    (2, 1, 0, 0.10),  # 3: another track, another class, nearest after the own track
    (3, 0, 0, 0.20),  # 4: another track, same class
    (4, 2, 0, 1.50),  # 5: far away
    (4, 2, S // 5, 1.51),  # 6: its own track 0.2 s later only
]


def _pool() -> Pool:
    tracks, classes, times, angles = zip(*CROPS, strict=True)
    return Pool(
        _circle(list(angles)),
        np.asarray(tracks, np.int64),
        np.asarray(classes, np.int64),
        np.asarray(times, np.int64),
    )


def test_top_k_orders_allowed_rows_and_pads() -> None:
    base = _circle([0.0, 0.1, 0.2])
    allowed = np.asarray([[False, True, True]])
    assert top_k(base[:1], base, allowed, k=3).tolist() == [[1, 2, -1]]


def test_class_precision_leaves_out_the_query_s_own_track() -> None:
    pool = _pool()
    v = per_query(pool, pool.vectors, pool.vectors, k=2)
    # crop 0: its own track (crops 1, 2) would be nearest; the others are crop 3 (class 1)
    # and crop 4 (class 0)
    assert v.class_p10[0] == pytest.approx(0.5)
    # crop 3 (class 1): nearest others of other tracks are crops 0 and 1 (class 0)
    assert v.class_p10[3] == 0.0


def test_same_track_recall_needs_a_sighting_past_the_gap() -> None:
    pool = _pool()
    at2 = per_query(pool, pool.vectors, pool.vectors, k=2)
    at3 = per_query(pool, pool.vectors, pool.vectors, k=3)
    # crop 0: crop 1 is 0.5 s away (left out); crop 2 (3 s) is third after crops 3 and 4
    assert at2.track_r10[0] == 0.0
    assert at3.track_r10[0] == 1.0
    # crop 2's far sightings (crops 1 and 0, 2.5 and 3 s back) come after crops 4 and 3
    assert at2.track_r10[2] == 0.0
    assert at3.track_r10[2] == 1.0
    # no sighting 1 s away: crops 3, 4 (single sightings) and 5, 6 (0.2 s apart)
    assert np.isnan(at2.track_r10[[3, 4, 5, 6]]).all()
    s = summarise(at2)
    assert (s.queries, s.track_queries, s.track_skipped) == (7, 3, 4)
    # a shorter gap makes crop 1 a valid sighting for crop 0, and crop 6 one for crop 5
    short = per_query(pool, pool.vectors, pool.vectors, gap_us=S // 10, k=2)
    assert short.track_r10[0] == 1.0
    assert short.track_r10[5] == 1.0


def test_recall_against_f32() -> None:
    pool = _pool()
    same = per_query(pool, pool.vectors, pool.vectors, k=2)
    assert np.all(same.recall_10_at_10 == 1.0)
    assert np.all(same.recall_1_at_10 == 1.0)
    decoded = pool.vectors.copy()
    decoded[1] = _circle([0.5])[0]  # crop 1 moves away from crop 0
    v = per_query(pool, decoded, pool.vectors, k=2)
    # crop 0: f32's 2 nearest are crops 1 and 3; the codec's are crops 3 and 4
    assert v.recall_10_at_10[0] == pytest.approx(0.5)
    assert v.recall_1_at_10[0] == 0.0


def test_pool_refuses_unequal_arrays() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Pool(
            _circle([0.0, 1.0]), np.zeros(2, np.int64), np.zeros(1, np.int64), np.zeros(2, np.int64)
        )


def test_leave_one_clip_out_never_fits_on_the_measured_clip() -> None:
    names = ["a.mp4", "b.mp4", "c.mp4", "empty.mp4"]
    folds = make_folds(names, [5, 5, 5, 0])
    assert [f.measure for f in folds] == [(0,), (1,), (2,)]
    for f in folds:
        assert not set(f.fit) & set(f.measure)
        assert set(f.fit) | set(f.measure) == {0, 1, 2}
    fixed = make_folds(names, [5, 5, 5, 0], ["a.mp4"])
    assert [(f.fit, f.measure) for f in fixed] == [((0,), (1, 2))]
    with pytest.raises(SplitError, match=r"names no clip.*x\.mp4"):
        make_folds(names, [5, 5, 5, 0], ["x.mp4"])
    with pytest.raises(SplitError, match="both sides"):
        make_folds(names, [5, 5, 5, 0], ["a.mp4", "b.mp4", "c.mp4"])
    with pytest.raises(SplitError, match="at least 2 clips"):
        make_folds(names, [5, 0, 0, 0])


def _sample(per_clip: int = 300, clips: int = 3, dim: int = 32) -> CropSample:
    rng = np.random.default_rng(0)
    n = per_clip * clips
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return CropSample(
        x,
        np.repeat(np.arange(clips), per_clip).astype(np.int64),
        np.tile(np.arange(per_clip) // 10, clips).astype(np.int64),
        rng.integers(0, 3, n).astype(np.int64),
        np.full(n, 0.5, np.float32),
        np.tile(np.asarray([[0.1, 0.2, 0.3, 0.4]], np.float32), (n, 1)),
        np.tile(np.arange(per_clip) % 10 * 200_000, clips).astype(np.int64),
        tuple(f"clip{i}.mp4" for i in range(clips)),
    )


def test_run_fits_codebooks_only_on_the_other_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    sample = _sample()
    fitted: list[np.ndarray] = []
    real_fit = fit_pq

    def recording_fit(samples: np.ndarray, **kwargs: object) -> object:
        fitted.append(np.asarray(samples))
        return real_fit(samples, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fidelity_run, "fit_pq", recording_fit)
    folds = make_folds(sample.clip_names, [300, 300, 300])
    results = run(sample, folds, pq_m=(8,))
    assert len(fitted) == 3
    for fold, samples in zip(folds, fitted, strict=True):
        (measured,) = fold.measure
        rows = sample.embeddings[sample.clips == measured]
        assert len(samples) == 600
        # no fitted vector is a vector of the measured clip
        assert not (samples[:, None, :] == rows[None, :, :]).all(axis=2).any()
    assert [r.codec for r in results] == ["f32", "f16", "int8", "pq8x8"]
    f32 = results[0].summary
    assert f32.queries == 900
    assert f32.recall_10_at_10 == 1.0
    assert results[3].summary.recall_10_at_10 < 1.0
    assert results[0].bytes_per_roi > results[3].bytes_per_roi > results[3].code_bytes


def test_too_few_crops_to_fit_says_what_to_do() -> None:
    sample = _sample(per_clip=100)
    with pytest.raises(SplitError, match="PQ needs at least 256"):
        run(sample, make_folds(sample.clip_names, [100, 100, 100]), pq_m=(8,))


def test_targets_take_the_best_code_within_each_size() -> None:
    def row(codec: str, size: int, cls: float, track: float) -> dict[str, object]:
        return {
            "codec": codec,
            "code_bytes": size,
            "class_p10_ratio": cls,
            "track_r10_ratio": track,
        }

    rows = [
        row("f32", 5120, 1.0, 1.0),
        row("int8", 1284, 0.995, 0.985),
        row("pq8x8", 8, 0.985, 0.80),
        row("pq16x8", 16, 0.97, 0.90),
        row("pq32x8", 32, 0.99, 0.96),
        row("pq64x8", 64, 0.99, 0.99),
    ]
    checks = fidelity_run.targets(rows)
    assert [(t["codec"], t["met"]) for t in checks] == [
        ("int8", True),
        ("int8", False),
        ("pq8x8", True),
        ("pq32x8", False),
    ]
