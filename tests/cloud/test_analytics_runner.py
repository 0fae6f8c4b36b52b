"""The analytics runner over a real catalog fed through the ingest path (SQLite, PostgreSQL).

Scripted tracks (:mod:`tests.cloud.analytics_fixtures`) go through a live ingest session and
the group-committing writer; the runner then analyses what ingest wrote. Counts must be exact,
and stay exact when the same frames come again, when everything is processed again, when the
runner restarts (or dies) half-way, when boxes arrive after their track's end, and across a
scene change. Metrics move once per stored event.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from cloud.analytics import runner as runner_module
from cloud.analytics import store as store_module
from cloud.analytics.config import AnalyticsConfig
from cloud.analytics.metrics import AnalyticsMetrics
from cloud.analytics.runner import AnalyticsRunner
from cloud.analytics.scenes import put_scene, validate_scene
from cloud.db import open_database
from cloud.schema import analytics_events, analytics_progress, cameras, tracks
from cloud.store import Store
from shared.vectors import CodecSet
from tests.cloud.analytics_fixtures import (
    CAR,
    PERSON,
    SCENE,
    T0,
    TRUCK,
    Road,
    S,
    Scripted,
    ingest,
)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    yield e
    e.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    s = Store(engine, CodecSet())
    ingest(s, [])  # the Hello: edge and camera rows
    return s


def camera_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(cameras.c.id)).scalar_one())


def set_scene(engine: Engine, scene: dict[str, Any]) -> str:
    stored, _ = put_scene(engine, camera_id(engine), validate_scene(scene), time.time_ns() // 1000)
    return stored.version


def new_runner(engine: Engine, **config: Any) -> tuple[AnalyticsRunner, CollectorRegistry]:
    registry = CollectorRegistry()
    return AnalyticsRunner(engine, AnalyticsConfig(**config), AnalyticsMetrics(registry)), registry


def events(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(analytics_events).order_by(analytics_events.c.id)))


def crossings(engine: Engine) -> Counter[tuple[str, int | None]]:
    return Counter((e.direction, e.class_id) for e in events(engine) if e.kind == "line_crossing")


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def three_tracks() -> Road:
    road = Road()
    road.add(1, CAR, (0.3, 0.2), (0.3, 0.8), T0, 6)  # down across the gate: in
    road.add(2, CAR, (0.5, 0.8), (0.5, 0.2), T0 + S, 6)  # up: out
    road.add(3, PERSON, (0.7, 0.3), (0.8, 0.9), T0, 8)  # down: in, then into the lot
    return road


EXPECTED = Counter({("in", CAR): 1, ("out", CAR): 1, ("in", PERSON): 1})


def test_counts_are_exact_and_never_doubled(engine: Engine, store: Store) -> None:
    set_scene(engine, SCENE)
    road = three_tracks()
    frames = road.frames()
    ingest(store, frames)
    runner, registry = new_runner(engine)
    stats = runner.run_once()
    assert stats.analysed == 3
    assert crossings(engine) == EXPECTED
    kinds = Counter(e.kind for e in events(engine))
    assert kinds == {"line_crossing": 3, "speed": 3, "zone_entry": 1, "zone_exit": 1}
    cam = "edge-01/cam-a"
    name = "semcom_analytics_crossings_total"
    assert metric(registry, name, camera=cam, line="gate", direction="in", **{"class": "car"}) == 1
    assert metric(registry, name, camera=cam, line="gate", direction="out", **{"class": "car"}) == 1
    assert metric(registry, name, camera=cam, line="gate", direction="in",
                  **{"class": "person"}) == 1  # fmt: skip
    before = events(engine)

    # Nothing changed: nothing analysed again.
    assert runner.run_once().analysed == 0
    # The same frames again (an edge resending what was not acked): journal repeats.
    ingest(store, frames)
    assert runner.run_once().inserted == 0
    # Everything processed again, by this runner and by a fresh one (a restart).
    runner.reprocess(camera_id(engine))
    again = runner.run_once()
    assert (again.analysed, again.inserted, again.updated, again.deleted) == (3, 0, 0, 0)
    fresh, fresh_registry = new_runner(engine)
    fresh.reprocess(camera_id(engine))
    assert fresh.run_once().inserted == 0
    assert [tuple(r) for r in events(engine)] == [tuple(r) for r in before]
    assert metric(registry, name, camera=cam, line="gate", direction="in", **{"class": "car"}) == 1
    assert metric(fresh_registry, name, camera=cam, line="gate", direction="in",
                  **{"class": "car"}) == 0  # fmt: skip


def test_growing_tracks_across_a_restart_and_a_crash(
    engine: Engine, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_scene(engine, SCENE)
    road = three_tracks()
    halves = road.frames(until_us=T0 + 3 * S, ends=False), road.frames(ends=True)
    # the second call renumbers from where the first stopped; keep only the later frames
    first_half, everything = halves
    ingest(store, first_half)
    runner, registry_a = new_runner(engine, batch_tracks=1)  # one track per transaction
    runner.run_once()
    early = crossings(engine)
    assert sum(early.values()) < 3  # the tracks are only half-way

    # A crash half-way through the next pass: the first batch commits, the second fails.
    ingest(store, everything[len(first_half) :])
    real_apply = store_module.apply
    calls = {"n": 0}

    def failing_apply(conn: Any, todo: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real_apply(conn, todo)

    monkeypatch.setattr(runner_module, "apply", failing_apply)
    with pytest.raises(RuntimeError, match="killed"):
        runner.run_once()
    monkeypatch.setattr(runner_module, "apply", real_apply)
    runner.stop()

    # A new runner (a restarted cloud) on the same catalog finishes the work.
    restarted, registry_b = new_runner(engine)
    restarted.run_once()
    assert crossings(engine) == EXPECTED
    with engine.connect() as conn:
        mark = conn.execute(select(analytics_progress.c.watermark_us)).scalar_one()
        newest = conn.execute(select(func.max(tracks.c.updated_us))).scalar_one()
    assert mark == newest
    total = sum(
        metric(r, "semcom_analytics_crossings_total", camera="edge-01/cam-a", line="gate",
               direction=d, **{"class": c})
        for r in (registry_a, registry_b)
        for d, c in (("in", "car"), ("out", "car"), ("in", "person"))
    )  # fmt: skip
    assert total == 3  # each crossing counted once, by whichever runner stored it


def test_boxes_after_their_track_end_rewrite_without_doubling(engine: Engine, store: Store) -> None:
    set_scene(engine, SCENE)
    # Seen every 0.5 s, occluded from 2 s to 5 s: its path (boxes without times, spread
    # evenly over its span) puts the crossing at about 3.7 s, its boxes at 3 s.
    seconds = (0, 0.5, 1, 1.5, 2, 5, 5.5, 6)
    road = Road([Scripted(1, CAR, [(T0 + round(t * S), 0.3, 0.2 + 0.1 * t) for t in seconds])])
    frames = road.frames()  # Detections..., TrackEnd
    end, boxes = frames[-1], frames[:-1]
    # After an outage the spool drains by priority: the track's end overtakes its boxes.
    ingest(store, [end])
    runner, registry = new_runner(engine)
    runner.run_once()
    from_path = [e for e in events(engine) if e.kind == "line_crossing"]
    assert [(e.direction, e.class_id) for e in from_path] == [("in", CAR)]
    assert abs(from_path[0].at_us - (T0 + 3.7 * S)) < 0.1 * S
    ingest(store, boxes)  # late boxes inside the ended track's span
    runner.run_once()
    rows = [e for e in events(engine) if e.kind == "line_crossing"]
    assert [(e.id, e.direction) for e in rows] == [(from_path[0].id, "in")]
    assert abs(rows[0].at_us - (T0 + 3 * S)) <= 1000  # y = 0.5 at 3 s: the boxes' moment
    assert metric(registry, "semcom_analytics_crossings_total", camera="edge-01/cam-a",
                  line="gate", direction="in", **{"class": "car"}) == 1  # fmt: skip


def test_a_scene_change_applies_from_then_on(engine: Engine, store: Store) -> None:
    v1 = set_scene(engine, SCENE)
    road = Road()
    road.add(1, CAR, (0.3, 0.2), (0.3, 0.8), T0, 6)  # crosses at 3 s
    first = road.frames(until_us=T0 + 4 * S, ends=False)
    ingest(store, first)
    runner, _ = new_runner(engine)
    runner.run_once()
    # The line moves down and gets a second line; the car is still on its way.
    moved = {**SCENE, "lines": {"gate": {"points": [[0.0, 0.7], [1.0, 0.7]]},
                                "upper": {"points": [[0.0, 0.3], [1.0, 0.3]]}}}  # fmt: skip
    v2 = set_scene(engine, moved)
    assert v2 != v1
    rest = road.frames()[len(first) :]  # the same track's later frames (new seqs)
    later = Road(seq=road.seq)
    later.add(2, TRUCK, (0.2, 0.2), (0.2, 0.9), T0 + 10 * S, 6)  # a new track under v2
    ingest(store, rest)
    ingest(store, later.frames())
    runner.run_once()
    by_track: dict[int, set[str]] = {}
    lines: Counter[tuple[int, str]] = Counter()
    with engine.connect() as conn:
        local = dict(conn.execute(select(tracks.c.id, tracks.c.local_id)).all())
    for e in events(engine):
        by_track.setdefault(local[e.track_id], set()).add(e.scene_version)
        if e.kind == "line_crossing":
            lines[(local[e.track_id], e.subject)] += 1
    assert by_track == {1: {v1}, 2: {v2}}  # the car keeps the scene it began with
    assert lines == {(1, "gate"): 1, (2, "gate"): 1, (2, "upper"): 1}


def test_incidents_and_tracks_before_the_scene(engine: Engine, store: Store) -> None:
    road = Road()
    road.add(1, CAR, (0.3, 0.2), (0.3, 0.8), T0, 6)
    ingest(store, road.frames())  # before any scene: never analysed
    runner, registry = new_runner(engine)
    assert runner.run_once().cameras == 0
    set_scene(engine, SCENE)
    parked = Road(seq=road.seq)
    truck = parked.add(5, TRUCK, (0.7, 0.3), (0.8, 0.8), T0 + 100 * S, 4)  # into the lot
    truck.points += [(T0 + 104 * S + i * S // 2, 0.8, 0.8) for i in range(1, 41)]  # 20 s
    ingest(store, parked.frames())
    runner.run_once()
    kinds = Counter(e.kind for e in events(engine))
    assert kinds["stopped_vehicle"] == 1
    assert kinds["line_crossing"] == 1  # the truck's; the car predates the scene
    assert metric(registry, "semcom_analytics_incidents_total", camera="edge-01/cam-a",
                  kind="stopped_vehicle") == 1  # fmt: skip
    runner.reprocess(camera_id(engine))  # from the beginning: the scene's, not the catalog's
    runner.run_once()
    assert Counter(e.kind for e in events(engine)) == kinds
    assert metric(registry, "semcom_analytics_incidents_total", camera="edge-01/cam-a",
                  kind="stopped_vehicle") == 1  # fmt: skip


def test_a_long_track_in_progress_is_analysed_less_often(engine: Engine, store: Store) -> None:
    set_scene(engine, SCENE)
    now = [time.time_ns() // 1000]
    runner = AnalyticsRunner(
        engine,
        AnalyticsConfig(long_track_samples=5, long_track_every_s=30),
        AnalyticsMetrics(CollectorRegistry()),
        clock_us=lambda: now[0],
    )
    road = Road()
    road.add(1, CAR, (0.3, 0.2), (0.3, 0.8), T0, 6)  # crosses at 3 s
    early = road.frames(until_us=T0 + 2 * S, ends=False)  # 4 samples, then 8
    ingest(store, early)
    runner.run_once()
    middle = road.frames(until_us=T0 + 4 * S, ends=False)[len(early) :]
    ingest(store, middle)
    assert runner.run_once().analysed == 1  # 8 samples: long from now on
    assert crossings(engine) == {("in", CAR): 1}
    tail = road.frames(ends=False)[len(early) + len(middle) :]
    ingest(store, tail)
    assert runner.run_once().analysed == 0  # changed, but analysed 0 s ago: later
    with engine.connect() as conn:
        mark = conn.execute(select(analytics_progress.c.watermark_us)).scalar_one()
        updated = conn.execute(select(tracks.c.updated_us)).scalar_one()
    assert mark <= updated  # the watermark waits for it
    now[0] += 31 * S
    assert runner.run_once().analysed == 1
    ingest(store, [road.end(road.tracks[0])])  # its end is analysed at once
    assert runner.run_once().analysed == 1
    assert crossings(engine) == {("in", CAR): 1}
