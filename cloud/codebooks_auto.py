"""The cloud's codebook auto-fitter: no manual per-site step.

Edges start on a universal rung (f32, f16 or int8: codes any cloud decodes). Once the catalog
holds ``codebooks.auto_fit_min_vectors`` embeddings of one encoder space on those rungs, the
fitter decodes the newest ``auto_fit_max_vectors`` of them, fits a PCA + PQ codebook with
faiss (:func:`cloud.codebook_fit.fit_codebook`, off the event loop), and stores it by content
hash (:class:`cloud.codebooks.CodebookLibrary`), from where each session offers it to its edge.

Runs on one replica at a time (the ``codebooks`` lease, :mod:`cloud.leases`); idempotent: a
space with a codebook is not fitted again, and the same samples give the same codebook (the
same content hash: stored once). Progress is logged; ``/metrics`` has
``semcom_codebooks_fitted_total``, ``semcom_codebook_fit_seconds``,
``semcom_codebook_heldout_recall`` and ``semcom_codebook_universal_vectors`` per space.
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

from cloud.codebook_fit import fit_codebook
from cloud.codebooks import CodebookLibrary
from cloud.codebooks_config import CodebooksConfig
from cloud.schema import codecs as codecs_table
from cloud.schema import embeddings, spaces
from shared.vectors import builtin_codecs, create_codec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    space: str
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
            "Codebooks the cloud fitted, by space.",
            ["space"],
            registry=r,
        )
        self.fit_seconds = Gauge(
            "semcom_codebook_fit_seconds", "Duration of the last fit (s).", ["space"], registry=r
        )
        self.recall = Gauge(
            "semcom_codebook_heldout_recall",
            "Held-out 10-recall@10 of the space's last fitted codebook.",
            ["space"],
            registry=r,
        )
        self.universal = Gauge(
            "semcom_codebook_universal_vectors",
            "Embeddings on universal rungs (f32/f16/int8) of a space without a codebook yet, "
            "counted up to auto_fit_min_vectors.",
            ["space"],
            registry=r,
        )

    def due(self) -> list[tuple[int, str, str, int, int]]:
        """Spaces without a codebook: (space id, name, encoder, dim, universal embeddings, counted
        up to ``auto_fit_min_vectors``: a bounded read per space, whatever the catalog's size),
        those with the most first."""
        have = self.library.spaces()
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
                if r.name in have or not universal:
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

    def samples(self, space_id: int, dim: int, limit: int) -> np.ndarray:
        """The newest ``limit`` universal-rung embeddings of a space, decoded (n, dim)."""
        universal = list(builtin_codecs())
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(codecs_table.c.codec_id, embeddings.c.code)
                .select_from(
                    embeddings.join(codecs_table, embeddings.c.codec == codecs_table.c.fingerprint)
                )
                .where(embeddings.c.space_id == space_id)
                .where(codecs_table.c.codec_id.in_(universal))
                .order_by(embeddings.c.detection_id.desc())
                .limit(limit)
            ).all()
        by_codec: dict[str, list[bytes]] = {}
        for codec_id, code in rows:
            by_codec.setdefault(str(codec_id), []).append(bytes(code))
        parts = []
        for codec_id, codes in by_codec.items():
            codec = create_codec(codec_id, dim)
            arr = np.frombuffer(b"".join(codes), np.uint8).reshape(len(codes), codec.code_bytes)
            parts.append(codec.decode(arr))
        return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)

    def run_once(self) -> list[FitResult]:
        """Fit every space that has enough universal embeddings and no codebook (blocking)."""
        cfg = self.config
        results = []
        for space_id, name, encoder, dim, n in self.due():
            if n < cfg.auto_fit_min_vectors:
                need = cfg.auto_fit_min_vectors
                logger.debug("space %s: %d of %d embeddings to fit", name, n, need)
                continue
            m = min(cfg.auto_fit_m, dim)
            logger.info("space %s: %d embeddings on universal rungs: fitting PQ%dx8", name, n, m)
            x = self.samples(space_id, dim, cfg.auto_fit_max_vectors)
            book, report = fit_codebook(
                x, m=m, reduced_dim=cfg.auto_fit_reduced_dim, progress=partial(_say, name)
            )
            book.info.update(space=name, encoder=encoder, source="cloud auto-fit")
            new = self.library.save(name, encoder, book)
            self.fitted.labels(name).inc()
            self.fit_seconds.labels(name).set(report.seconds)
            self.recall.labels(name).set(report.recall_at_10)
            self.universal.remove(name)
            logger.info(
                "space %s: fitted %s %s on %d embeddings in %.1f s, held-out recall@10 %.3f%s",
                name,
                book.codec_id,
                book.content_hash.hex()[:12],
                report.train,
                report.seconds,
                report.recall_at_10,
                "" if new else " (stored already)",
            )
            results.append(
                FitResult(
                    name,
                    book.content_hash,
                    book.codec_id,
                    len(x),
                    report.recall_at_10,
                    report.seconds,
                    new,
                )
            )
        return results

    async def run(self) -> None:
        """Check every ``auto_fit_period_s`` until cancelled (the fit runs in a thread)."""
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # the loop top: log, try again next period
                logger.exception("codebook auto-fit failed; trying again later")
            await asyncio.sleep(self.config.auto_fit_period_s)


def _say(space: str, text: str) -> None:
    logger.info("space %s: %s", space, text)
