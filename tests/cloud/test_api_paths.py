"""The track-level read routes over HTTP (a live server on port 0, SQLite and PostgreSQL):
a track's redrawn path and objects in view per class."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from cloud.api.params import to_datetime
from tests.cloud.api_fixtures import World, error_of


def _us(text: str) -> int:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(when.timestamp() * 1e6)


def test_track_path_has_its_sightings_and_interpolated_boxes_between(
    api: httpx.Client, world: World
) -> None:
    track = next(t for t in world.tracks.values() if t["last_seen_us"] > t["first_seen_us"])
    mine = sorted(
        (d for d in world.detections if d["track_id"] == track["id"]),
        key=lambda d: (d["ts_us"], d["id"]),
    )
    first, last = mine[0]["ts_us"], mine[-1]["ts_us"]
    step_ms = max((last - first) // 1000 // 20, 1)  # about 20 interpolated boxes
    body = api.get(f"/v1/tracks/{track['id']}/path", params={"step_ms": step_ms}).json()
    assert body["track_id"] == track["id"]
    boxes = body["boxes"]
    times = [_us(b["time"]) for b in boxes]
    assert times == sorted(set(times))
    assert (times[0], times[-1]) == (first, last)
    sighted = {d["ts_us"]: d for d in reversed(mine)}  # the first row of each time
    for b, t in zip(boxes, times, strict=True):
        assert b["interpolated"] is (t not in sighted)
        if t in sighted:
            assert b["box"]["x1"] == pytest.approx(sighted[t]["x1"], abs=1 / 65535)
    steps = set(range(first, last + 1, step_ms * 1000))
    assert steps <= set(times)
    assert len(times) == len(steps | set(sighted))
    error_of(api.get("/v1/tracks/424242/path"), 404, "not_found")
    error_of(api.get(f"/v1/tracks/{track['id']}/path", params={"step_ms": 0}), 422, None)


def test_objects_in_view_per_class_from_tracks(api: httpx.Client, world: World) -> None:
    starts = [t["first_seen_us"] for t in world.tracks.values()]
    ends = [t["last_seen_us"] for t in world.tracks.values()]
    lo, hi = min(starts), max(ends) + 1
    window_us = max((hi - lo) // 3, 1)
    params = {"from": to_datetime(lo).isoformat(), "to": to_datetime(hi).isoformat()}
    body = api.get("/v1/objects-in-view", params={**params, "window_s": window_us / 1e6}).json()
    windows = body["windows"]
    assert len(windows) == -(-(hi - lo) // window_us)
    for w in windows:
        a, b = _us(w["start"]), _us(w["end"])
        overlap = sum(
            max(min(t["last_seen_us"], b) - max(t["first_seen_us"], a), 0)
            for t in world.tracks.values()
        )
        # every track of the world is a car (class 2); a class with none in view is left out
        assert w["classes"].get("2", 0.0) == pytest.approx(overlap / (b - a))
        assert set(w["classes"]) <= {"2"}
    backwards = {"from": params["to"], "to": params["from"]}
    error_of(api.get("/v1/objects-in-view", params=backwards), 422, None)
    # a window that rounds to no microsecond is the caller's error, not a server error
    tiny = {**params, "window_s": 1e-9}
    error_of(api.get("/v1/objects-in-view", params=tiny), 422, None)
