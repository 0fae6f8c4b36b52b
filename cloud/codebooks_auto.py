"""The cloud's codebook auto-fitter: no manual per-site step.

Edges start on a universal rung (f32, f16 or int8: codes any cloud decodes). Once the catalog
holds ``codebooks.auto_fit_min_vectors`` embeddings of one encoder space on those rungs, the
fitter decodes the newest ``auto_fit_max_vectors`` of them, with each one's catalog track and
capture time, fits a PCA + PQ codebook with faiss (:func:`cloud.codebook_fit.fit_codebook`, off
the event loop; whole tracks are held out and the projection, PCA or PCA + OPQ, is chosen by
held-out same-track recall@10), and stores it by content
hash (:class:`cloud.codebooks.CodebookLibrary`), from where each session offers it to its edge.
One codebook per code size in ``auto_fit_m`` (64 and 32 bytes by default): each edge takes the
largest its own byte budget allows (:mod:`cloud.codebook_push`).

Runs on one replica at a time (the ``codebooks`` lease, :mod:`cloud.leases`); idempotent: a
code size a space has a codebook of is not fitted again for it, and the same samples give the
same codebook (the same content hash: stored once). Progress is logged; ``/metrics`` has
``semcom_codebooks_fitted_total``, ``semcom_codebook_fit_seconds``,
``semcom_codebook_heldout_recall`` (per space and code size) and
``semcom_codebook_universal_vectors`` per space.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from cloud import heap
from cloud.codebook_fit import fit_codebook
from cloud.codebooks import CodebookLibrary
from cloud.codebooks_config import CodebooksConfig
from cloud.schema import codecs as codecs_table
from cloud.schema import detections, embeddings, spaces
from shared.errors import CodecError
from shared.vectors import builtin_codecs, create_codec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Samples:
    """Decoded universal-rung embeddings of a space, with their catalog track ids (a detection
    without a track is a track of its own: a negative id) and capture times."""

    vectors: np.ndarray  # (n, dim) float32
    tracks: np.ndarray  # (n,) int64
    times_us: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True)
class FitResult:
    space: str
    code_bytes: int
    content_hash: bytes
    codec_id: str
    vectors: int
    recall_at_10: float
    seconds: float
    new: bool  # False: the same codebook was stored already


class CodebookFitter:
    def __init__(
        self,
        engine: Engine,
        library: CodebookLibrary,
        config: CodebooksConfig,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.engine = engine
        self.library = library
        self.config = config
        r = registry or CollectorRegistry()
        self.fitted = Counter(
            "semcom_codebooks_fitted",
            "Codebooks the cloud fitted, by space and code size (bytes).",
            ["space", "code_bytes"],
            registry=r,
        )
        self.fit_seconds = Gauge(
            "semcom_codebook_fit_seconds",
            "Duration of the last fit (s).",
            ["space", "code_bytes"],
            registry=r,
        )
        self.recall = Gauge(
            "semcom_codebook_heldout_recall",
            "Held-out 10-recall@10 of the space's last fitted codebook of that code size.",
            ["space", "code_bytes"],
            registry=r,
        )
        self.universal = Gauge(
            "semcom_codebook_universal_vectors",
            "Embeddings on universal rungs (f32/f16/int8) of a space that lacks a codebook of "
            "a configured code size, counted up to auto_fit_min_vectors.",
            ["space"],
            registry=r,
        )

    def wanted(self, dim: int) -> list[int]:
        """The code sizes (bytes) a space of ``dim`` dimensions gets, largest first (a size
        above ``dim`` is fitted as ``dim``: one dimension per sub-quantiser at least)."""
        return sorted({min(m, dim) for m in self.config.auto_fit_m}, reverse=True)

    def due(self) -> list[tuple[int, str, str, int, int]]:
        """Spaces lacking a codebook of a configured code size: (space id, name, encoder, dim,
        universal embeddings, counted up to ``auto_fit_min_vectors``: a bounded read per space,
        whatever the catalog's size), those with the most first."""
        have = self.library.sizes()
        need = self.config.auto_fit_min_vectors
        with self.engine.connect() as conn:
            universal = list(
                conn.execute(
                    select(codecs_table.c.fingerprint).where(
                        codecs_table.c.codec_id.in_(list(builtin_codecs()))
                    )
                ).scalars()
            )
            rows = conn.execute(
                select(spaces.c.id, spaces.c.name, spaces.c.encoder, spaces.c.dim)
            ).all()
            out = []
            for r in rows:
                if not universal or set(self.wanted(int(r.dim))) <= have.get(str(r.name), set()):
                    continue
                some = (
                    select(embeddings.c.detection_id)
                    .where(embeddings.c.space_id == r.id, embeddings.c.codec.in_(universal))
                    .limit(need)
                    .subquery()
                )
                n = int(conn.execute(select(func.count()).select_from(some)).scalar_one())
                self.universal.labels(r.name).set(n)
                out.append((int(r.id), str(r.name), str(r.encoder), int(r.dim), n))
        return sorted(out, key=lambda t: -t[4])

    def samples(self, space_id: int, dim: int, limit: int) -> Samples:
        """The newest ``limit`` universal-rung embeddings of a space, decoded (n, dim), with
        their detections' track ids and capture times (one bounded query)."""
        universal = list(builtin_codecs())
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    codecs_table.c.codec_id,
                    embeddings.c.code,
                    detections.c.track_id,
                    detections.c.ts_us,
                )
                .select_from(
                    embeddings.join(
                        codecs_table, embeddings.c.codec == codecs_table.c.fingerprint
                    ).join(detections, embeddings.c.detection_id == detections.c.id)
                )
                .where(embeddings.c.space_id == space_id)
                .where(codecs_table.c.codec_id.in_(universal))
                .order_by(embeddings.c.detection_id.desc())
                .limit(limit)
            ).all()
        by_codec: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            by_codec.setdefault(str(row.codec_id), []).append(i)
        vectors = np.zeros((len(rows), dim), np.float32)
        for codec_id, at in by_codec.items():
            codec = create_codec(codec_id, dim)
            codes = b"".join(bytes(rows[i].code) for i in at)
            arr = np.frombuffer(codes, np.uint8).reshape(len(at), codec.code_bytes)
            vectors[at] = codec.decode(arr)
        tracks = np.array([-1 if r.track_id is None else int(r.track_id) for r in rows], np.int64)
        untracked = tracks < 0
        tracks[untracked] = -1 - np.arange(int(untracked.sum()))  # each a track of its own
        times = np.array([int(r.ts_us) for r in rows], np.int64)
        return Samples(vectors, tracks, times)

    def run_once(self) -> list[FitResult]:
        """Fit, for every space that has enough universal embeddings, each configured code size
        it has no codebook of yet, largest first (blocking)."""
        cfg = self.config
        results = []
        for space_id, name, encoder, dim, n in self.due():
            if n < cfg.auto_fit_min_vectors:
                need = cfg.auto_fit_min_vectors
                logger.debug("space %s: %d of %d embeddings to fit", name, n, need)
                continue
            have = self.library.sizes().get(name, set())
            missing = [m for m in self.wanted(dim) if m not in have]
            if not missing:
                continue  # another replica fitted them meanwhile
            x = self.samples(space_id, dim, cfg.auto_fit_max_vectors)
            for m in missing:
                logger.info(
                    "space %s: %d embeddings on universal rungs: fitting PQ%dx8", name, n, m
                )
                try:
                    results.append(self._fit(name, encoder, x, m))
                except CodecError as exc:  # one size that cannot be fitted keeps no other back
                    logger.error("space %s: PQ%dx8 not fitted (tried later): %s", name, m, exc)
            self.universal.remove(name)
        return results

    def _fit(self, name: str, encoder: str, x: Samples, m: int) -> FitResult:
        book, report = fit_codebook(
            x.vectors,
            m=m,
            reduced_dim=self.config.auto_fit_reduced_dim,
            tracks=x.tracks,
            times_us=x.times_us,
            opq=self.config.auto_fit_opq,
            progress=partial(_say, name),
        )
        book.info.update(space=name, encoder=encoder, source="cloud auto-fit")
        new = self.library.save(name, encoder, book)
        size = str(m)
        self.fitted.labels(name, size).inc()
        self.fit_seconds.labels(name, size).set(report.seconds)
        self.recall.labels(name, size).set(report.recall_at_10)
        logger.info(
            "space %s: fitted %s %s on %d embeddings in %.1f s, held-out recall@10 %.3f; "
            "projection %s chosen by %s from %s%s",
            name,
            book.codec_id,
            book.content_hash.hex()[:12],
            report.train,
            report.seconds,
            report.recall_at_10,
            book.info.get("chosen"),
            report.criterion,
            book.info.get("selection"),
            "" if new else " (stored already)",
        )
        return FitResult(
            name,
            m,
            book.content_hash,
            book.codec_id,
            len(x),
            report.recall_at_10,
            report.seconds,
            new,
        )

    async def run(self) -> None:
        """Check every ``auto_fit_period_s`` until cancelled (the fit runs in a thread)."""
        while True:
            try:
                if await asyncio.to_thread(self.run_once):
                    # a fit's samples and faiss's buffers are freed now: give the pages back
                    # at once (the idle trim waits for a quiet writer, which may not come)
                    await asyncio.to_thread(heap.give_back)
            except Exception:  # the loop top: log, try again next period
                logger.exception("codebook auto-fit failed; trying again later")
            await asyncio.sleep(self.config.auto_fit_period_s)


def _say(space: str, text: str) -> None:
    logger.info("space %s: %s", space, text)
