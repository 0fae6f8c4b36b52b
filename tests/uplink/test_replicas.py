"""Two ``semcom cloud serve`` replicas on one real PostgreSQL, real edges (issue 20, item 1).

Real processes on 127.0.0.1 (:mod:`semcom.bench.procs`): two clouds started together on a
new database (each brings the schema up to date, one at a time), ``semcom edge replay``
edges, and a middlebox in front of the clouds as a load balancer
(:class:`~semcom.bench.linkcut.LinkCut`: it relays signaling, and WebRTC's datagrams by
rewriting the SDP; pointing it at another replica is what a balancer's health check does).
What was stored is read from the database and the edge's spool once the processes stopped
(:mod:`semcom.bench.fault_audit`), never from what the processes said.

- an edge streaming through the balancer to replica A, A SIGKILLed mid-stream, the balancer
  moves it to B: every seq the spool produced stored once, no catalog row twice, nothing
  left in the spool; meanwhile a vector stored through A is found by B's ``/v1/search``
  within the stated bound (``index.follow_s`` plus one poll), and retention, analytics and
  alerts are led by exactly one replica, by B once A is dead;
- two sessions of one edge at once, on A and on B (two edge processes draining copies of one
  spool: an old session not yet noticed dead and the new one): every message stored once,
  both edges acknowledged everything, nothing refused or quarantined;
- describer jobs queued once, both replicas running describers: each job run once.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from cloud import journal
from cloud.db import make_engine, open_database
from cloud.describe.jobs import JobQueue
from cloud.describe.runner import KIND
from cloud.schema import cameras, descriptions, embeddings, jobs, journal_frames, tracks
from semcom.bench.fault_audit import read_catalog_url, read_spool
from semcom.bench.linkcut import LinkCut
from semcom.bench.procs import (
    Children,
    CloudChild,
    CloudSpec,
    EdgeChild,
    EdgeSpec,
    SyntheticStream,
    free_port,
)
from shared.codec import decode
from shared.messages import Detections, Embedding, TrackEnd
from tests.cloud.describe_fixtures import T0, fill_scene

pytestmark = [pytest.mark.uplink, pytest.mark.postgres]

T = TypeVar("T")
EDGE = "edge-rep"
TOKEN = "edge-rep-token"
API_TOKEN = "bench-api-token"  # CloudSpec's default API client
FOLLOW_S = 1.0  # index.follow_s: the default on PostgreSQL
#: the stated staleness bound is follow_s plus one poll; the margin is for 2 shared CPUs
SEARCH_BOUND_S = FOLLOW_S + 2.0
LED = ("retention", "analytics", "alerts")  # the tasks one replica runs
LEASE_MOVE_S = 15.0  # a dead leader's lease: its session ends with it, then one 2 s check
FAST_LINK: dict[str, Any] = {
    "heartbeat_s": 0.5,
    "timeout_s": 2.0,
    "connect_timeout_s": 5.0,
    "reconnect_initial_s": 0.2,
    "reconnect_max_s": 0.5,
    "drain_timeout_s": 60.0,
}


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = probe()
        if answer:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def replicas(
    children: Children,
    root: Path,
    url: str,
    settings: dict[str, Any] | None = None,
    *,
    a_first: bool = False,
) -> tuple[CloudChild, CloudChild]:
    """Replicas A and B on the database ``url``, each with its own data folder (its faiss
    index) and port; started together, or A first (so A takes the leases)."""
    out: list[CloudChild] = []
    for name in ("a", "b"):
        spec = CloudSpec(
            root / name,
            free_port(),
            {EDGE: TOKEN},
            settings={"database": url, "retention": "30d", **(settings or {})},
        )
        cloud = CloudChild(spec)
        children.add(cloud)
        out.append(cloud)
    for cloud in out:
        cloud.start()
        if a_first:
            cloud.wait_ready(120.0)
            wait_for("A to lead", lambda: leaders(out[:1], "retention") == ["a"])
            a_first = False
    for cloud in out:
        cloud.wait_ready(120.0)
    return out[0], out[1]


def api(cloud: CloudChild) -> httpx.Client:
    return httpx.Client(
        base_url=cloud.url,
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=10,
        trust_env=False,
    )


def leaders(clouds: list[CloudChild], lease: str) -> list[str]:
    """The replicas (by data folder name) whose metric says they lead ``lease``."""
    out = []
    for cloud in clouds:
        if not cloud.alive:
            continue
        for key, value in cloud.metrics().items():
            if key.startswith("semcom_lease_leader{") and f'lease="{lease}"' in key and value:
                out.append(cloud.spec.data_dir.name)
    return out


def count(engine: Engine, query: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def stored_frames(engine: Engine) -> int:
    return count(
        engine,
        select(func.count()).select_from(journal_frames).where(journal_frames.c.edge_id == EDGE),
    )


def search_finds(client: httpx.Client, detection_id: int) -> bool:
    """Whether ``detection_id`` is among the raw nearest hits of a search from itself."""
    reply = client.post(
        "/v1/search",
        json={"detection_id": detection_id, "k": 5, "group": "detection",
              "exclude_own_track": False},
    )  # fmt: skip
    if reply.status_code != 200:
        return False
    return any(hit["detection"]["id"] == detection_id for hit in reply.json()["hits"])


def newest_embedding(engine: Engine, above: int) -> int | None:
    with engine.connect() as conn:
        found = conn.execute(
            select(func.max(embeddings.c.detection_id)).where(embeddings.c.detection_id > above)
        ).scalar()
    return int(found) if found is not None else None


def audit(url: str, produced: set[int]) -> None:
    """Every seq produced is stored once, its catalog rows once, none missing."""
    ledger = read_catalog_url(url, EDGE)
    assert len(produced) > 0
    assert ledger.stored == produced, (
        f"missing {sorted(produced - ledger.stored)[:20]}, "
        f"extra {sorted(ledger.stored - produced)[:20]}"
    )
    assert ledger.duplicates == dict.fromkeys(ledger.duplicates, 0)
    assert ledger.catalog_missing == dict.fromkeys(ledger.catalog_missing, 0)
    assert ledger.undecodable == 0


def tracks_sent(engine: Engine) -> dict[tuple[str, int], tuple[int, int]]:
    """(camera, tracker id) -> (first, last) capture time of its sightings, from the frames
    the journal holds (the synthetic scene never reuses a tracker id)."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    with engine.connect() as conn:
        frames = conn.execute(select(journal_frames.c.frame)).scalars().all()
    for frame in frames:
        env = decode(bytes(frame))
        msg = env.message
        seen: list[tuple[str, int, int]] = []
        if isinstance(msg, Embedding):
            seen = [(msg.camera, msg.track_id, env.capture_ts_us)]
        elif isinstance(msg, Detections):
            seen = [(msg.camera, t, env.capture_ts_us) for t in msg.track_ids if t]
        elif isinstance(msg, TrackEnd):  # the cloud extends a track to its end's last time
            seen = [(msg.camera, msg.track_id, msg.last_seen_us)]
        for camera, tracker, ts in seen:
            first, last = spans.get((camera, tracker), (ts, ts))
            spans[(camera, tracker)] = (min(first, ts), max(last, ts))
    return spans


def track_rows(engine: Engine) -> dict[tuple[str, int], tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(cameras.c.name, tracks.c.local_id, tracks.c.first_seen_us,
                   tracks.c.last_seen_us).join(cameras, cameras.c.id == tracks.c.camera_id)
        ).all()  # fmt: skip
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for name, local, first, last in rows:
        assert (name, local) not in out, f"tracker {local} of {name} split in two tracks"
        out[(str(name), int(local))] = (int(first), int(last))
    return out


def report(edge: EdgeChild) -> dict[str, Any]:
    assert edge.report_path is not None
    out: dict[str, Any] = json.loads(edge.report_path.read_text())
    return out


@pytest.fixture
def catalog(postgres_url: str) -> Iterator[tuple[str, Engine]]:
    engine = make_engine(postgres_url)
    yield postgres_url, engine
    engine.dispose()


def test_an_edge_moved_to_another_replica_mid_stream_stores_everything_once(
    tmp_path: Path, catalog: tuple[str, Engine]
) -> None:
    url, engine = catalog
    with Children() as children:
        alerts = {"alerts": {"poll_s": 0.5}}  # a dispatcher (no rules): led like the others
        a, b = replicas(children, tmp_path, url, alerts, a_first=True)
        balancer = LinkCut("127.0.0.1", a.spec.port)
        balancer.start()
        try:
            spec = EdgeSpec(EDGE, balancer.url, TOKEN, tmp_path / "edge", uplink=FAST_LINK)
            edge = EdgeChild(spec, SyntheticStream(seconds=30.0, tracks_per_s=4.0, dim=64))
            children.add(edge)
            edge.start()
            wait_for("frames stored through A", lambda: stored_frames(engine) >= 40, 60.0)

            # a vector stored through A is found by a search on B within the bound
            with api(b) as on_b:
                latencies = []
                last = 0
                for _ in range(3):
                    det = wait_for("a new embedding", partial(newest_embedding, engine, last))
                    seen = time.monotonic()  # after its commit: the row is visible
                    wait_for(
                        f"B to find detection {det}",
                        partial(search_finds, on_b, det),
                        SEARCH_BOUND_S + 10,
                    )
                    latencies.append(time.monotonic() - seen)
                    last = det
            assert max(latencies) <= SEARCH_BOUND_S, latencies
            staleness = b.metrics()["semcom_index_staleness_seconds"]
            assert staleness <= SEARCH_BOUND_S

            # the led tasks run on one replica: A, which started first
            for lease in LED:
                assert leaders([a, b], lease) == ["a"], lease

            before = stored_frames(engine)
            a.kill()  # mid-stream
            balancer.cloud = ("127.0.0.1", b.spec.port)  # the balancer's health check
            wait_for("frames stored through B", lambda: stored_frames(engine) > before + 20, 60)
            for lease in LED:
                wait_for(
                    f"B to lead {lease}",
                    lambda lease=lease: leaders([b], lease) == ["b"],  # type: ignore[misc]
                    LEASE_MOVE_S,
                )
            assert edge.wait(120.0) == 0, edge.log_tail()
            wait_for(
                "B's index to hold every embedding",
                lambda: _all_missing_zero(b.metrics()),
                SEARCH_BOUND_S + 10,
            )
        finally:
            balancer.close()
    done = report(edge)
    assert done["left_in_spool"] == 0
    assert done["refused"] == done["quarantined"] == 0
    assert done["uplink"]["connects"] >= 2
    spool = read_spool(spec.spool_path)
    assert spool.pending == spool.quarantined == set()
    audit(url, spool.produced)


def _all_missing_zero(metrics: dict[str, float]) -> bool:
    missing = [v for k, v in metrics.items() if k.startswith("semcom_index_missing_vectors{")]
    return bool(missing) and not any(missing)


def test_two_sessions_of_one_edge_on_two_replicas_store_every_message_once(
    tmp_path: Path, catalog: tuple[str, Engine]
) -> None:
    url, engine = catalog
    # the edge's spool, made while no cloud answers (a port nobody listens on)
    offline = EdgeSpec(
        EDGE,
        f"http://127.0.0.1:{free_port()}",
        TOKEN,
        tmp_path / "offline",
        transport="websocket",
        uplink={**FAST_LINK, "drain_timeout_s": 0.5, "connect_timeout_s": 0.5},
    )
    with Children() as children:
        maker = EdgeChild(offline, SyntheticStream(seconds=8.0, tracks_per_s=6.0, dim=64))
        children.add(maker)
        maker.start()
        assert maker.wait(120.0) == 0, maker.log_tail()
    produced = read_spool(offline.spool_path)
    assert len(produced.pending) == len(produced.produced) > 100

    with Children() as children:
        a, b = replicas(children, tmp_path, url)
        edges = []
        for name, cloud in (("x", a), ("y", b)):
            paced = {**FAST_LINK, "max_rate": "24kbit", "burst_bytes": 2048}  # ~10 s each
            spec = EdgeSpec(
                EDGE, cloud.url, TOKEN, tmp_path / name, transport="websocket", uplink=paced
            )
            spec.workdir.mkdir(parents=True)
            for part in offline.workdir.glob(f"{EDGE}.spool.db*"):  # the same spool, twice
                shutil.copy(part, spec.workdir / part.name)
            edges.append(children.add(EdgeChild(spec, None)))
        for edge in edges:
            edge.start()  # both sessions at once: one on A, one on B
        for edge in edges:
            assert edge.wait(120.0) == 0, edge.log_tail()
        assert a.alive
        assert b.alive
    acked = []
    for edge in edges:
        assert isinstance(edge, EdgeChild)
        done = report(edge)
        assert done["left_in_spool"] == 0, edge.name
        assert done["refused"] == done["quarantined"] == 0
        assert "INTERNAL" not in edge.log_since_start()
        acked.append(done["uplink"]["acked_frames"])
    # the sessions overlapped: frames were sent, stored and acked through both replicas
    assert min(acked) > 0
    assert sum(acked) > len(produced.produced), acked
    assert stored_frames(engine) == len(produced.produced)
    audit(url, produced.produced)
    state = journal.state(engine, EDGE)  # what the next HelloAck says, on either replica
    assert state.watermark == state.max_seq == max(produced.produced)
    # one track per tracker id, with the span its sightings give, whichever replica wrote it
    assert track_rows(engine) == tracks_sent(engine)
    for cloud in (a, b):
        assert "cannot be stored" not in cloud.log_since_start()


def test_a_describer_job_queued_once_runs_once_across_replicas(
    tmp_path: Path, catalog: tuple[str, Engine]
) -> None:
    url, engine = catalog
    open_database(url).dispose()  # the schema, then a camera's minute to describe
    fill_scene(engine)
    queue = JobQueue(engine, KIND)
    window = {"camera_id": 1, "from_us": T0, "to_us": T0 + 60_000_000, "reason": "window"}
    queued = [queue.enqueue(f"replica-test:{i}", window) for i in range(30)]
    assert all(job is not None for job in queued)
    describer = {"window_s": 60, "poll_s": 0.2, "events": False, "concurrency": 2}
    with Children() as children:
        a, b = replicas(children, tmp_path, url, {"describer": describer})

        def all_done() -> bool:
            with engine.connect() as conn:
                states = conn.execute(select(jobs.c.state).where(jobs.c.kind == KIND)).all()
            return bool(states) and all(s == "done" for (s,) in states)

        wait_for("every job done", all_done, 90.0)
        time.sleep(1.0)  # a second run would show now
        runs = {
            cloud.spec.data_dir.name: sum(
                v
                for k, v in cloud.metrics().items()
                if k.startswith("semcom_describer_jobs_total{") and 'outcome="done"' in k
            )
            for cloud in (a, b)
        }
    with engine.connect() as conn:
        attempts = conn.execute(
            select(jobs.c.key, jobs.c.attempts, jobs.c.state).where(jobs.c.kind == KIND)
        ).all()
        described = conn.execute(select(func.count()).select_from(descriptions)).scalar_one()
    assert len(attempts) >= 30  # ours, and the scheduler's window (queued once by key)
    assert {(n, state) for _, n, state in attempts} == {(1, "done")}
    assert described == len(attempts)  # one description per job: none run twice
    assert sum(runs.values()) == len(attempts), runs
