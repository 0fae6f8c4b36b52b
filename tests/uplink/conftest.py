"""Real cloud processes (``semcom cloud serve``) and real edges over aiortc on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from edge.config import UplinkConfig
from edge.loadgen import CodecChoice, SceneSpec, SyntheticScene
from edge.pipeline import Outbox
from edge.replay import ReplayReport, run_replay
from edge.sink import FileSink
from shared.bundle import quantise
from shared.codec import decode
from shared.framing import read_frames
from shared.messages import Envelope, Hello
from shared.vectors import create_codec

TOKEN = "s3cret-token"
EDGE = "edge-t"
API_TOKEN = "api-s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cloud:
    """A ``semcom cloud serve`` process that can be killed and restarted on the same port/DB."""

    workdir: Path
    port: int
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.workdir / "cloud.db"

    @property
    def log(self) -> Path:
        return self.workdir / f"cloud-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        cmd = [
            sys.executable,
            "-m",
            "semcom",
            "cloud",
            "serve",
            "--port",
            str(self.port),
            "--db",
            f"sqlite:///{self.db}",
            "--edge",
            f"{EDGE}={TOKEN}",
            "--api-token",
            f"tests={API_TOKEN}",
            "--ice-host-address",
            "127.0.0.1",
            *self.extra,
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stderr=log, cwd=self.workdir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "listening on" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"cloud did not start: {self.log.read_text()}")
            time.sleep(0.05)
        raise RuntimeError("cloud did not start within 60 s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def stored(self) -> list[tuple[int, int, bytes]]:
        """(seq, received_us, frame) of every stored frame, in the order they were stored."""
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db) as conn:
            try:
                rows = conn.execute(
                    "SELECT seq, received_us, frame FROM journal_frames WHERE edge_id = ? "
                    "ORDER BY received_us, rowid",
                    (EDGE,),
                ).fetchall()
            except sqlite3.OperationalError:
                return []
        return [(int(a), int(b), bytes(c)) for a, b, c in rows]

    def metrics(self) -> str:
        import httpx

        return httpx.get(
            f"{self.url}/metrics",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=5,
            trust_env=False,
        ).text


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    c = Cloud(tmp_path / "cloud", free_port())
    c.workdir.mkdir()
    yield c
    c.stop()


def uplink_config(cloud: Cloud, tmp_path: Path, **kw: Any) -> UplinkConfig:
    base: dict[str, Any] = {
        "cloud": cloud.url,
        "token": TOKEN,
        "ice_host_addresses": ["127.0.0.1"],
        "spool_path": tmp_path / "spool.db",
        "reconnect_initial_s": 0.2,
        "reconnect_max_s": 1.0,
        "timeout_s": 3.0,
        "heartbeat_s": 0.5,
        "connect_timeout_s": 10.0,
        "drain_timeout_s": 60.0,
    }
    return UplinkConfig.model_validate(base | kw)


def write_stream(
    path: Path, seconds: float = 6.0, dim: int = 64, hello: Hello | None = None
) -> list[Envelope]:
    """A message file of a synthetic scene (every kind of message), f16 embeddings; recorded
    under ``hello`` when given (as ``semcom edge run --out`` records its own)."""
    choice = CodecChoice([create_codec("f16", dim)])
    scene = SyntheticScene(SceneSpec(tracks_per_s=3.0, track_s=3.0), choice)
    sink = FileSink(path)
    outbox = Outbox(EDGE, sink)
    t0 = time.time_ns() // 1_000
    if hello is not None:
        outbox.put(t0, hello, control=True)
    for i in range(int(seconds * 10)):
        now = t0 + i * 100_000
        for message in scene.tick(i * 0.1, now):
            outbox.put(now, message)
    for message in scene.tick(seconds + scene.spec.track_s + 1, t0 + int(20e6)):
        outbox.put(t0 + int(20e6), message)
    sink.close()
    with open(path, "rb") as fh:
        return [decode(f) for f in read_frames(fh)]


#: The grid of the boxes the uplink bundles (its default): what the cloud stores is what a
#: bundle delivers (boxes on this grid, confidences in 1/255 steps).
BOX_STEP: Final = UplinkConfig.model_fields["bundle_box_step"].default


def said(env: Envelope) -> tuple[int, str]:
    """What a message says as the cloud stores it (quantised as a bundle carries it; the same
    whether it came in a bundle or alone), whatever seq it was sent under."""
    return env.capture_ts_us, repr(quantise(env.message, BOX_STEP))


def content(frame: bytes) -> tuple[int, str]:
    """What a stored frame says (see :func:`said`)."""
    return said(decode(frame))


class EdgeThread(threading.Thread):
    """``run_replay`` in the test process (same code as ``semcom edge replay``)."""

    def __init__(self, config: UplinkConfig, **kw: Any) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.kw = kw
        self.stop_event = threading.Event()
        self.report: ReplayReport | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.report = run_replay(
                EDGE, self.config, "test", stop=self.stop_event, **{"dim": 64, **self.kw}
            )
        except BaseException as exc:
            self.error = exc


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def edge_cli(cloud: Cloud, tmp_path: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "semcom",
        "edge",
        "replay",
        *args,
        "--cloud",
        cloud.url,
        "--edge-id",
        EDGE,
        "--spool",
        str(tmp_path / "spool.db"),
        "--ice-host-address",
        "127.0.0.1",
        "--dim",
        "64",
        "--ladder",
        "f16",
    ]


def edge_env() -> dict[str, str]:
    return {
        **os.environ,
        "SEMCOM_EDGE__UPLINK__TOKEN": TOKEN,
        "SEMCOM_EDGE__UPLINK__RECONNECT_MAX_S": "1",
        "SEMCOM_EDGE__UPLINK__TIMEOUT_S": "3",
        "SEMCOM_EDGE__UPLINK__HEARTBEAT_S": "0.5",
    }


def _read(path: Path, sql: str) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        try:
            row = conn.execute(sql).fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0]) if row and row[0] is not None else 0


def spool_counter(path: Path, name: str) -> int:
    return _read(path, f"SELECT value FROM counters WHERE name = '{name}'")


def spool_pending(path: Path) -> int:
    return _read(path, "SELECT COUNT(*) FROM frames")
