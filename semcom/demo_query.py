"""After the edge: what the cloud made of it, read through the API, into the summary."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from semcom.demo_client import (
    DESCRIPTIONS_ROUTE,
    IMAGE_ROUTE,
    CloudClient,
    error_message,
    pick_query,
    search_example,
    tracks_by_class,
    wait_descriptions,
)
from semcom.demo_cloud import CloudPlan, CloudProcess
from semcom.demo_edge import CAMERA_ID, EdgeOutcome
from semcom.demo_errors import DemoCloudError
from semcom.demo_source import DemoSource
from semcom.demo_summary import build_summary

SEARCH_K = 5


def query_cloud(
    cloud: CloudProcess,
    plan: CloudPlan,
    api_token: str,
    edge: EdgeOutcome,
    source: DemoSource,
    *,
    describe_wait_s: float,
    echo: Callable[[str], None],
    timings: dict[str, float],
    kept: bool,
    save_dir: Path | None,
) -> dict[str, Any]:
    """Read the catalog, an example search, the descriptions (waiting for the last window at
    most ``describe_wait_s`` past its closing time) and a rebuilt crop; build the summary."""
    t0 = time.monotonic()
    client = CloudClient(cloud.url, api_token)
    try:
        stats = client.get("/v1/stats")
        tracks = tracks_by_class(client, edge.class_names)
        query = pick_query(tracks.detections)
        encoders = {s["name"]: s["encoder"] for s in stats.get("spaces", [])}
        search = search_section(client, query, edge.class_names, encoders)
        descriptions = _descriptions(client, plan, describe_wait_s, echo)
        decoder = _decoder(client, plan, query, save_dir)
    finally:
        client.close()
    timings = {**timings, "cloud_queries": time.monotonic() - t0}
    return build_summary(
        source={
            "label": source.label,
            "kind": source.kind,
            "width": edge.width,
            "height": edge.height,
            "frame_sizes": edge.frame_sizes,
            "fps": edge.fps,
            "frames": edge.captured,
        },
        edge=edge,
        cloud={
            "detections": stats["detections"],
            "embeddings": stats["embeddings"],
            "tracks": stats["tracks"],
            "tracks_by_class": tracks.by_class,
            "spaces": [s["name"] for s in stats.get("spaces", [])],
        },
        descriptions=descriptions,
        search=search,
        decoder=decoder,
        api=_api(cloud.url, api_token, query, kept),
        timings=timings,
    )


def _class(names: dict[int, str], class_id: int) -> str:
    return names.get(class_id, f"class {class_id}")


def search_section(
    client: CloudClient,
    query: dict[str, Any] | None,
    names: dict[int, str],
    encoders: dict[str, str],
) -> dict[str, Any]:
    """The summary's example search: other tracks that look like ``query``, each hit labelled
    with its class, track and matching sightings, and the encoder (``encoders``: space name
    -> encoder, from /v1/stats) whose vectors made them."""
    if query is None:
        return {"error": "no detection with an embedding was stored: nothing to search with"}
    try:
        result = search_example(client, query, SEARCH_K)
    except DemoCloudError as exc:
        return {"error": str(exc)}
    return {
        "k": SEARCH_K,
        "group": result["group"],
        "excluded_track": result["excluded_track"],
        "encoder": encoders.get(result["space"]),
        "space": result["space"],
        "random_init_encoder": result["random_init_encoder"],
        "query": {
            "id": query["id"],
            "class": _class(names, int(query["class_id"])),
            "track_id": query["track_id"],
            "time": query["time"],
        },
        "hits": [
            {
                "score": round(float(h["score"]), 4),
                "id": h["detection"]["id"],
                "class": _class(names, int(h["detection"]["class_id"])),
                "track_id": h["track_id"],
                "sightings": h["sightings"],
                "time": h["detection"]["time"],
            }
            for h in result["hits"]
        ],
    }


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class _Span:
    """The demo camera's detections in time (s since the epoch) and the windows they cover."""

    first: float
    last: float
    windows: int
    last_window_end: float


def _span(client: CloudClient, window_s: float) -> _Span | None:
    cameras = client.get("/v1/cameras")["cameras"]
    camera = next((c for c in cameras if c["name"] == CAMERA_ID), None)
    if camera is None or not camera.get("first_detection") or not camera.get("last_detection"):
        return None
    first = _seconds(camera["first_detection"])
    last = _seconds(camera["last_detection"])
    windows = int(math.floor(last / window_s) - math.floor(first / window_s)) + 1
    return _Span(first, last, windows, (math.floor(last / window_s) + 1) * window_s)


def _descriptions(
    client: CloudClient, plan: CloudPlan, extra_wait_s: float, echo: Callable[[str], None]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "describer_label": plan.describer or "none",
        "describer": plan.describer_note,
        "items": [],
    }
    if plan.describer is None:
        out["status"] = plan.describer_note
        return out
    if not client.has_route(DESCRIPTIONS_ROUTE):
        out["status"] = f"GET {DESCRIPTIONS_ROUTE} is not in this build: no descriptions"
        return out
    window_s = plan.window_s or 60.0
    span = _span(client, window_s)
    if span is None:
        out["status"] = "no detections stored: nothing to describe"
        return out
    # The last window closes once the wall clock passes its end by idle_close_s (capture
    # times of an unpaced video may run ahead of the clock).
    idle = float(plan.settings.get("describer", {}).get("idle_close_s", 0.0))
    wait_s = max(0.0, span.last_window_end - time.time()) + idle + extra_wait_s
    echo(
        f"demo: waiting up to {wait_s:.0f} s for the describer ({span.windows} window(s) of "
        f"{window_s:g} s)"
    )

    def done(items: list[dict[str, Any]]) -> bool:
        return any(
            d.get("camera") == CAMERA_ID
            and d.get("reason") in (None, "window")
            and _seconds(str(d["end"])) > span.last
            for d in items
            if d.get("end")
        )

    def note(have: int, left: float) -> None:
        echo(f"demo: {have} description(s) so far, waiting {left:.0f} s more")

    try:
        items, timed_out = wait_descriptions(client, done, wait_s, note)
    except DemoCloudError as exc:
        out["status"] = f"cannot list descriptions: {exc}"
        return out
    # Windows first (in time order), then the notable events.
    items = sorted(
        items,
        key=lambda d: (d.get("reason") not in (None, "window"), str(d.get("start")), d.get("id")),
    )
    out["items"] = [_description(d) for d in items]
    out["records"] = items
    status = f"{len(items)} description(s)"
    if plan.window_s:
        status += f", windows of {plan.window_s:g} s (demo setting)"
    if timed_out:
        status += f"; the last window was not described within {wait_s:.0f} s"
    out["status"] = status
    return out


def _clock(iso: Any) -> str:
    """``HH:MM:SS`` of an ISO time (UTC), for short labels."""
    text = str(iso or "")
    return text[11:19] if len(text) >= 19 else text


def _description(d: dict[str, Any]) -> dict[str, Any]:
    """The fields the text summary shows, from one ``Description`` of the API."""
    reason = d.get("reason") or "window"
    parts = [f"{_clock(d.get('start'))}-{_clock(d.get('end'))} UTC", reason]
    if d.get("congestion"):
        parts.append(f"congestion {d['congestion']}")
    return {
        "summary": d.get("summary"),
        "window": ", ".join(parts),
        "describer": d.get("describer"),
        "counts": d.get("counts"),
        "incidents": len(d.get("incidents") or ()),
    }


def _decoder(
    client: CloudClient, plan: CloudPlan, query: dict[str, Any] | None, save_dir: Path | None
) -> dict[str, Any]:
    if not plan.decoder:
        return {"status": plan.decoder_note}
    if not client.has_route(IMAGE_ROUTE):
        return {"status": f"GET {IMAGE_ROUTE} is not in this build"}
    if query is None:
        return {"status": "no embedded detection to rebuild"}
    response = client.image(int(query["id"]))
    path = IMAGE_ROUTE.format(detection_id=query["id"])
    if not response.is_success:
        return {"status": f"GET {path}: HTTP {response.status_code}: {error_message(response)}"}
    kind = response.headers.get("content-type", "?")
    space = response.headers.get("x-semcom-decoder", "")
    out: dict[str, Any] = {"bytes": len(response.content), "space": space}
    status = f"GET {path} -> {kind}, {len(response.content)} bytes ({plan.decoder_note})"
    if space.endswith("-random-init"):
        status += "; RANDOM-INIT encoder space: the image means little"
    if save_dir is not None:
        file = save_dir / f"rebuilt-{query['id']}.png"
        file.write_bytes(response.content)
        out["file"] = str(file)
        status += f"; saved to {file}"
    out["status"] = status
    return out


def _api(url: str, token: str, query: dict[str, Any] | None, kept: bool) -> dict[str, Any]:
    auth = f'-H "Authorization: Bearer {token}"'
    detection = query["id"] if query else 1
    examples = [
        f"curl {auth} {url}/v1/stats",
        f"curl {auth} '{url}/v1/detections?limit=5'",
        f"curl {auth} -H 'content-type: application/json' "
        f'-d \'{{"detection_id": {detection}, "k": 5}}\' {url}/v1/search',
    ]
    note = "serving until Ctrl-C" if kept else "stopped with this command (--keep-serving keeps it)"
    return {
        "url": url,
        "token": token,
        "dashboard": f"{url}/",
        "examples": examples,
        "note": note,
    }
