"""The write side of the cloud: journal and catalog rows of received frames, in one transaction.

:meth:`Store.write` takes the new frames of one or more edges (a group commit: the ingest
writer merges what every session received meanwhile), stores each frame once in the journal,
projects the new ones into catalog rows (:mod:`cloud.project`), advances the watermarks and
commits; only then may the sessions acknowledge. Nothing reaches the index before the commit.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import (
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cloud import journal
from cloud.journal import Frame
from cloud.project import NewVectors, Projector, Received, Space
from cloud.schema import cameras, codecs, edges, spaces
from shared.messages import Hello
from shared.vectors import CodecSet, VectorCodec, fingerprint

logger = logging.getLogger(__name__)


def space_name(encoder: str, dim: int, random_init: bool) -> str:
    """Name of the embedding space of an encoder: vectors of different spaces never mix."""
    return f"{encoder}-{dim}" + ("-random-init" if random_init else "")


@dataclass
class WriteRequest:
    """What one session received: frames (journal) and their decoded messages (catalog)."""

    edge_id: str
    space: Space
    frames: list[Frame] = field(default_factory=list)
    messages: dict[int, Received] = field(default_factory=dict)  # by seq
    #: the edge spool's incarnation, from the session's Hello ("" when it sent none)
    spool_id: str = ""


@dataclass(frozen=True)
class WriteResult:
    stored: list[int]
    duplicates: list[int]
    watermark: int
    #: seq -> why that frame could not be stored (:meth:`Store.write_alone`): refused, not acked
    refused: dict[int, str] = field(default_factory=dict)


#: Failures of the database itself, not of what was being stored: nothing can be stored now,
#: and the same frames may well be stored later (so they are not refused, only not acked).
_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is down or busy rather than a frame is unstorable."""
    return isinstance(exc, _UNAVAILABLE)


class Store:
    def __init__(self, engine: Engine, codecs: CodecSet, projector: Projector | None = None):
        self.engine = engine
        self.codecs = codecs
        self.projector = projector or Projector(codecs)
        self.horizon_us = 0  # retention's cut-off: older frames are journaled, not catalogued
        #: PostgreSQL: edge -> the version of its watermark row this replica's last write left
        self._versions: dict[str, str] = {}
        self._reset = threading.Event()

    def set_horizon(self, ts_us: int) -> None:
        """Retention ran: skip older messages and drop caches that may name deleted rows."""
        self.horizon_us = ts_us
        self._reset.set()

    def register(self, edge_id: str, hello: Hello, accepted: Sequence[VectorCodec]) -> Space:
        """Record the edge, its cameras, its embedding space and codecs (on every Hello).

        Two replicas may register the same new edge (or space, or codec) at once: the later
        insert's key conflict rolls back, and the retry finds the rows.
        """
        for attempt in range(3):
            try:
                return self._register(edge_id, hello, accepted)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _register(self, edge_id: str, hello: Hello, accepted: Sequence[VectorCodec]) -> Space:
        now = time.time_ns() // 1_000
        name = space_name(hello.encoder, hello.embedding_dim, hello.random_init_encoder)
        info = {
            "software_version": hello.software_version,
            "detector": hello.detector,
            "encoder": hello.encoder,
            "embedding_dim": hello.embedding_dim,
            "random_init_encoder": hello.random_init_encoder,
            "last_seen_us": now,
        }
        with self.engine.begin() as conn:
            if conn.execute(select(edges.c.id).where(edges.c.id == edge_id)).first() is None:
                conn.execute(edges.insert().values(id=edge_id, first_seen_us=now, **info))
            else:
                conn.execute(edges.update().where(edges.c.id == edge_id).values(**info))
            for cam in hello.cameras:
                size = {"width": cam.width, "height": cam.height, "fps": cam.fps}
                where = (cameras.c.edge_id == edge_id) & (cameras.c.name == cam.camera)
                if conn.execute(select(cameras.c.id).where(where)).first() is None:
                    conn.execute(
                        cameras.insert().values(
                            edge_id=edge_id, name=cam.camera, first_seen_us=now, **size
                        )
                    )
                else:
                    conn.execute(cameras.update().where(where).values(**size))
            space_id = conn.execute(select(spaces.c.id).where(spaces.c.name == name)).scalar()
            if space_id is None:
                space_id = conn.execute(
                    spaces.insert()
                    .values(
                        name=name,
                        encoder=hello.encoder,
                        dim=hello.embedding_dim,
                        random_init=hello.random_init_encoder,
                    )
                    .returning(spaces.c.id)
                ).scalar_one()
            for codec in accepted:
                fp = fingerprint(codec)
                if conn.execute(
                    select(codecs.c.fingerprint).where(codecs.c.fingerprint == fp)
                ).first():
                    continue
                conn.execute(
                    codecs.insert().values(
                        fingerprint=fp,
                        codec_id=codec.codec_id,
                        content_hash=codec.content_hash,
                        dim=codec.dim,
                    )
                )
        return Space(int(space_id), name)

    def write(self, requests: Sequence[WriteRequest]) -> tuple[list[WriteResult], list[NewVectors]]:
        """Store every request in one transaction; results in request order.

        Another writer (a second replica on PostgreSQL, or an overlapping session) may store
        the same frame first: the primary-key conflict rolls back, and the retry sees it as a
        repeat.
        """
        for attempt in range(3):
            try:
                return self._write(requests)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def write_alone(self, request: WriteRequest) -> tuple[WriteResult, list[NewVectors]]:
        """Store one request whose group commit failed: whole, else one frame at a time.

        A frame that cannot be stored (a value the database refuses, a projection bug) then
        fails alone: it is listed in ``WriteResult.refused`` and every other frame is stored,
        so one bad frame never refuses a batch, a session or another edge. When the database
        itself is unavailable (:func:`is_unavailable`) this raises: nothing is refused.
        """
        try:
            ((result,), vectors) = self.write([request])
            return result, vectors
        except Exception as exc:
            if is_unavailable(exc):
                raise
            if len(request.frames) < 2:
                return self._refuse_all(request, exc), []
        stored: set[int] = set()
        repeats: set[int] = set()
        refused: dict[int, str] = {}
        merged: dict[str, NewVectors] = {}
        mark: int | None = None
        for frame in request.frames:
            message = request.messages.get(frame.seq)
            one = dataclasses.replace(
                request,
                frames=[frame],
                messages={frame.seq: message} if message is not None else {},
            )
            try:
                ((result,), vectors) = self.write([one])
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                refused[frame.seq] = _why(exc)
                logger.error(
                    "edge %s: frame %d cannot be stored, refused",
                    request.edge_id,
                    frame.seq,
                    exc_info=exc,
                )
                continue
            stored.update(result.stored)
            repeats.update(result.duplicates)
            mark = result.watermark
            for got in vectors:
                merged.setdefault(got.space, NewVectors(got.space)).extend(got)
        if mark is None:
            mark = self.watermark(request.edge_id)
        result = WriteResult(sorted(stored), sorted(repeats - stored), mark, refused)
        return result, list(merged.values())

    def _refuse_all(self, request: WriteRequest, exc: Exception) -> WriteResult:
        logger.error(
            "edge %s: frames %s cannot be stored, refused",
            request.edge_id,
            [f.seq for f in request.frames],
            exc_info=exc,
        )
        refused = {f.seq: _why(exc) for f in request.frames}
        return WriteResult([], [], self.watermark(request.edge_id), refused)

    def _write(
        self, requests: Sequence[WriteRequest]
    ) -> tuple[list[WriteResult], list[NewVectors]]:
        now = time.time_ns() // 1_000
        results: dict[int, WriteResult] = {}  # by position in requests
        vectors: dict[str, NewVectors] = {}
        if self._reset.is_set():
            self._reset.clear()
            self.projector.forget()
        versions: dict[str, str | None] = {}  # edge -> its watermark row's version, as left
        try:
            with self.engine.begin() as conn:
                groups = _by_edge(requests)
                new = [self._journal(conn, group) for group in groups]
                batches = [
                    (group[0][1].edge_id, group[0][1].space, self._fresh(group, seqs))
                    for group, seqs in zip(groups, new, strict=True)
                ]
                batches = [b for b in batches if b[2]]
                for got in self.projector.apply_many(conn, batches, now) if batches else []:
                    if len(got):
                        vectors.setdefault(got.space, NewVectors(got.space)).extend(got)
                for group, seqs in zip(groups, new, strict=True):
                    results.update(self._finish(conn, group, seqs))
                    edge_id = group[0][1].edge_id
                    versions[edge_id] = journal.row_version(conn, edge_id)
        except BaseException:
            self.projector.forget()
            self._versions.clear()
            raise
        self._versions.update((e, v) for e, v in versions.items() if v is not None)
        return [results[i] for i in range(len(requests))], list(vectors.values())

    def _journal(self, conn: Connection, group: list[tuple[int, WriteRequest]]) -> list[int]:
        """Journal the frames of one edge's requests; returns the seqs new to the journal.

        Every edge's frames are journaled first, then the catalog rows of all of them are
        written together (:meth:`Projector.apply_many`: a few statements per group commit
        rather than per edge), then each edge's watermark moves (:meth:`_finish`). When
        another replica stored frames of the edge since this one last did, the projector's
        caches of the edge are dropped first (it would write stale track spans back)."""
        edge_id = group[0][1].edge_id
        frames = [f for _, req in group for f in req.frames]
        new = journal.insert_new(conn, edge_id, frames)[0]  # holds the edge's lock from here
        found = journal.row_version(conn, edge_id)
        if found is not None and self._versions.get(edge_id, found) != found:
            self.projector.forget_edge(edge_id)
        return new

    def _fresh(self, group: list[tuple[int, WriteRequest]], new: list[int]) -> list[Received]:
        """The decoded messages of the new seqs, less those older than retention's horizon."""
        messages = {seq: m for _, req in group for seq, m in req.messages.items()}
        return [
            m
            for s in new
            if (m := messages.get(s)) is not None and m.capture_ts_us >= self.horizon_us
        ]

    @staticmethod
    def _finish(
        conn: Connection, group: list[tuple[int, WriteRequest]], new: list[int]
    ) -> dict[int, WriteResult]:
        """Advance one edge's watermark; each request's stored seqs and repeats."""
        edge_id = group[0][1].edge_id
        fresh_seqs = set(new)
        spool_id = None  # the incarnation whose frames were just stored (the latest request's)
        for _, req in group:
            if any(f.seq in fresh_seqs for f in req.frames):
                spool_id = req.spool_id
        mark = journal.advance(conn, edge_id, new, spool_id)
        unclaimed = set(new)  # a seq sent twice in the group is new once, then a repeat
        out: dict[int, WriteResult] = {}
        for i, req in group:
            stored, repeats = [], []
            for f in req.frames:
                if f.seq in unclaimed:
                    unclaimed.discard(f.seq)
                    stored.append(f.seq)
                else:
                    repeats.append(f.seq)
            out[i] = WriteResult(sorted(set(stored)), sorted(set(repeats) - set(stored)), mark)
        return out

    def watermark(self, edge_id: str) -> int:
        return journal.watermark(self.engine, edge_id)

    def journal_state(self, edge_id: str) -> journal.EdgeState:
        """Watermark, spool incarnation and highest seq stored of an edge (for HelloAck)."""
        return journal.state(self.engine, edge_id)


def _why(exc: BaseException) -> str:
    """A short reason for a refused frame (the first line, no SQL or parameters)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def _by_edge(requests: Sequence[WriteRequest]) -> list[list[tuple[int, WriteRequest]]]:
    """(position, request) pairs grouped by edge and space, ordered by edge id: replicas
    that store the same edges in one transaction lock them in the same order (no deadlock)."""
    groups: dict[tuple[str, str], list[tuple[int, WriteRequest]]] = {}
    for i, req in enumerate(requests):
        groups.setdefault((req.edge_id, req.space.name), []).append((i, req))
    return [groups[key] for key in sorted(groups)]
