"""A real ``semcom cloud serve`` fed by a real ``semcom edge replay`` of a recorded file.

:class:`Served` owns the two child processes (:mod:`semcom.bench.procs`): the cloud on a free
port of 127.0.0.1 with one API token and one edge token and the query encoder of
:mod:`tests.dashboard.recording`; the edge replays recordings over the real uplink (WebRTC on
127.0.0.1). It reads the cloud's SQLite catalog read-only to learn what was stored and when
(:meth:`Served.tracks`, :class:`TrackWatch`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from semcom.bench.procs import CloudChild, CloudSpec, EdgeChild, EdgeSpec
from tests.dashboard.recording import ENCODER, Embedder, RoadUser, write_recording

API_TOKEN: Final = "dashboard-test-api-token-4f2a9c"
EDGE_TOKEN: Final = "dashboard-test-edge-token-7b1e3d"
EDGE_ID: Final = "edge-01"
SECONDS: Final = 10.0  # length of each recording


@dataclass(frozen=True)
class TrackRow:
    id: int  # the catalog's track id (/tracks/<id>)
    camera: str
    local_id: int  # the edge tracker's id (RoadUser.track_id)
    class_id: int | None
    first_seen_us: int
    last_seen_us: int
    path_points: int  # boxes in the TrackEnd path (0 before the track ended)


@dataclass
class Served:
    """The running cloud and its edge; made by the ``served`` fixture."""

    cloud: CloudChild
    edge: EdgeChild
    embedder: Embedder
    workdir: Path
    users: list[RoadUser] = field(default_factory=list)  # of every replay started so far
    replays: int = 0

    api_token: str = API_TOKEN
    edge_token: str = EDGE_TOKEN
    edge_id: str = EDGE_ID

    @property
    def url(self) -> str:
        return self.cloud.url

    @property
    def db_path(self) -> Path:
        return self.cloud.spec.db_path

    @property
    def secrets(self) -> tuple[str, str]:
        """What must never show in a URL the browser requests."""
        return (self.api_token, self.edge_token)

    # ------------------------------------------------------------------ replays

    def record(self, users: Sequence[RoadUser], name: str) -> Path:
        """A recording of ``users`` whose capture times end about now."""
        path = self.workdir / f"{name}.semcom"
        path.unlink(missing_ok=True)
        t0_us = time.time_ns() // 1_000 - round((SECONDS + 1.0) * 1e6)
        write_recording(path, users, t0_us=t0_us, seconds=SECONDS, edge_id=self.edge_id)
        return path

    def start_replay(self, users: Sequence[RoadUser]) -> Path:
        """Record ``users`` and start ``semcom edge replay FILE`` with it (returns at once;
        the edge keeps its spool, so its seqs continue). The previous replay must be done."""
        if self.edge.alive:
            raise RuntimeError("the previous replay is still running")
        self.replays += 1
        path = self.record(users, f"replay-{self.replays}")
        self.users.extend(users)
        self.edge.restart_with(path)
        self.edge.start()
        return path

    def wait_replayed(self, timeout_s: float = 90.0) -> dict[str, Any]:
        """Until the running replay exits; its report (every message acknowledged)."""
        code = self.edge.wait(timeout_s)
        if code is None:
            raise AssertionError(f"the replay ran past {timeout_s:g} s:\n{self.edge.log_tail()}")
        if code != 0:
            raise AssertionError(f"the replay failed ({code}):\n{self.edge.log_tail()}")
        assert self.edge.report_path is not None
        report: dict[str, Any] = json.loads(self.edge.report_path.read_text())
        if report["left_in_spool"] or report["quarantined"]:
            raise AssertionError(f"the replay left messages behind: {report}")
        return report

    def wait_stored(self, users: Sequence[RoadUser], timeout_s: float = 30.0) -> list[TrackRow]:
        """Until every one of ``users`` is an ended track in the catalog; those rows."""
        want = {u.track_id for u in users}
        deadline = time.monotonic() + timeout_s
        while True:
            rows = [t for t in self.tracks() if t.local_id in want and t.path_points]
            if {t.local_id for t in rows} == want:
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"tracks {sorted(want)} not all stored: {rows}")
            time.sleep(0.1)

    # ------------------------------------------------------------------ the catalog

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        uri = f"file:{self.db_path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
            yield conn

    def tracks(self) -> list[TrackRow]:
        """Every track the catalog holds, in id order."""
        sql = (
            "SELECT t.id, c.name, t.local_id, t.class_id, t.first_seen_us, t.last_seen_us, "
            "t.path FROM tracks t JOIN cameras c ON c.id = t.camera_id ORDER BY t.id"
        )
        with self._db() as conn:
            rows = conn.execute(sql).fetchall()
        return [
            TrackRow(i, cam, local, cls, first, last, len(json.loads(path)) if path else 0)
            for i, cam, local, cls, first, last, path in rows
        ]

    def track_of(self, user: RoadUser) -> TrackRow:
        rows = [t for t in self.tracks() if t.local_id == user.track_id]
        assert len(rows) == 1, f"road user {user.track_id}: {rows}"
        return rows[0]

    def detection_ids(self, track_id: int) -> list[int]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT id FROM detections WHERE track_id = ? ORDER BY id", (track_id,)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def api(self, path: str, body: Any = None) -> Any:
        """GET (or with ``body``: POST JSON to) ``/v1/...`` with the API token (a bearer
        header, never in the URL); the answer's JSON."""
        headers = {"Authorization": f"Bearer {self.api_token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def watch_tracks(self, poll_s: float = 0.02) -> TrackWatch:
        """Start noting when each track newer than those stored now first shows in the
        catalog (the moment it was stored, give or take ``poll_s``)."""
        return TrackWatch(self, poll_s)


class TrackWatch:
    """A thread polling the catalog: new track id -> wall-clock time (s) it was first seen.

    Use as a context manager (stops the thread on exit)."""

    def __init__(self, served: Served, poll_s: float) -> None:
        self.served = served
        self.poll_s = poll_s
        known = served.tracks()
        self.after = known[-1].id if known else 0
        self.seen: dict[int, float] = {}
        self.rows: dict[int, TrackRow] = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="track-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                rows = [t for t in self.served.tracks() if t.id > self.after]
                now = time.time()
                with self._lock:
                    for row in rows:
                        self.seen.setdefault(row.id, now)
                        self.rows[row.id] = row
                self._stop.wait(self.poll_s)
        except BaseException as exc:
            self.error = exc

    def snapshot(self) -> dict[int, float]:
        if self.error is not None:
            raise AssertionError(f"reading the catalog failed: {self.error!r}")
        with self._lock:
            return dict(self.seen)

    def wait_new(self, timeout_s: float) -> dict[int, float]:
        """Until at least one new track was stored; every one seen so far."""
        deadline = time.monotonic() + timeout_s
        while not (seen := self.snapshot()):
            if time.monotonic() > deadline:
                raise AssertionError(f"no new track stored within {timeout_s:g} s")
            time.sleep(self.poll_s)
        return seen

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __enter__(self) -> TrackWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cloud_spec(data_dir: Path, port: int) -> CloudSpec:
    """The cloud of these tests: one edge, one API client, the recordings' query encoder."""
    return CloudSpec(
        data_dir,
        port,
        edges={EDGE_ID: EDGE_TOKEN},
        api_tokens={"dashboard": API_TOKEN},
        settings={"encoder": {"name": ENCODER, "random_init": True}},
    )


def edge_spec(cloud_url: str, workdir: Path) -> EdgeSpec:
    return EdgeSpec(
        EDGE_ID, cloud_url, EDGE_TOKEN, workdir, uplink={"heartbeat_s": 0.5, "ladder": ["f16"]}
    )
