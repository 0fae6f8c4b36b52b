"""What the demo asks the cloud, through its public HTTP API only (bearer token).

Optional routes (descriptions, rebuilt crops) are looked up in the service's OpenAPI document
first, so a build without them is reported as such instead of failing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from semcom.demo_errors import DemoCloudError

logger = logging.getLogger(__name__)

DESCRIPTIONS_ROUTE = "/v1/descriptions"
IMAGE_ROUTE = "/v1/detections/{detection_id}/image"
#: Catalog pages read at most for the track summary (1000 detections each).
MAX_PAGES = 50


class CloudClient:
    """A small synchronous client of the query API (never reads proxy settings: loopback)."""

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            trust_env=False,
        )
        self._routes: set[str] | None = None

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise DemoCloudError(f"{method} {path}: {exc}") from None

    def get(self, path: str, **params: Any) -> Any:
        response = self._call("GET", path, params=params or None)
        _raise_for(response, f"GET {path}")
        return response.json()

    def has_route(self, path: str) -> bool:
        if self._routes is None:
            response = self._call("GET", "/openapi.json")
            self._routes = set(response.json().get("paths", {})) if response.is_success else set()
        return path in self._routes

    def detections(self) -> list[dict[str, Any]]:
        """Every stored detection, newest first (at most ``MAX_PAGES`` pages)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = self.get("/v1/detections", **params)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items

    def search(self, detection_id: int, k: int, group: str = "track") -> httpx.Response:
        """``POST /v1/search`` by a detection: with ``group="track"`` (the API's default) one
        hit per other track, the query's own track left out; ``"detection"``: raw hits."""
        body = {"detection_id": detection_id, "k": k, "group": group}
        return self._call("POST", "/v1/search", json=body)

    def image(self, detection_id: int) -> httpx.Response:
        return self._call("GET", IMAGE_ROUTE.format(detection_id=detection_id))


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    raise DemoCloudError(f"{what}: HTTP {response.status_code}: {error_message(response)}")


def error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", body["error"]))
    return str(body)[:200]


@dataclass
class TrackSummary:
    total: int
    by_class: dict[str, int]
    detections: list[dict[str, Any]] = field(repr=False)


def tracks_by_class(client: CloudClient, names: dict[int, str]) -> TrackSummary:
    """Tracks of the catalog by majority class (over their stored detections)."""
    detections = client.detections()
    votes: dict[int, Counter[int]] = {}
    for d in detections:
        if d.get("track_id") is not None:
            votes.setdefault(int(d["track_id"]), Counter())[int(d["class_id"])] += 1
    by_class: Counter[str] = Counter()
    for counter in votes.values():
        class_id = counter.most_common(1)[0][0]
        by_class[names.get(class_id, f"class {class_id}")] += 1
    return TrackSummary(len(votes), dict(by_class.most_common()), detections)


def pick_query(detections: list[dict[str, Any]]) -> dict[str, Any] | None:
    """An embedded detection of the most common class (the search example's query)."""
    embedded = [d for d in detections if d.get("embedding_space")]
    if not embedded:
        return None
    common = Counter(int(d["class_id"]) for d in embedded).most_common(1)[0][0]
    query: dict[str, Any] = next(d for d in reversed(embedded) if int(d["class_id"]) == common)
    return query


def search_example(
    client: CloudClient, query: dict[str, Any], k: int = 5, wait_s: float = 20.0
) -> dict[str, Any]:
    """``POST /v1/search`` by ``query``'s id: the best sighting of each of up to ``k`` other
    tracks (the cloud leaves the query's own track out). Waits for the index to catch up (it
    indexes committed vectors in the background) while no hit comes back."""
    deadline = time.monotonic() + wait_s
    while True:
        response = client.search(int(query["id"]), k)
        if response.is_success:
            body: dict[str, Any] = response.json()
            if body["hits"] or time.monotonic() >= deadline:
                return {**body, "query": query}
        elif response.status_code != 404 or time.monotonic() >= deadline:
            raise DemoCloudError(
                f"POST /v1/search: HTTP {response.status_code}: {error_message(response)}"
            )
        time.sleep(0.5)


def wait_descriptions(
    client: CloudClient,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float,
    on_wait: Callable[[int, float], None] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Poll ``GET /v1/descriptions`` until ``done(items)`` or ``timeout_s``; (items, timed out)."""
    deadline = time.monotonic() + timeout_s
    last_note = 0.0
    while True:
        items = description_items(client.get(DESCRIPTIONS_ROUTE))
        if done(items):
            return items, False
        now = time.monotonic()
        if now >= deadline:
            return items, True
        if on_wait is not None and now - last_note >= 5.0:
            on_wait(len(items), deadline - now)
            last_note = now
        time.sleep(1.0)


def description_items(body: Any) -> list[dict[str, Any]]:
    """The list of a ``/v1/descriptions`` answer (a list, or a page with ``items``)."""
    if isinstance(body, list):
        return [x for x in body if isinstance(x, dict)]
    if isinstance(body, dict):
        for key in ("items", "descriptions"):
            if isinstance(body.get(key), list):
                return [x for x in body[key] if isinstance(x, dict)]
    return []
