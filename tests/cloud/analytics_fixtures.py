"""Test material for the analytics runner: scripted traffic sent through the real ingest path.

:class:`Road` scripts tracks on one camera (``edge-01/cam-a``, 1280x720) as the edge would
report them: per-frame ``Detections`` (every 0.5 s by default) of each track's box around a
moving reference point (bottom centre), and a ``TrackEnd`` with class votes and a path.
:func:`ingest` feeds such frames through :class:`cloud.ingest.Ingest` and the group-committing
:class:`cloud.writer.Writer` into a real catalog, exactly as a connected edge's messages go.

:data:`SCENE` has a horizontal counting line ``gate`` across the middle (``in``: moving down
the image) and a zone ``lot`` in the lower half where stopping is not expected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.engine import Engine

from cloud.ingest import Ingest
from cloud.metrics import CloudMetrics
from cloud.store import Store
from cloud.writer import Writer
from shared.codec import encode
from shared.geometry import Box
from shared.messages import CameraInfo, CodecRef, Detections, Envelope, Hello, Message, TrackEnd
from shared.vectors import create_codec

EDGE = "edge-01"
CAMERA = "cam-a"
T0 = 1_795_514_400_000_000  # 2026-11-24T10:00:00Z (us)
S = 1_000_000
CAR, PERSON, TRUCK = 2, 0, 7
F16 = create_codec("f16", 32)

SCENE: dict[str, Any] = {
    "frame": {"width": 1280, "height": 720},
    "lines": {"gate": {"points": [[0.0, 0.5], [1.0, 0.5]]}},
    "zones": {
        "lot": {
            "polygon": [[0.6, 0.6], [0.95, 0.6], [0.95, 0.95], [0.6, 0.95]],
            "stopping_expected": False,
            "stopped_after_s": 10,
        }
    },
}


def box_at(x: float, y: float) -> Box:
    """A box whose bottom centre (the reference point) is (x, y)."""
    return Box(x - 0.02, y - 0.06, x + 0.02, y)


def hello() -> bytes:
    msg = Hello(
        "0.1.0",
        "yolo11n",
        "vit_test",
        32,
        (CodecRef("f16", F16.content_hash),),
        (CameraInfo(CAMERA, 1280, 720, 25.0),),
        False,
    )
    return encode(Envelope(EDGE, 0, T0, T0, msg))


@dataclass
class Scripted:
    """One track: reference points at times (us)."""

    local_id: int
    class_id: int
    points: list[tuple[int, float, float]]  # (t_us, x, y)


@dataclass
class Road:
    """Scripted tracks of one camera, turned into the edge's frames (:meth:`frames`)."""

    tracks: list[Scripted] = field(default_factory=list)
    seq: int = 0

    def add(
        self,
        local_id: int,
        class_id: int,
        start: tuple[float, float],
        end: tuple[float, float],
        t0_us: int,
        seconds: float,
        step_us: int = S // 2,
    ) -> Scripted:
        """A track moving in a straight line from ``start`` to ``end`` over ``seconds``."""
        n = round(seconds * S / step_us)
        points = [
            (t0_us + i * step_us,
             start[0] + (end[0] - start[0]) * i / n,
             start[1] + (end[1] - start[1]) * i / n)
            for i in range(n + 1)
        ]  # fmt: skip
        track = Scripted(local_id, class_id, points)
        self.tracks.append(track)
        return track

    def _envelope(self, ts: int, message: Message) -> bytes:
        self.seq += 1
        return encode(Envelope(EDGE, self.seq, ts, ts, message))

    def frames(self, until_us: int | None = None, ends: bool = True) -> list[bytes]:
        """Detections per capture time (all tracks seen then), then each track's TrackEnd
        (when ``ends``), for capture times before ``until_us`` (None: all)."""
        times = sorted({t for tr in self.tracks for t, _, _ in tr.points})
        out = []
        for ts in times:
            if until_us is not None and ts >= until_us:
                continue
            seen = [(tr, x, y) for tr in self.tracks for t, x, y in tr.points if t == ts]
            message = Detections(
                CAMERA,
                tuple(box_at(x, y) for _, x, y in seen),
                tuple(tr.class_id for tr, _, _ in seen),
                tuple(0.8 for _ in seen),
                tuple(tr.local_id for tr, _, _ in seen),
            )
            out.append(self._envelope(ts, message))
        if ends:
            out += [self.end(tr) for tr in self.tracks]
        return out

    def end(self, tr: Scripted) -> bytes:
        first, last = tr.points[0][0], tr.points[-1][0]
        path = tuple(box_at(x, y) for _, x, y in tr.points[:: max(1, len(tr.points) // 16)])
        message = TrackEnd(
            CAMERA, tr.local_id, first, last, len(tr.points), {tr.class_id: 10}, path
        )
        return self._envelope(last, message)


def ingest(store: Store, frames: Sequence[bytes]) -> None:
    """Send ``frames`` (after a Hello) through a live ingest session and the writer."""
    metrics = CloudMetrics()
    writer = Writer(store, metrics)
    ingest_ = Ingest(store, writer, metrics)

    async def main() -> None:
        writer.start()
        try:
            live = ingest_.open(EDGE)
            await live.handle(hello())
            for frame in frames:
                await live.handle(frame)
        finally:
            await asyncio.to_thread(writer.stop)

    asyncio.run(main())


MINUTE = 60 * S
# (minute, class, direction) of each track of the traffic world, in start order
TRAFFIC = (
    (0, CAR, "in"),
    (0, CAR, "in"),
    (0, PERSON, "in"),  # walks on into the lot (zone entry, exit at its end)
    (1, CAR, "out"),
    (1, TRUCK, "in"),
    (3, CAR, "out"),
    (3, CAR, "out"),
)


def traffic_world(url: str) -> tuple[Engine, int]:
    """A catalog at ``url`` with :data:`SCENE` on ``cam-a`` and the :data:`TRAFFIC` ingested
    and analysed (every crossing 3 s after its track starts, tracks 10 s apart within their
    minute from ``T0``); returns the engine and the camera's id."""
    from cloud.analytics.config import AnalyticsConfig
    from cloud.analytics.metrics import AnalyticsMetrics
    from cloud.analytics.runner import AnalyticsRunner
    from cloud.analytics.scenes import put_scene, validate_scene
    from cloud.db import open_database
    from cloud.schema import cameras
    from shared.vectors import CodecSet

    engine = open_database(url)
    store = Store(engine, CodecSet())
    ingest(store, [])
    with engine.connect() as conn:
        camera_id = int(conn.execute(select(cameras.c.id)).scalar_one())
    put_scene(engine, camera_id, validate_scene(SCENE), time.time_ns() // 1000)
    road = Road()
    slot: dict[int, int] = {}
    for local, (minute, class_id, direction) in enumerate(TRAFFIC, start=1):
        k = slot[minute] = slot.get(minute, -1) + 1
        t0 = T0 + minute * MINUTE + k * 10 * S
        if class_id == PERSON:
            road.add(local, class_id, (0.7, 0.2), (0.8, 0.8), t0, 6)
        elif direction == "in":
            road.add(local, class_id, (0.1 + 0.1 * k, 0.2), (0.1 + 0.1 * k, 0.8), t0, 6)
        else:
            road.add(local, class_id, (0.1 + 0.1 * k, 0.8), (0.1 + 0.1 * k, 0.2), t0, 6)
    ingest(store, road.frames())
    AnalyticsRunner(engine, AnalyticsConfig(), AnalyticsMetrics(CollectorRegistry())).run_once()
    return engine, camera_id
