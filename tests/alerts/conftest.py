"""Fixtures of the alert tests: a catalog with cameras and analytics events, a real local HTTP
receiver that checks signatures, and a real Mosquitto broker."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from cloud.alerts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from cloud.db import open_database
from cloud.schema import analytics_events, cameras, edges

T0 = 1_764_000_000_000_000  # event times (us)
MOSQUITTO = Path("/usr/sbin/mosquitto")


@dataclass
class Catalog:
    engine: Engine
    cameras: dict[str, int]  # "edge/name" -> id
    _track: int = 0

    def add_event(self, camera: str = "edge-01/north", **values: Any) -> int:
        """One analytics event (a car's line crossing at T0 unless ``values`` say otherwise)."""
        self._track += 1
        row: dict[str, Any] = {
            "camera_id": self.cameras[camera],
            "track_id": self._track,
            "kind": "line_crossing",
            "subject": "stop-line",
            "ordinal": 0,
            "at_us": T0,
            "class_id": 2,
            "direction": "in",
            "value": None,
            "unit": None,
            "scene_version": "v1",
            "created_us": T0,
            "details": {},
        }
        row.update(values)
        with self.engine.begin() as conn:
            key = conn.execute(insert(analytics_events).values(**row)).inserted_primary_key
        assert key is not None
        return int(key[0])


def seed_cameras(engine: Engine) -> dict[str, int]:
    """Edges edge-01 and edge-02, cameras edge-01/north, edge-01/south, edge-02/north."""
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        for edge in ("edge-01", "edge-02"):
            conn.execute(
                insert(edges).values(
                    id=edge,
                    software_version="0",
                    detector="d",
                    encoder="e",
                    embedding_dim=8,
                    random_init_encoder=True,
                    first_seen_us=T0,
                    last_seen_us=T0,
                )
            )
        for path in ("edge-01/north", "edge-01/south", "edge-02/north"):
            edge, name = path.split("/")
            key = conn.execute(
                insert(cameras).values(edge_id=edge, name=name, first_seen_us=T0)
            ).inserted_primary_key
            assert key is not None
            ids[path] = int(key[0])
    return ids


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """The catalog on SQLite, and on a real PostgreSQL (a fresh database per test)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = open_database(url)
    yield Catalog(engine, seed_cameras(engine))
    engine.dispose()


# -- a real HTTP receiver


@dataclass
class Received:
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]  # lower-case names
    signed: bool  # the signature verifies with the receiver's secret
    status: int  # what the receiver answered


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1: answers ``statuses`` in turn (then 200), verifies each
    request's signature with ``secret`` (401 when it does not verify)."""

    secret: bytes
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def handle(self, raw: bytes, headers: dict[str, str]) -> int:
        signed = verify(
            self.secret,
            headers.get(TIMESTAMP_HEADER.lower()),
            headers.get(SIGNATURE_HEADER.lower()),
            raw,
        )
        status = 401 if not signed else (self.statuses.pop(0) if self.statuses else 200)
        self.received.append(Received(json.loads(raw), raw, headers, signed, status))
        return status

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.status == 200]


@contextmanager
def serving(recv: Receiver) -> Iterator[Receiver]:
    """``recv`` served on 127.0.0.1, a free port (``recv.url``), until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = recv.handle(raw, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    recv.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield recv
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver(secret=b"receiver-secret")) as recv:
        yield recv


# -- a real Mosquitto broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """Debian's mosquitto on 127.0.0.1 and a fixed free port (anonymous, no persistence);
    ``stop`` and ``start`` again on the same port."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.binary = binary
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.log = folder / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not start: {self.log.read_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    binary = str(MOSQUITTO) if MOSQUITTO.is_file() else shutil.which("mosquitto")
    if binary is None:
        pytest.skip(
            f"Mosquitto MQTT broker not installed ({MOSQUITTO} missing; Debian package "
            "`mosquitto`, which `make unit` installs as root)"
        )
    broker = Broker(binary, tmp_path)
    broker.start()
    yield broker
    broker.stop()
