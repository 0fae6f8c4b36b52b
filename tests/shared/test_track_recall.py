"""shared.track_recall: the same-track recall@10 the codebook fitter chooses by is the one
``bench fidelity`` reports (sim.recall_metrics), query for query."""

from __future__ import annotations

import numpy as np
import pytest

from shared.track_recall import CHUNK, same_track_recall
from sim.recall_metrics import Pool, per_query, unit_rows


def pool(n_tracks: int, per: int, seed: int, noise: float) -> tuple[Pool, np.ndarray]:
    rng = np.random.default_rng(seed)
    tracks = np.repeat(np.arange(n_tracks), per)
    times = np.tile(np.arange(per) * 400_000, n_tracks)  # 0.4 s apart: near ones are excluded
    centres = rng.standard_normal((n_tracks, 32))
    x = unit_rows(centres[tracks] + noise * rng.standard_normal((len(tracks), 32)))
    classes = tracks % 3
    noisy = unit_rows(x + 0.3 * rng.standard_normal(x.shape))  # a lossy codec's round trip
    return Pool(x, tracks.astype(np.int64), classes.astype(np.int64), times.astype(np.int64)), (
        noisy
    )


@pytest.mark.parametrize(("n_tracks", "noise"), [(40, 1.5), (CHUNK // 3, 0.8)])
def test_it_agrees_with_the_fidelity_bench(n_tracks: int, noise: float) -> None:
    p, decoded = pool(n_tracks, 5, seed=n_tracks, noise=noise)
    bench = per_query(p, decoded, p.vectors).track_r10
    ours = same_track_recall(p.vectors, decoded, p.tracks, p.times_us)
    measured = bench[~np.isnan(bench)]
    assert ours.measured == len(measured)
    assert ours.skipped == int(np.isnan(bench).sum())
    assert ours.recall == pytest.approx(float(measured.mean()))
    assert 0.2 < ours.recall < 0.95  # neither trivial nor hopeless: the check can fail


def test_near_sightings_do_not_count_and_lone_tracks_are_skipped() -> None:
    x = unit_rows(np.eye(4, dtype=np.float32) + 0.01)
    tracks = np.array([1, 1, 2, 3])
    # row 1 is row 0's only other sighting, 0.5 s away: not far enough; tracks 2 and 3 alone
    near = same_track_recall(x, x, tracks, np.array([0, 500_000, 0, 0]))
    assert (near.measured, near.skipped) == (0, 4)
    assert np.isnan(near.recall)
    far = same_track_recall(x, x, tracks, np.array([0, 2_000_000, 0, 0]))
    assert (far.measured, far.recall) == (2, 1.0)
    untimed = same_track_recall(x, x, tracks)  # without times every other sighting counts
    assert (untimed.measured, untimed.recall) == (2, 1.0)


def test_rows_that_do_not_line_up_are_refused() -> None:
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="same rows"):
        same_track_recall(x, x[:3], np.arange(4))
    with pytest.raises(ValueError, match="times_us has 2 rows"):
        same_track_recall(x, x, np.arange(4), np.arange(2))
