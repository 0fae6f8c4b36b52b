"""``bench fidelity``'s measurement: every codec on every fold, codebooks never measured where
they were fitted.

A fold names the clips PQ codebooks are fitted on and the clips measured (one pool: their
crops are searched together). Leave-one-clip-out makes one fold per clip, fitted on all the
others; a fixed split makes one fold. Parameter-free codecs (f32, f16, int8) are measured on
the same pools, so every ratio to f32 compares like with like. Per-query outcomes of all folds
are pooled before averaging. Decoded vectors are L2-normalised before the search, as the
cloud's index does with every vector it stores and every query.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from semcom.bench.fidelity_data import CropSample
from shared.codec import encode
from shared.geometry import Box
from shared.messages import Embedding, EmitReason, Envelope
from shared.pq import CENTROIDS, fit_pq
from shared.vectors import VectorCodec, create_codec, fingerprint
from sim.recall_metrics import (
    SECOND_US,
    PerQuery,
    Pool,
    Summary,
    f32_truth,
    per_query,
    summarise,
    unit_rows,
)

BUILTIN: Final = ("f32", "f16", "int8")
#: a fixed capture epoch for the messages (2026-01-01 UTC, us): timestamps of today's size
_EPOCH_US: Final = 1_767_225_600_000_000
_SEND_DELAY_US: Final = 35_000

ROI_MESSAGE: Final = (
    "one Embedding frame as the edge sends it (shared.codec.encode; zstd without a dictionary "
    "when that is smaller): 5-byte prefix; envelope (edge id 'edge-01', seq, capture time, "
    "send delay 35 ms); camera 'cam-01', track id, reason, class, confidence and box of the "
    "crop's own detection; codec fingerprint; code"
)

Queries = Literal["decoded", "f32"]


class SplitError(ValueError):
    """A fit/measure split that cannot be made from the sample's clips."""


@dataclass(frozen=True)
class Fold:
    fit: tuple[int, ...]  # clip indices codebooks are fitted on
    measure: tuple[int, ...]  # clip indices measured (one pool)


def make_folds(
    clip_names: Sequence[str], crops_per_clip: Sequence[int], fit_clips: Sequence[str] = ()
) -> list[Fold]:
    """Leave-one-clip-out when ``fit_clips`` is empty, else one fold: fit on those, measure
    the rest. Clips without crops are left out. :class:`SplitError` for unknown names or a
    side left empty."""
    present = [i for i, n in enumerate(crops_per_clip) if n > 0]
    if not fit_clips:
        if len(present) < 2:
            raise SplitError(
                f"leave-one-clip-out needs at least 2 clips with crops, got {len(present)}: "
                "add sources"
            )
        return [Fold(tuple(j for j in present if j != i), (i,)) for i in present]
    unknown = sorted(set(fit_clips) - set(clip_names))
    if unknown:
        raise SplitError(
            f"--fit-clips names no clip of the sample: {', '.join(unknown)} "
            f"(clips: {', '.join(clip_names)})"
        )
    fit = tuple(i for i in present if clip_names[i] in set(fit_clips))
    measure = tuple(i for i in present if i not in fit)
    if not fit or not measure:
        raise SplitError(
            "--fit-clips must leave clips with crops on both sides (fitted: "
            f"{len(fit)}, measured: {len(measure)})"
        )
    return [Fold(fit, measure)]


def describe_folds(folds: Sequence[Fold], clip_names: Sequence[str]) -> str:
    if len(folds) > 1 and all(len(f.measure) == 1 for f in folds):
        return (
            f"leave-one-clip-out over {len(folds)} clips: each clip is measured (as its own "
            "search pool) with codebooks fitted on the other clips"
        )
    f = folds[0]
    return (
        f"codebooks fitted on {', '.join(clip_names[i] for i in f.fit)}; measured on "
        f"{', '.join(clip_names[i] for i in f.measure)} (one search pool)"
    )


@dataclass(frozen=True)
class CodecResult:
    codec: str
    code_bytes: int
    bytes_per_roi: float
    summary: Summary
    reduced_dim: list[int]  # PQ: the fitted reduced dim of each fold


def roi_frame(codec: VectorCodec, code: bytes, sample: CropSample, i: int) -> bytes:
    """The encoded RoI message of crop ``i`` (see ``ROI_MESSAGE``)."""
    ts = _EPOCH_US + int(sample.times_us[i])
    x1, y1, x2, y2 = (float(v) for v in sample.boxes[i])
    return encode(
        Envelope(
            edge_id="edge-01",
            seq=1_000_000 + i,
            capture_ts_us=ts,
            send_ts_us=ts + _SEND_DELAY_US,
            message=Embedding(
                camera="cam-01",
                track_id=int(sample.track_ids[i]),
                reason=EmitReason.FIRST_SIGHT,
                class_id=int(sample.classes[i]),
                confidence=float(sample.confidences[i]),
                box=Box(x1, y1, x2, y2),
                codec=fingerprint(codec),
                code=code,
            ),
        )
    )


def _fold_codecs(
    sample: CropSample,
    fold: Fold,
    pq_m: Sequence[int],
    seed: int,
    say: Callable[[str], None],
    given: Sequence[tuple[str, VectorCodec]] = (),
) -> list[tuple[str, VectorCodec]]:
    dim = sample.embeddings.shape[1]
    codecs = [(c, create_codec(c, dim)) for c in BUILTIN]
    fit_rows = np.isin(sample.clips, fold.fit)
    n_fit = int(fit_rows.sum())
    if pq_m and n_fit < CENTROIDS:
        names = ", ".join(sample.clip_names[i] for i in fold.fit)
        raise SplitError(
            f"the codebooks of a fold would be fitted on {n_fit} crops ({names}); PQ needs at "
            f"least {CENTROIDS}: add clips, lower --frame-stride, or pass --pq-m ''"
        )
    for m in pq_m:
        say(f"fitting pq{m}x8 on {n_fit} crops")
        book = fit_pq(sample.embeddings[fit_rows], m=m, seed=seed)
        codecs.append((book.codec_id, book))
    for label, codec in given:
        if codec.dim != dim:
            raise SplitError(
                f"codebook {label} codes {codec.dim}-d vectors; the encoder's are {dim}-d"
            )
        codecs.append((label, codec))
    return codecs


def run(
    sample: CropSample,
    folds: Sequence[Fold],
    *,
    pq_m: Sequence[int] = (8, 16, 32, 64),
    queries: Queries = "decoded",
    gap_us: int = SECOND_US,
    seed: int = 0,
    say: Callable[[str], None] = lambda s: None,
    codebooks: Sequence[tuple[str, VectorCodec]] = (),
) -> list[CodecResult]:
    """Measure f32, f16, int8 and a PQ code per ``pq_m`` on every fold; f32 first.
    ``codebooks``: (label, codec) fitted elsewhere (``semcom codec fit``), measured as given on
    every fold (the caller makes sure they were not fitted on the measured clips)."""
    values: dict[str, list[PerQuery]] = {}
    sizes: dict[str, list[int]] = {}
    code_bytes: dict[str, int] = {}
    dims: dict[str, list[int]] = {}
    for k, fold in enumerate(folds):
        rows = np.flatnonzero(np.isin(sample.clips, fold.measure))
        names = ", ".join(sample.clip_names[i] for i in fold.measure)
        say(f"fold {k + 1}/{len(folds)}: measuring on {names} ({len(rows)} crops)")
        pool = Pool(
            unit_rows(sample.embeddings[rows]),  # as the f32 codec's vectors reach the index
            sample.tracks[rows],
            sample.classes[rows],
            sample.times_us[rows],
        )
        truth = f32_truth(pool)
        for label, codec in _fold_codecs(sample, fold, pq_m, seed, say, codebooks):
            start = time.perf_counter()
            codes = codec.encode(pool.vectors)
            decoded = unit_rows(codec.decode(codes))
            q = decoded if queries == "decoded" else pool.vectors
            values.setdefault(label, []).append(per_query(pool, decoded, q, truth, gap_us))
            sizes.setdefault(label, []).extend(
                len(roi_frame(codec, codes[j].tobytes(), sample, int(i)))
                for j, i in enumerate(rows)
            )
            code_bytes[label] = codec.code_bytes
            reduced = getattr(codec, "reduced_dim", None)
            if reduced is not None:
                dims.setdefault(label, []).append(int(reduced))
            say(f"  {label}: {time.perf_counter() - start:.1f} s")
    return [
        CodecResult(
            label,
            code_bytes[label],
            float(np.mean(sizes[label])),
            summarise(PerQuery.concat(parts)),
            dims.get(label, []),
        )
        for label, parts in values.items()
    ]


def ratio(value: float, reference: float) -> float | None:
    return round(value / reference, 4) if reference > 0 and np.isfinite(value) else None


def targets(rows: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """The issue's "done when" checks on result rows (as in the JSON report)."""

    def best(max_bytes: int, key: str) -> dict[str, object] | None:
        fitting = [r for r in rows if int(str(r["code_bytes"])) <= max_bytes and r[key] is not None]
        return max(fitting, key=lambda r: float(str(r[key]))) if fitting else None

    int8 = next((r for r in rows if r["codec"] == "int8"), None)
    checks: list[tuple[str, dict[str, object] | None, str, float]] = [
        ("int8 keeps >= 0.99 of f32's class precision@10", int8, "class_p10_ratio", 0.99),
        ("int8 keeps >= 0.99 of f32's same-track recall@10", int8, "track_r10_ratio", 0.99),
        (
            "a code of <= 16 bytes keeps >= 0.98 of f32's class precision@10",
            best(16, "class_p10_ratio"),
            "class_p10_ratio",
            0.98,
        ),
        (
            "a code of <= 32 bytes keeps >= 0.97 of f32's same-track recall@10",
            best(32, "track_r10_ratio"),
            "track_r10_ratio",
            0.97,
        ),
    ]
    out: list[dict[str, object]] = []
    for text, row, key, goal in checks:
        value = None if row is None else row[key]
        out.append(
            {
                "target": text,
                "codec": None if row is None else row["codec"],
                "value": value,
                "met": value is not None and float(str(value)) >= goal,
            }
        )
    return out


def as_rows(results: Sequence[CodecResult]) -> list[dict[str, object]]:
    """The JSON rows: figures rounded, ratios to the f32 row."""
    ref = next(r.summary for r in results if r.codec == "f32")
    rows: list[dict[str, object]] = []
    for r in results:
        s = r.summary
        row: dict[str, object] = {
            "codec": r.codec,
            "code_bytes": r.code_bytes,
            "bytes_per_roi": round(r.bytes_per_roi, 1),
            "class_p10": round(s.class_p10, 4),
            "class_p10_ratio": ratio(s.class_p10, ref.class_p10),
            "track_r10": round(s.track_r10, 4),
            "track_r10_ratio": ratio(s.track_r10, ref.track_r10),
            "recall_10_at_10": round(s.recall_10_at_10, 4),
            "recall_1_at_10": round(s.recall_1_at_10, 4),
        }
        if r.reduced_dim:
            row["reduced_dim"] = r.reduced_dim
        rows.append(row)
    return rows


def counts(results: Sequence[CodecResult]) -> dict[str, int]:
    s = results[0].summary
    return {
        "queries": s.queries,
        "track_queries": s.track_queries,
        "track_queries_skipped": s.track_skipped,
    }


def tracks_per_clip(sample: CropSample) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, name in enumerate(sample.clip_names):
        t: NDArray[np.int64] = sample.track_ids[sample.clips == i]
        out[name] = len(np.unique(t))
    return out
