"""The ingest benchmark's ledger: what the load generator produced against what was stored.

Read from the database (SQLite or PostgreSQL, through SQLAlchemy) once the clouds stopped,
never from what the senders or the cloud said. Every frame of the benchmark's stream is one
``Embedding`` (:mod:`semcom.bench.ingest_stream`), so a stored frame yields exactly one journal
row, one detection row (its ``edge_id`` and ``seq`` name the frame) and one embedding row, and
no two frames of an edge share a capture time. Hence, per edge:

- ``stored``: distinct journal seqs among those produced (1..n); ``lost`` = produced - stored;
- ``duplicated``: detection rows beyond one per seq, detection rows of seqs the journal lacks,
  embedding rows beyond one per detection, journal frames repeating another's capture time;
- ``catalog_missing``: journal frames without their detection or embedding row.

:mod:`semcom.bench.fault_audit` does the same for any message mix, on SQLite only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, bindparam, create_engine, text


@dataclass
class EdgeLedger:
    edge_id: str
    produced: int
    stored: int = 0
    journal_rows: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)
    catalog_missing: dict[str, int] = field(default_factory=dict)
    first_received_us: int | None = None
    last_received_us: int | None = None

    @property
    def lost(self) -> int:
        return self.produced - self.stored

    @property
    def duplicated(self) -> int:
        return sum(self.duplicates.values())


def _grouped(conn: Connection, sql: str, edges: Sequence[str]) -> dict[str, tuple[int, ...]]:
    stmt = text(sql).bindparams(bindparam("edges", expanding=True))
    rows = conn.execute(stmt, {"edges": list(edges)}).all()
    return {str(r[0]): tuple(int(v) if v is not None else 0 for v in r[1:]) for r in rows}


def read_ledger(url: str, produced: dict[str, int]) -> list[EdgeLedger]:
    """Each edge's ledger; ``produced`` is edge id -> frames it produced (seqs 1..n)."""
    edges = sorted(produced)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            journal = _grouped(
                conn,
                "SELECT edge_id, COUNT(*), COUNT(DISTINCT capture_ts_us), MIN(received_us), "
                "MAX(received_us) FROM journal_frames WHERE edge_id IN :edges GROUP BY edge_id",
                edges,
            )
            in_range = {
                e: _grouped(
                    conn,
                    "SELECT edge_id, COUNT(*) FROM journal_frames WHERE edge_id IN :edges "
                    f"AND seq BETWEEN 1 AND {int(n)} GROUP BY edge_id",
                    [e],
                ).get(e, (0,))[0]
                for e, n in produced.items()
            }
            detections = _grouped(
                conn,
                "SELECT edge_id, COUNT(*), COUNT(DISTINCT seq) FROM detections "
                "WHERE edge_id IN :edges GROUP BY edge_id",
                edges,
            )
            orphans = _grouped(
                conn,
                "SELECT d.edge_id, COUNT(*) FROM detections d LEFT JOIN journal_frames j "
                "ON j.edge_id = d.edge_id AND j.seq = d.seq "
                "WHERE d.edge_id IN :edges AND j.seq IS NULL GROUP BY d.edge_id",
                edges,
            )
            embeddings = _grouped(
                conn,
                "SELECT d.edge_id, COUNT(*), COUNT(DISTINCT e.detection_id) FROM embeddings e "
                "JOIN detections d ON d.id = e.detection_id "
                "WHERE d.edge_id IN :edges GROUP BY d.edge_id",
                edges,
            )
    finally:
        engine.dispose()
    out = []
    for edge in edges:
        rows, distinct_ts, first, last = journal.get(edge, (0, 0, 0, 0))
        det_rows, det_seqs = detections.get(edge, (0, 0))
        emb_rows, emb_dets = embeddings.get(edge, (0, 0))
        out.append(
            EdgeLedger(
                edge,
                produced[edge],
                stored=in_range[edge],
                journal_rows=rows,
                duplicates={
                    "detection_rows": det_rows - det_seqs + orphans.get(edge, (0,))[0],
                    "embedding_rows": emb_rows - emb_dets,
                    "journal_content": rows - distinct_ts,
                },
                catalog_missing={
                    "detection_rows": max(0, rows - det_seqs),
                    "embedding_rows": max(0, rows - emb_dets),
                },
                first_received_us=first if rows else None,
                last_received_us=last if rows else None,
            )
        )
    return out
