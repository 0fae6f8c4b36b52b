"""The describer without a model: context from the catalog, rules, scheduling of windows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.engine import Engine

from cloud import schema
from cloud.db import open_database
from cloud.describe.config import DescriberConfig
from cloud.describe.context import ContextSettings, Window, build_context
from cloud.describe.errors import ContextError
from cloud.describe.jobs import JobQueue
from cloud.describe.metrics import DescriberMetrics
from cloud.describe.rules import RulesDescriber
from cloud.describe.runner import DescribeWorker
from cloud.describe.scheduler import Scheduler
from cloud.describe.schema import Congestion, IncidentKind, TrafficDescription
from tests.cloud.describe_fixtures import CAMERA, MOVING, STOPPED, T0, WALKER, S, fill_scene

MINUTE = Window(CAMERA, T0, T0 + 60 * S)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    fill_scene(e)
    yield e
    e.dispose()


def test_context_reads_tracks_speeds_and_stopped_vehicles(engine: Engine) -> None:
    ctx = build_context(engine, MINUTE, ContextSettings(max_images=2))
    assert ctx.camera == "north-gate"
    assert ctx.frame_size == (1280, 720)
    assert ctx.detections == ctx.detections_read == 41 + 81 + 61 + 1
    facts = {t.id: t for t in ctx.tracks}
    assert set(facts) == {MOVING, STOPPED, WALKER}
    # 0.8 image widths in 20 s; the stopped truck does not move at all
    assert facts[MOVING].speed == pytest.approx(0.04, rel=1e-6)
    assert facts[STOPPED].speed == 0
    assert facts[STOPPED].still_s == 40
    assert [t.id for t in ctx.stopped()] == [STOPPED]  # a walking person is no vehicle
    assert ctx.untracked == {5: 1}
    assert ctx.frame_counts[2].peak == 2
    assert ctx.frame_counts[2].frames == 60
    # one crop per track, longest tracks first, each an embedded detection of that track
    assert len(ctx.image_ids) == 2
    assert set(ctx.image_labels) == set(ctx.image_ids)
    with engine.connect() as conn:
        rows = conn.execute(
            select(schema.detections.c.track_id, schema.detections.c.has_embedding).where(
                schema.detections.c.id.in_(ctx.image_ids)
            )
        ).all()
    assert {r.track_id for r in rows} == {STOPPED, WALKER}
    assert all(r.has_embedding for r in rows)
    data = ctx.prompt_data()
    assert data["tracks"][0]["stopped_vehicle"] is True
    assert data["camera"] == "north-gate"
    with pytest.raises(ContextError, match="no camera with id 99"):
        build_context(engine, Window(99, T0, T0 + S), ContextSettings())


def test_rules_describe_the_scene_in_the_schema(engine: Engine) -> None:
    ctx = build_context(engine, MINUTE, ContextSettings())
    out = RulesDescriber().describe_now(ctx)
    assert TrafficDescription.model_validate(out.model_dump(mode="json")) == out
    # car: 2 in the per-frame counts beat 1 track; bus: untracked box
    assert out.counts.model_dump() == {
        "person": 1, "bicycle": 0, "car": 2, "motorcycle": 0, "bus": 1, "truck": 1, "other": 0
    }  # fmt: skip
    # 2 vehicles in view (light), moving slowly (0.04 widths/s < 0.05): one level up
    assert out.congestion is Congestion.MODERATE
    assert [(i.kind, i.track_ids) for i in out.incidents] == [
        (IncidentKind.STOPPED_VEHICLE, [STOPPED])
    ]
    assert "north-gate" in out.summary
    assert "rules" in out.summary
    empty = build_context(engine, Window(CAMERA, T0 - 60 * S, T0), ContextSettings())
    nothing = RulesDescriber().describe_now(empty)
    assert nothing.congestion is Congestion.FREE
    assert nothing.counts.total() == 0


def test_scheduler_enqueues_closed_windows_and_events_once(engine: Engine) -> None:
    config = DescriberConfig(window_s=30, settle_s=5, idle_close_s=3600, stopped_after_s=30)
    metrics = DescriberMetrics(CollectorRegistry())
    queue = JobQueue(engine, "describe")
    now = [T0 + 61 * S]
    scheduler = Scheduler(engine, queue, config, metrics, lambda: now[0])
    # start: newest box at 50 s; [0, 30) closed (50 >= 30 + 5), [30, 60) still open
    assert scheduler.tick() == 1
    # a new box of the stopped truck at 56 s, a new class (motorcycle) at 55 s
    with engine.begin() as conn:
        conn.execute(
            schema.detections.insert(),
            [
                {"camera_id": CAMERA, "track_id": STOPPED, "ts_us": T0 + 56 * S, "class_id": 7,
                 "confidence": 0.9, "x1": 0.6, "y1": 0.3, "x2": 0.8, "y2": 0.5,
                 "edge_id": "edge-a", "seq": 999, "has_embedding": False},
                {"camera_id": CAMERA, "track_id": None, "ts_us": T0 + 55 * S, "class_id": 3,
                 "confidence": 0.9, "x1": 0.1, "y1": 0.1, "x2": 0.2, "y2": 0.2,
                 "edge_id": "edge-a", "seq": 1000, "has_embedding": False},
            ],
        )  # fmt: skip
    assert scheduler.tick() == 2  # first motorcycle, stopped truck (46 s still)
    assert scheduler.tick() == 0
    now[0] = T0 + 90 * S + 3600 * S  # the camera went silent: the wall clock closes [30, 60)
    assert scheduler.tick() == 1
    with engine.connect() as conn:
        keys = sorted(conn.execute(select(schema.jobs.c.key)).scalars())
    assert keys == [
        f"class:{CAMERA}:3", f"stopped:{STOPPED}", f"window:{CAMERA}:{T0}",
        f"window:{CAMERA}:{T0 + 30 * S}",
    ]  # fmt: skip
    # a restarted scheduler considers the same windows again: nothing is queued twice
    again = Scheduler(engine, queue, config, metrics, lambda: now[0])
    assert again.tick(final=True) == 0


def test_worker_stores_rules_descriptions(engine: Engine) -> None:
    config = DescriberConfig(window_s=60, stopped_after_s=30)
    worker = DescribeWorker.build(config, engine, CollectorRegistry())
    assert asyncio.run(worker.drain()) == 1
    with engine.connect() as conn:
        row = conn.execute(select(schema.descriptions)).one()
    assert (row.camera_id, row.from_us, row.to_us) == (CAMERA, T0, T0 + 60 * S)
    assert row.describer == "rules"
    assert row.summary == row.body["summary"]
    assert row.body["meta"]["reason"] == "window"
    assert row.body["meta"]["images"] == []
    TrafficDescription.model_validate({k: v for k, v in row.body.items() if k != "meta"})
    assert worker.queue.counts() == {"done": 1}
