"""Retention of the analytics tables (SQLite, PostgreSQL): events that happened before the
cut-off and congestion windows that ended before it go, in chunks; the rest stays."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from cloud import retention as retention_module
from cloud.metrics import CloudMetrics
from cloud.retention import Retention
from cloud.schema import analytics_events, congestion_windows
from tests.cloud.analytics_fixtures import T0
from tests.cloud.test_analytics_congestion import W
from tests.cloud.test_api_congestion import congestion_world

MAX_AGE_S = 3600.0


def count(engine: Any, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def old_kinds(engine: Any, cut: int) -> set[str]:
    e = analytics_events.c
    with engine.connect() as conn:
        return set(conn.execute(select(e.kind).where(e.at_us < cut).distinct()).scalars())


def window_starts(engine: Any) -> list[int]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(congestion_windows.c.start_us)).scalars())


def test_old_analytics_events_and_congestion_windows_are_deleted(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _camera = congestion_world(database_url)
    monkeypatch.setattr(retention_module, "CHUNK", 2)  # several chunks per table
    cut = T0 + W  # W0's window ends at the cut-off, W1 and W3 after it
    at = analytics_events.c.at_us
    old, recent = (
        count(engine, analytics_events, at < cut),
        count(engine, analytics_events, at >= cut),
    )
    assert old >= 3  # the jam's change event, the two cars' zone entries
    assert {"congestion", "zone_entry"} <= old_kinds(engine, cut)
    starts = window_starts(engine)
    assert starts == [T0, T0 + W, T0 + W, T0 + 3 * W]  # queue W0, W1, W3; lane W1

    metrics = CloudMetrics()
    retention = Retention(engine, MAX_AGE_S, metrics)
    removed = retention.run_once(now_s=cut / 1e6 + MAX_AGE_S)
    assert removed["analytics_events"] == old
    assert removed["congestion_windows"] == 1
    assert count(engine, analytics_events, at < cut) == 0
    assert count(engine, analytics_events) == recent
    assert window_starts(engine) == starts[1:]
    deleted = metrics.registry.get_sample_value(
        "semcom_retention_deleted_total", {"table": "analytics_events"}
    )
    assert deleted == old
    again = retention.run_once(now_s=cut / 1e6 + MAX_AGE_S)
    assert (again["analytics_events"], again["congestion_windows"]) == (0, 0)
    engine.dispose()
