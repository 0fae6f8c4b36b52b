"""Each replica's index follows the catalog: two indexers (faiss on disk, folders of their
own) on one real PostgreSQL, as two ``semcom cloud serve`` replicas run them.

Replica A stores and indexes what its edge sends; replica B's indexer never gets A's
batches and must find them in the catalog within ``follow_s`` plus a poll, including an id
whose transaction committed after a higher id's (PostgreSQL ids are not commit-ordered).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import select

from cloud.db import open_database
from cloud.index import IndexSettings
from cloud.indexer import Indexer
from cloud.metrics import CloudMetrics
from cloud.schema import cameras, detections, embeddings, spaces
from cloud.session import EdgeSession
from cloud.store import Store
from shared.codec import encode
from shared.framing import pack_batch
from shared.geometry import Box
from shared.messages import CameraInfo, CodecRef, Embedding, EmitReason, Envelope, Hello
from shared.vectors import CodecSet, create_codec, fingerprint

pytestmark = pytest.mark.postgres

DIM = 32
F16 = create_codec("f16", DIM)
T0 = 1_700_000_000_000_000
BOX = Box(0.1, 0.1, 0.2, 0.3)
FOLLOW_S = 0.2
GRACE_S = 5.0
SEQS = itertools.count(1)  # one edge's seqs, whichever replica it sends to


def unit(seed: int) -> NDArray[np.float32]:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    out: NDArray[np.float32] = (v / np.linalg.norm(v)).astype(np.float32)
    return out


class Replica:
    """A store and an indexer of their own on the shared database."""

    def __init__(self, url: str, folder: Path, follow_s: float = FOLLOW_S) -> None:
        self.engine = open_database(url)
        self.metrics = CloudMetrics()
        self.store = Store(self.engine, CodecSet([F16]))
        settings = IndexSettings(backend="faiss", path=folder)
        self.indexer = Indexer(
            self.engine,
            CodecSet([F16]),
            settings,
            self.metrics,
            follow_s=follow_s,
            follow_grace_s=GRACE_S,
        )
        self.indexer.start()

    def send(self, *seeds: int) -> None:
        """An edge's embeddings stored through this replica (and handed to its indexer)."""
        session = EdgeSession("edge-01", "s1", self.store)
        hello = Hello(
            "0.1.0", "yolo11n", "vit_test", DIM, (CodecRef("f16", F16.content_hash),),
            (CameraInfo("cam-a", 1280, 720, 25.0),), False,
        )  # fmt: skip
        session.receive(encode(Envelope("edge-01", 0, T0, T0, hello)))
        frames = []
        for seed in seeds:
            code = F16.encode(unit(seed)).tobytes()
            msg = Embedding(
                "cam-a", seed, EmitReason.FIRST_SIGHT, 2, 0.8, BOX, fingerprint(F16), code
            )
            frames.append(encode(Envelope("edge-01", next(SEQS), T0 + seed, T0 + seed, msg)))
        _, request = session.parse(pack_batch(frames))
        assert request is not None
        _, vectors = self.store.write([request])
        self.indexer.put(vectors)

    def finds(self, seed: int) -> bool:
        spaces = self.indexer.spaces()
        if not spaces:
            return False
        hits = self.indexer.search(spaces[0], unit(seed)[None, :], 1, None)[0]
        return bool(hits) and hits[0].score > 0.999

    def staleness(self) -> float:
        return float(self.metrics.index_staleness._value.get())

    def close(self) -> None:
        self.indexer.stop()
        self.engine.dispose()


@pytest.fixture
def pair(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    a = Replica(postgres_url, tmp_path / "a")
    b = Replica(postgres_url, tmp_path / "b")
    yield a, b
    a.close()
    b.close()


def within(seconds: float, predicate: Callable[[], bool]) -> float | None:
    """Seconds until ``predicate`` held, None when it did not within ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.01)
    return None


def test_a_vector_stored_through_a_is_found_on_b_within_the_bound(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    a.send(*range(1, 41))
    assert a.indexer.wait_idle(10)
    assert a.finds(7)
    took = within(10, lambda: b.finds(7) and b.finds(40))
    assert took is not None, "B never indexed A's vectors"
    assert took <= FOLLOW_S + 1.0  # follow_s plus one poll (a generous second on 2 CPUs)
    assert len(b.indexer.get(b.indexer.spaces()[0])) == 40
    assert b.staleness() <= FOLLOW_S + 1.0
    b.send(100)  # and the other way round
    assert within(FOLLOW_S + 1.0, lambda: a.finds(100)) is not None


def test_an_id_committed_after_a_higher_one_is_not_skipped(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    a.send(1)  # the edge, camera and space exist
    assert within(5, lambda: b.finds(1)) is not None
    with a.engine.connect() as conn:
        camera = conn.execute(select(cameras.c.id)).scalar_one()
        space = conn.execute(select(spaces.c.id)).scalar_one()
    slow = a.engine.connect()
    tx = slow.begin()  # a slow transaction takes an id and commits late
    det = slow.execute(
        detections.insert()
        .values(
            camera_id=camera, track_id=None, ts_us=T0, class_id=2, confidence=0.9,
            x1=0.1, y1=0.1, x2=0.2, y2=0.3, edge_id="edge-01", seq=10_000,
            has_embedding=True,
        )
        .returning(detections.c.id)
    ).scalar_one()  # fmt: skip
    slow.execute(
        embeddings.insert().values(
            detection_id=det, space_id=space, codec=fingerprint(F16), reason=0,
            code=F16.encode(unit(500)).tobytes(),
        )
    )  # fmt: skip
    a.send(2, 3)  # higher ids, committed first
    assert within(5, lambda: b.finds(2) and b.finds(3)) is not None
    time.sleep(3 * FOLLOW_S)  # B polled past the higher ids meanwhile
    assert not b.finds(500)
    tx.commit()
    slow.close()
    took = within(5, lambda: b.finds(500))
    assert took is not None, "the late id was skipped"
    assert took <= FOLLOW_S + 1.0


def test_without_following_b_never_sees_a(postgres_url: str, tmp_path: Path) -> None:
    """The control: the same scene with following off leaves B without A's vectors."""
    a = Replica(postgres_url, tmp_path / "a", follow_s=0)
    b = Replica(postgres_url, tmp_path / "b", follow_s=0)
    try:
        a.send(*range(1, 11))
        assert a.indexer.wait_idle(10)
        assert within(1.0, lambda: b.finds(5)) is None
    finally:
        a.close()
        b.close()
