"""The indexer converges to the catalog: real Store commits (SQLite, PostgreSQL), a faiss index
on disk, batches out of order and overlapping a catch-up, failing adds, and restarts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from cloud.db import open_database
from cloud.index import BackendUnavailable, IndexSettings, VectorIndex
from cloud.index.faiss_index import FaissIndex
from cloud.indexer import Indexer
from cloud.metrics import CloudMetrics
from cloud.project import NewVectors
from cloud.schema import embeddings
from cloud.session import EdgeSession
from cloud.store import Store
from shared.codec import encode
from shared.framing import pack_batch
from shared.geometry import Box
from shared.messages import (
    CameraInfo,
    CodecRef,
    Detections,
    Embedding,
    EmitReason,
    Envelope,
    Hello,
    Message,
)
from shared.vectors import CodecSet, create_codec, fingerprint

DIM = 32
F16 = create_codec("f16", DIM)
INT8 = create_codec("int8", DIM)
T0 = 1_700_000_000_000_000  # capture times (us)
BOX = Box(0.1, 0.1, 0.2, 0.3)


class Edge:
    """One edge's session on the real store; ``send`` returns what the writer hands over."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.session = EdgeSession("edge-01", "s1", store)
        self.seq = 0
        hello = Hello(
            software_version="0.1.0",
            detector="yolo11n",
            encoder="vit_test",
            embedding_dim=DIM,
            codecs=(CodecRef("f16", F16.content_hash), CodecRef("int8", INT8.content_hash)),
            cameras=(CameraInfo("cam-a", 1280, 720, 25.0),),
            random_init_encoder=False,
        )
        self.session.receive(encode(Envelope("edge-01", 0, T0, T0, hello)))

    def send(self, *items: tuple[int, Message]) -> list[NewVectors]:
        frames = []
        for ts, message in items:
            self.seq += 1
            frames.append(encode(Envelope("edge-01", self.seq, ts, ts, message)))
        _, request = self.session.parse(pack_batch(frames))
        assert request is not None
        _, vectors = self.store.write([request])
        return vectors


def embedding(track: int, codec: object) -> Embedding:
    v = np.random.default_rng(track).standard_normal(DIM).astype(np.float32)
    return Embedding(
        "cam-a",
        track,
        EmitReason.FIRST_SIGHT,
        2,
        0.8,
        BOX,
        fingerprint(codec),  # type: ignore[arg-type]
        codec.encode(v / np.linalg.norm(v)).tobytes(),  # type: ignore[attr-defined]
    )


def mixed(first: int, n: int, ts: int) -> list[tuple[int, Message]]:
    """``n`` embeddings, codecs alternating (a ladder between two rungs): the store groups a
    commit's vectors by codec, so their ids do not come out sorted."""
    return [(ts, embedding(t, (F16, INT8)[t % 2])) for t in range(first, first + n)]


def one_codec(first: int, n: int, ts: int) -> list[tuple[int, Message]]:
    return [(ts, embedding(t, F16)) for t in range(first, first + n)]


def catalog_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        q = select(embeddings.c.detection_id).order_by(embeddings.c.detection_id)
        return [int(i) for i in conn.execute(q).scalars()]


def indexed(indexer: Indexer, want: list[int]) -> list[int]:
    """The ids in the (one) index, once its size is checked against ``want``'s."""
    spaces = indexer.spaces()
    sizes = [len(indexer.get(space)) for space in spaces]
    assert sizes == [len(want)], f"{sizes} vectors indexed, {len(want)} expected"
    return [int(i) for i in indexer.get(spaces[0]).ids()]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    yield e
    e.dispose()


def make_indexer(engine: Engine, path: Path, **kw: Any) -> Indexer:
    settings = IndexSettings(path=path, kind="flat")
    return Indexer(engine, CodecSet(), settings, CloudMetrics(), 3600.0, **kw)


def test_unsorted_and_overlapping_batches_lose_no_vector(engine: Engine, tmp_path: Path) -> None:
    store = Store(engine, CodecSet())
    edge = Edge(store)
    # Committed while the cloud was down: the catch-up reads them; the writer hands some
    # over again after the restart (the overlap).
    before = edge.send(*mixed(1, 6, T0), (T0 + 1, Detections("cam-a", (BOX,), (2,), (0.7,), (7,))))
    indexer = make_indexer(engine, tmp_path / "index")
    indexer.start()
    indexer.put(before)
    # Mixed codecs (ids unsorted), and an embedding joining the box row stored earlier:
    # its id is below every id indexed so far.
    after = edge.send(*mixed(8, 6, T0 + 2), (T0 + 1, embedding(7, INT8)))
    ids = [i for batch in after for i in batch.ids]
    assert ids != sorted(ids)
    indexer.put(after)
    indexer.put(edge.send(*mixed(20, 5, T0 + 3)))
    assert indexer.wait_idle(30)
    assert indexed(indexer, catalog_ids(engine)) == catalog_ids(engine)
    assert len(catalog_ids(engine)) == 18
    assert set(indexer.count_missing().values()) == {0}
    indexer.stop()


class FlakyIndex(FaissIndex):
    """A faiss index whose first ``fail`` adds raise, as a Qdrant server that is restarting."""

    fail = 0

    def add(
        self,
        ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
        cameras: NDArray[np.int32],
        classes: NDArray[np.int32],
        ts_us: NDArray[np.int64],
    ) -> None:
        if FlakyIndex.fail > 0:
            FlakyIndex.fail -= 1
            raise BackendUnavailable("test", "not now")
        super().add(ids, vectors, cameras, classes, ts_us)


def flaky(settings: IndexSettings, space: str, dim: int) -> VectorIndex:
    return FlakyIndex(space, dim, settings)


def test_a_failing_add_is_retried_not_dropped(engine: Engine, tmp_path: Path) -> None:
    store = Store(engine, CodecSet())
    edge = Edge(store)
    indexer = make_indexer(engine, tmp_path / "index", open_index=flaky)
    indexer.start()
    assert indexer.wait_idle(30)  # the catch-up of an empty catalog
    FlakyIndex.fail = 2
    indexer.put(edge.send(*mixed(1, 8, T0)))
    assert not indexer.wait_idle(0.2)  # kept, retried after 0.5 s then 1 s
    assert indexer.count_missing() == {indexer.spaces()[0]: 8}
    indexer.put(edge.send(*mixed(10, 4, T0 + 1)))
    assert indexer.wait_idle(30)
    assert indexed(indexer, catalog_ids(engine)) == catalog_ids(engine)
    assert len(catalog_ids(engine)) == 12
    assert indexer.failures == 2
    assert set(indexer.count_missing().values()) == {0}
    indexer.stop()


def test_a_vector_without_direction_costs_only_itself(engine: Engine, tmp_path: Path) -> None:
    store = Store(engine, CodecSet())
    edge = Edge(store)
    indexer = make_indexer(engine, tmp_path / "index")
    indexer.start()
    batches = edge.send(*mixed(1, 6, T0))
    [batch] = batches
    good = list(batch.ids)
    bad = NewVectors(batch.space, [10**9], [np.zeros((1, DIM), np.float32)], [1], [2], [T0])
    indexer.put([batch, bad])
    assert indexer.wait_idle(30)
    assert indexed(indexer, sorted(good)) == sorted(good)
    assert indexer.rejected == 1
    indexer.stop()


def test_start_reconciles_a_saved_index_older_than_the_catalog(
    engine: Engine, tmp_path: Path
) -> None:
    store = Store(engine, CodecSet())
    edge = Edge(store)
    first = make_indexer(engine, tmp_path / "index")
    first.start()
    box = (T0 + 5, Detections("cam-a", (BOX,), (2,), (0.7,), (50,)))
    first.put(edge.send(*one_codec(1, 10, T0), box))
    first.put(edge.send(*one_codec(11, 10, T0 + 1)))
    assert first.wait_idle(30)
    first.stop()  # saved; the cloud then goes on, and is killed before the next save
    saved = catalog_ids(engine)
    edge.send(*one_codec(30, 7, T0 + 6), (T0 + 5, embedding(50, F16)))
    late = [i for i in catalog_ids(engine) if i < max(saved) and i not in saved]
    assert late  # the embedding that joined the old box row: below the saved last_id
    with engine.begin() as conn:  # retention ran after the save
        conn.execute(delete(embeddings).where(embeddings.c.detection_id.in_(saved[:3])))

    second = make_indexer(engine, tmp_path / "index")
    second.start()
    second.put(edge.send(*one_codec(40, 3, T0 + 7)))  # the writer goes on meanwhile
    assert second.wait_idle(30)
    assert indexed(second, catalog_ids(engine)) == catalog_ids(engine)
    assert set(second.count_missing().values()) == {0}
    second.stop()
