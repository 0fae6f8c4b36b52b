"""Descriptions in the catalog: stored once per job, listed by camera and time, searched by text.

A description covers a camera and half-open window ``[from_us, to_us)``; a time filter
``[from, to)`` selects the descriptions whose window overlaps it. Lists are newest window
first, paged by keyset on ``(from_us desc, id desc)`` with the catalog's opaque cursor. Text
search is full-text (:mod:`cloud.describe.fts`), best match first; a class filter keeps the
descriptions that counted at least one object of a given class (classes outside the named
road users are counted as ``other``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Select,
    bindparam,
    column,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.engine import Engine

from cloud.catalog import decode_cursor, encode_cursor
from cloud.describe import fts
from cloud.describe.base import Described
from cloud.describe.context import Window
from cloud.describe.schema import count_key
from cloud.index.base import SearchFilter
from cloud.schema import cameras, descriptions


@dataclass(frozen=True)
class DescriptionRecord:
    id: int
    camera_id: int | None
    camera: str | None  # its name, when the camera is known
    from_us: int
    to_us: int
    created_us: int
    describer: str
    summary: str
    body: dict[str, Any]  # the structured output and its "meta"


@dataclass(frozen=True)
class DescriptionPage:
    items: list[DescriptionRecord]
    next_cursor: str | None


def description_body(window: Window, described: Described) -> dict[str, Any]:
    """What is stored in ``descriptions.body``: the validated output plus how it was made."""
    return {
        **described.output.model_dump(mode="json"),
        "meta": {
            "reason": window.reason,
            "images": list(described.images),
            "attempts": described.attempts,
            "prompt_tokens": described.usage.prompt_tokens,
            "completion_tokens": described.usage.completion_tokens,
        },
    }


def insert_description(
    conn: Connection, window: Window, described: Described, created_us: int
) -> int:
    """Insert inside the caller's transaction; returns the new id."""
    result = conn.execute(
        descriptions.insert()
        .values(
            camera_id=window.camera_id,
            from_us=window.from_us,
            to_us=window.to_us,
            created_us=created_us,
            describer=described.describer,
            summary=described.output.summary,
            body=description_body(window, described),
        )
        .returning(descriptions.c.id)
    )
    return int(result.scalar_one())


def _select() -> Select[Any]:
    return select(descriptions, cameras.c.name.label("camera_name")).select_from(
        descriptions.outerjoin(cameras, cameras.c.id == descriptions.c.camera_id)
    )


def _record(row: Any) -> DescriptionRecord:
    m = row._mapping
    body = m["body"]
    return DescriptionRecord(
        id=int(m["id"]),
        camera_id=None if m["camera_id"] is None else int(m["camera_id"]),
        camera=None if m["camera_name"] is None else str(m["camera_name"]),
        from_us=int(m["from_us"]),
        to_us=int(m["to_us"]),
        created_us=int(m["created_us"]),
        describer=str(m["describer"]),
        summary=str(m["summary"]),
        body=body if isinstance(body, dict) else {},
    )


def _conditions(
    cameras_: Sequence[int] | None, from_us: int | None, to_us: int | None
) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if cameras_ is not None:
        out.append(descriptions.c.camera_id.in_(list(cameras_)))
    if from_us is not None:
        out.append(descriptions.c.to_us > from_us)
    if to_us is not None:
        out.append(descriptions.c.from_us < to_us)
    return out


def _has_class(record: DescriptionRecord, keys: set[str]) -> bool:
    counts = record.body.get("counts")
    if not isinstance(counts, dict):
        return False
    return any(isinstance(counts.get(k), int) and counts[k] > 0 for k in keys)


class DescriptionStore:
    """Reads of the ``descriptions`` table; each call opens its own short connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, description_id: int) -> DescriptionRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(_select().where(descriptions.c.id == description_id)).first()
        return None if row is None else _record(row)

    def page(
        self,
        cameras_: Sequence[int] | None,
        from_us: int | None,
        to_us: int | None,
        limit: int,
        cursor: str | None = None,
    ) -> DescriptionPage:
        """Newest window first; ``cursor`` continues after the page that returned it.

        Raises :class:`~cloud.catalog_records.InvalidCursor` for a cursor it did not make.
        """
        where = _conditions(cameras_, from_us, to_us)
        if cursor is not None and cursor.strip():
            start_us, last_id = decode_cursor(cursor)
            where += [
                descriptions.c.from_us <= start_us,
                or_(descriptions.c.from_us < start_us, descriptions.c.id < last_id),
            ]
        query = (
            _select()
            .where(*where)
            .order_by(descriptions.c.from_us.desc(), descriptions.c.id.desc())
            .limit(limit + 1)
        )
        with self.engine.connect() as conn:
            items = [_record(r) for r in conn.execute(query)]
        if len(items) <= limit:
            return DescriptionPage(items, None)
        items = items[:limit]
        return DescriptionPage(items, encode_cursor(items[-1].from_us, items[-1].id))

    def search(
        self, query: str, where: SearchFilter | None, k: int
    ) -> list[tuple[float, DescriptionRecord]]:
        """Descriptions matching every word of ``query``, best first, with their scores.

        Scores are the engine's relevance (SQLite: -bm25, PostgreSQL: ts_rank): higher is
        better, comparable only within one answer. No words (only punctuation): no hits.
        """
        words = fts.terms(query)
        if not words or k <= 0:
            return []
        w = where or SearchFilter()
        conditions = _conditions(w.cameras, w.from_us, w.to_us)
        keys = None if w.classes is None else {count_key(c) for c in w.classes}
        if keys is not None and not keys:
            return []
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                rows = self._sqlite(conn, words, conditions, None if keys else k)
            elif conn.dialect.name == "postgresql":
                rows = self._postgresql(conn, words, conditions, None if keys else k)
            else:
                raise NotImplementedError(f"no full-text search on {conn.dialect.name}")
            hits: list[tuple[float, DescriptionRecord]] = []
            for row in rows:
                record = _record(row)
                if keys is None or _has_class(record, keys):
                    hits.append((float(row._mapping["score"]), record))
                    if len(hits) >= k:
                        break
        return hits

    @staticmethod
    def _sqlite(
        conn: Connection, words: list[str], where: list[ColumnElement[bool]], limit: int | None
    ) -> Iterable[Any]:
        index = table(fts.FTS_TABLE, column("rowid"))
        score = literal_column(f"-bm25({fts.FTS_TABLE})", Float).label("score")
        match = text(f"{fts.FTS_TABLE} MATCH :fts_query").bindparams(
            fts_query=fts.sqlite_match(words)
        )
        query = (
            select(descriptions, cameras.c.name.label("camera_name"), score)
            .select_from(
                index.join(descriptions, descriptions.c.id == index.c.rowid).outerjoin(
                    cameras, cameras.c.id == descriptions.c.camera_id
                )
            )
            .where(match, *where)
            .order_by(score.desc(), descriptions.c.id.desc())
        )
        return conn.execute(query if limit is None else query.limit(limit))

    @staticmethod
    def _postgresql(
        conn: Connection, words: list[str], where: list[ColumnElement[bool]], limit: int | None
    ) -> Iterable[Any]:
        document: ColumnElement[Any] = literal_column(f"({fts.PG_DOCUMENT})")
        tsquery = func.plainto_tsquery(
            literal_column("'english'::regconfig"), bindparam("fts_query", " ".join(words))
        )
        score = func.ts_rank(document, tsquery, type_=Float).label("score")
        query = (
            _select()
            .add_columns(score)
            .where(document.op("@@")(tsquery), *where)
            .order_by(score.desc(), descriptions.c.id.desc())
        )
        return conn.execute(query if limit is None else query.limit(limit))
