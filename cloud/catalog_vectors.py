"""The catalog's embeddings as the vector index needs them: ids, rows read back, counts.

The catalog's encoded embeddings are the source of truth for every index (see
:mod:`cloud.indexer`): these are the reads the indexer's reconcile makes (which ids a space
holds, the rows of the ids its index lacks, decoded) and the count behind
``semcom_index_missing_vectors``. Codes are decoded with the codec they name: the cloud's
codebooks, or a built-in codec (f16, int8, ...) registered in the catalog by a Hello.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from cloud.codebooks import CodebookLibrary
from cloud.project import NewVectors
from cloud.schema import codecs as codecs_table
from cloud.schema import detections, embeddings, spaces
from shared.errors import CodebookError, CodecError
from shared.vectors import CodecSet, VectorCodec, create_codec

logger = logging.getLogger(__name__)

IN_LIST_MAX: Final = 500  # ids per "IN (...)" query when the wanted ids are scattered


@dataclass(frozen=True)
class SpaceRow:
    id: int
    name: str
    dim: int


class CatalogVectors:
    """Reads of the embeddings table for the indexer (thread-safe: a connection per call)."""

    def __init__(self, engine: Engine, codecs: CodecSet) -> None:
        self.engine = engine
        self.codecs = codecs
        self.skipped_undecodable = 0  # rows read back whose codec is unknown here
        self._known: dict[int, tuple[str, int]] = {}  # catalog codecs: fingerprint -> (id, dim)

    def spaces(self) -> list[SpaceRow]:
        """Every embedding space (and, as a side effect, the codecs the catalog knows)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(spaces.c.id, spaces.c.name, spaces.c.dim)).all()
            self._known = {
                int(r.fingerprint): (str(r.codec_id), int(r.dim))
                for r in conn.execute(select(codecs_table)).all()
            }
        return [SpaceRow(int(r.id), str(r.name), int(r.dim)) for r in rows]

    def ids(self, space_id: int) -> NDArray[np.int64]:
        """The embedding (detection) ids of a space, sorted."""
        with self.engine.connect() as conn:
            return np.fromiter(
                conn.execute(
                    select(embeddings.c.detection_id)
                    .where(embeddings.c.space_id == space_id)
                    .order_by(embeddings.c.detection_id)
                ).scalars(),
                np.int64,
            )

    def counts(self) -> dict[str, int]:
        """Embeddings per space name (one grouped count over the (space, id) index)."""
        with self.engine.connect() as conn:
            names = {r.id: str(r.name) for r in conn.execute(select(spaces.c.id, spaces.c.name))}
            counts = conn.execute(
                select(embeddings.c.space_id, func.count()).group_by(embeddings.c.space_id)
            ).all()
        return {names[space_id]: int(n) for space_id, n in counts}

    def total(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(embeddings)).scalar_one())

    def read(self, space: SpaceRow, ids: NDArray[np.int64]) -> NewVectors:
        """The rows of these (sorted) embedding ids, decoded; undecodable ones are skipped."""
        query = (
            select(
                embeddings.c.detection_id,
                embeddings.c.codec,
                embeddings.c.code,
                detections.c.camera_id,
                detections.c.class_id,
                detections.c.ts_us,
            )
            .join(detections, detections.c.id == embeddings.c.detection_id)
            .where(embeddings.c.space_id == space.id)
        )
        batch = NewVectors(space.name)
        if not len(ids):
            return batch
        lo, hi = int(ids[0]), int(ids[-1])
        with self.engine.connect() as conn:
            if hi - lo < 2 * len(ids):  # dense (the unsaved tail): one range scan
                found = conn.execute(query.where(embeddings.c.detection_id.between(lo, hi))).all()
                wanted = set(ids.tolist())
                rows = [r for r in found if int(r[0]) in wanted]
            else:  # scattered
                rows = []
                for at in range(0, len(ids), IN_LIST_MAX):
                    part = ids[at : at + IN_LIST_MAX].tolist()
                    rows += conn.execute(query.where(embeddings.c.detection_id.in_(part))).all()
        by_codec: dict[int, list[int]] = {}
        for n, row in enumerate(rows):
            by_codec.setdefault(int(row[1]), []).append(n)
        for fp, members in by_codec.items():
            codec = self._codec(fp)
            if codec is None:
                self.skipped_undecodable += len(members)
                continue
            codes = np.frombuffer(b"".join(rows[n][2] for n in members), np.uint8)
            batch.vectors.append(codec.decode(codes.reshape(len(members), -1)))
            batch.ids += [int(rows[n][0]) for n in members]
            batch.cameras += [int(rows[n][3]) for n in members]
            batch.classes += [int(rows[n][4]) for n in members]
            batch.ts_us += [int(rows[n][5]) for n in members]
        return batch

    def _fitted(self, fp: int) -> VectorCodec | None:
        """The codebook the cloud stored (``codebooks``) for a catalog codec, if any."""
        with self.engine.connect() as conn:
            content_hash = conn.execute(
                select(codecs_table.c.content_hash).where(codecs_table.c.fingerprint == fp)
            ).scalar()
        if content_hash is None:
            return None
        try:
            return CodebookLibrary(self.engine, self.codecs).by_hash(bytes(content_hash))
        except CodebookError as exc:
            logger.error(
                "the stored codebook %s cannot be read: %s", bytes(content_hash).hex(), exc
            )
            return None

    def _codec(self, fp: int) -> VectorCodec | None:
        if fp in self.codecs:
            return self.codecs.resolve(fp)
        if fp in self._known:
            codec_id, dim = self._known[fp]
            codec: VectorCodec | None
            try:
                codec = create_codec(codec_id, dim)
            except CodecError:
                codec = self._fitted(fp)  # a codebook another replica fitted, or one stored
            if codec is not None:
                self.codecs.add(codec)
                return codec
            logger.error(
                "embeddings coded with %s (%#010x) cannot be decoded: add its codebook to the "
                "cloud config (codebooks) and run `semcom cloud reindex`",
                codec_id,
                fp,
            )
        return None
