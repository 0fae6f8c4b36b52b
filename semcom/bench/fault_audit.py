"""The fault benchmark's ledger: what the edge produced against what the cloud stored.

Both sides are read from their own files once the processes have stopped, never from each
other's word:

- the **edge's spool** (SQLite): the seqs it allocated (its ``next_seq`` counter: seqs are
  allocated there, in the same transaction that stores the frame, so every seq below it was
  produced), what is still pending, and what it set aside (any table whose name says
  quarantine, with a ``seq`` column);
- the edge's **log**: spool evictions (``spool full: dropped ... seq N``);
- the **cloud's catalog** (SQLite): the journal's distinct seqs for the edge, and the catalog
  rows derived from them. A frame yields a known number of rows (an ``Embedding`` one
  detection row, or none when it joins its box's row, and one embedding row; a ``Detections``
  at most one detection row per box; a ``FrameCounts`` one row per class), so rows beyond that
  are duplicates, as are journal frames that repeat another frame's content under a new seq.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.codec import decode
from shared.errors import DecodeError
from shared.messages import Detections, Embedding, FrameCounts

_EVICTED = re.compile(r"spool full: dropped \S+ message seq (\d+)")
LISTED: int = 20  # seqs listed per category in the report


@dataclass
class SpoolLedger:
    produced: set[int]
    pending: set[int]
    quarantined: set[int]


@dataclass
class CatalogLedger:
    stored: set[int]
    duplicates: dict[str, int] = field(default_factory=dict)
    catalog_missing: dict[str, int] = field(default_factory=dict)
    embeddings: int = 0  # catalog embedding rows, every edge and space
    undecodable: int = 0

    @property
    def duplicated(self) -> int:
        return sum(self.duplicates.values())


def read_spool(path: Path) -> SpoolLedger:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        row = conn.execute("SELECT value FROM counters WHERE name = 'next_seq'").fetchone()
        pending = {int(r[0]) for r in conn.execute("SELECT seq FROM frames")}
        quarantined: set[int] = set()
        for table in sorted(t for t in tables if "quarantin" in t.lower()):
            columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            if "seq" in columns:
                quarantined |= {int(r[0]) for r in conn.execute(f"SELECT seq FROM {table}")}
    top = max([int(row[0]) - 1 if row else 0, *pending, *quarantined, 0])
    return SpoolLedger(set(range(1, top + 1)), pending, quarantined)


def evicted_seqs(log: str) -> set[int]:
    """Seqs the spool evicted to make room, from the edge's log."""
    return {int(m.group(1)) for m in _EVICTED.finditer(log)}


def _allowed_rows(frame: bytes) -> tuple[int, int, int, tuple[object, ...]]:
    """(detection rows, embedding rows, frame_counts rows) a frame may yield, and its content
    key."""
    env = decode(frame)
    msg = env.message
    key = (env.capture_ts_us, type(msg).__name__, repr(msg))
    if isinstance(msg, Embedding):
        return 1, 1, 0, key
    if isinstance(msg, Detections):
        return len(msg.boxes), 0, 0, key
    if isinstance(msg, FrameCounts):
        return 0, 0, len(msg.counts), key
    return 0, 0, 0, key


def read_catalog(db: Path, edge_id: str) -> CatalogLedger:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        journal = conn.execute(
            "SELECT seq, frame FROM journal_frames WHERE edge_id = ?", (edge_id,)
        ).fetchall()
        det_rows = dict(
            conn.execute(
                "SELECT seq, COUNT(*) FROM detections WHERE edge_id = ? GROUP BY seq", (edge_id,)
            ).fetchall()
        )
        emb_rows = conn.execute(
            "SELECT COUNT(*) FROM embeddings JOIN detections ON detections.id = "
            "embeddings.detection_id WHERE detections.edge_id = ?",
            (edge_id,),
        ).fetchone()[0]
        count_rows = conn.execute(
            "SELECT COUNT(*) FROM frame_counts JOIN cameras ON cameras.id = "
            "frame_counts.camera_id WHERE cameras.edge_id = ?",
            (edge_id,),
        ).fetchone()[0]
        all_embeddings = conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    return _ledger(journal, det_rows, emb_rows, count_rows, all_embeddings)


def read_catalog_url(url: str, edge_id: str) -> CatalogLedger:
    """:func:`read_catalog` of any catalog by SQLAlchemy URL (PostgreSQL shared by replicas)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    edge = {"edge": edge_id}
    try:
        with engine.connect() as conn:
            journal = conn.execute(
                text("SELECT seq, frame FROM journal_frames WHERE edge_id = :edge"), edge
            ).all()
            per_seq = "SELECT seq, COUNT(*) FROM detections WHERE edge_id = :edge GROUP BY seq"
            det_rows = {int(seq): int(n) for seq, n in conn.execute(text(per_seq), edge).all()}
            emb_rows = conn.execute(
                text(
                    "SELECT COUNT(*) FROM embeddings JOIN detections ON detections.id = "
                    "embeddings.detection_id WHERE detections.edge_id = :edge"
                ),
                edge,
            ).scalar_one()
            count_rows = conn.execute(
                text(
                    "SELECT COUNT(*) FROM frame_counts JOIN cameras ON cameras.id = "
                    "frame_counts.camera_id WHERE cameras.edge_id = :edge"
                ),
                edge,
            ).scalar_one()
            all_embeddings = conn.execute(text("SELECT COUNT(*) FROM embeddings")).scalar_one()
    finally:
        engine.dispose()
    rows = [(int(seq), bytes(frame)) for seq, frame in journal]
    return _ledger(rows, det_rows, emb_rows, count_rows, all_embeddings)


def _ledger(
    journal: list[tuple[int, bytes]] | list[Any],
    det_rows: dict[Any, Any],
    emb_rows: int,
    count_rows: int,
    all_embeddings: int,
) -> CatalogLedger:
    ledger = CatalogLedger({int(seq) for seq, _ in journal}, embeddings=int(all_embeddings))
    seen: Counter[tuple[object, ...]] = Counter()
    det_excess = 0
    want_emb = want_counts = 0
    for seq, frame in journal:
        try:
            dets, embs, counts, key = _allowed_rows(bytes(frame))
        except DecodeError:
            ledger.undecodable += 1
            continue
        seen[key] += 1
        det_excess += max(0, int(det_rows.pop(seq, 0)) - dets)
        want_emb += embs
        want_counts += counts
    orphans = sum(int(n) for n in det_rows.values())  # rows of seqs the journal lacks
    ledger.duplicates = {
        "detection_rows": det_excess + orphans,
        "embedding_rows": max(0, int(emb_rows) - want_emb),
        "frame_count_rows": max(0, int(count_rows) - want_counts),
        "journal_content": sum(n - 1 for n in seen.values()),
    }
    ledger.catalog_missing = {
        "embedding_rows": max(0, want_emb - int(emb_rows)),
        "frame_count_rows": max(0, want_counts - int(count_rows)),
    }
    return ledger


def index_missing(metrics: dict[str, float], catalog_embeddings: int) -> dict[str, object]:
    """Catalog embeddings not in the vector index: the cloud's ``semcom_index_missing_vectors``
    when it exports it, else the catalog's count (read here) minus the index sizes it exports
    (``semcom_index_vectors``); both figures are reported."""

    def total(name: str) -> float | None:
        values = [v for k, v in metrics.items() if k.split("{")[0] == name]
        return sum(values) if values else None

    indexed = int(total("semcom_index_vectors") or 0)
    exported = total("semcom_index_missing_vectors")
    return {
        "index_missing": int(exported) if exported is not None else catalog_embeddings - indexed,
        "index_missing_from": (
            "semcom_index_missing_vectors"
            if exported is not None
            else "catalog embeddings - semcom_index_vectors"
        ),
        "index_vectors": indexed,
        "catalog_embeddings": catalog_embeddings,
    }


def listed(seqs: set[int]) -> list[int]:
    return sorted(seqs)[:LISTED]
