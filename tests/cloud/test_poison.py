"""No frame poisons a group commit (issue 14, item 5): a frame the database refuses is refused
alone, every other frame of its request, session and group is stored; a database that is down
refuses nothing (nothing is acked, the edges send again). Real SQLite; a trigger stands in
for any per-row failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cloud import journal
from cloud.db import open_database
from cloud.journal import Frame
from cloud.metrics import CloudMetrics
from cloud.project import Space
from cloud.store import Store, WriteRequest, WriteResult
from cloud.writer import Writer
from shared.vectors import CodecSet


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(open_database(f"sqlite:///{tmp_path / 'cloud.db'}"), CodecSet())
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER poison BEFORE INSERT ON journal_frames "
                "WHEN NEW.edge_id = 'a' AND NEW.seq = 3 "
                "BEGIN SELECT RAISE(ABORT, 'poisoned frame'); END"
            )
        )
    return store


def frames(edge_id: str, seqs: list[int]) -> WriteRequest:
    return WriteRequest(edge_id, Space(0, "none"), [Frame(s, 6, 0, b"f") for s in seqs])


def test_a_group_with_one_bad_frame_stores_everything_else(store: Store) -> None:
    writer = Writer(store, CloudMetrics())
    requests = [frames("a", [1, 2]), frames("b", [1, 2, 3]), frames("a", [3, 4]), frames("b", [4])]

    async def main() -> list[WriteResult]:
        queued = [await writer.enqueue(r) for r in requests]  # one group: queued before start
        writer.start()
        try:
            return list(await asyncio.gather(*queued))
        finally:
            await asyncio.to_thread(writer.stop)

    results = asyncio.run(main())
    assert [(r.stored, r.duplicates, sorted(r.refused)) for r in results] == [
        ([1, 2], [], []),
        ([1, 2, 3], [], []),
        ([4], [], [3]),
        ([4], [], []),
    ]
    assert "poisoned frame" in results[2].refused[3]
    assert journal.count(store.engine, "a") == 3
    assert journal.count(store.engine, "b") == 4


def test_an_unavailable_database_refuses_nothing(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE journal_frames"))  # every write fails: not a frame's fault
    with pytest.raises(OperationalError):
        store.write_alone(frames("a", [1, 2]))
