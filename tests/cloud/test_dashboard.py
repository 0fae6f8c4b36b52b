"""The dashboard over real HTTP (uvicorn on port 0) on the filled test catalog (SQLite and
PostgreSQL): sign-in, sessions, CSRF, every page with data, the live feed's stream.

The browser-driven end-to-end tests are in ``tests/dashboard``; these are the server's rules,
checked request by request.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select

from cloud import schema
from cloud.api.analytics import AnalyticsService
from cloud.api.descriptions import DescriptionService
from cloud.api.docs import APP_DOCS_OFF
from cloud.api.errors import install_error_handlers
from cloud.api.routes import build_api_router
from cloud.api.service import QueryService
from cloud.api.text_search import TextSearchService
from cloud.dashboard.deps import DashboardDeps
from cloud.dashboard.guard import safe_next
from cloud.dashboard.queries import class_buckets
from cloud.dashboard.router import install_dashboard
from cloud.dashboard.sessions import UiSessions
from cloud.dashboard.web import class_name
from cloud.describe.store import DescriptionStore
from cloud.encoder import QueryEncoder
from cloud.linkmon import LinkMonitor
from shared.messages import Heartbeat
from tests.cloud.api_fixtures import (
    BASE_US,
    TOKEN,
    ExactSearcher,
    LiveServer,
    World,
    image_png,
    make_deps,
)

DAY_US = 86_400_000_000
PAGES = ["/", "/live", "/explore", "/tracks/1", "/descriptions", "/link"]


def dashboard_app(
    world: World,
    encoder: QueryEncoder | None,
    searcher: ExactSearcher,
    link: LinkMonitor | None = None,
) -> FastAPI:
    api = make_deps(world, encoder, searcher)
    app = FastAPI(**APP_DOCS_OFF)
    app.include_router(build_api_router(api))
    query = QueryService(api)
    descriptions = DescriptionService(DescriptionStore(world.engine))
    install_dashboard(
        app,
        DashboardDeps(
            catalog=api.catalog,
            query=query,
            descriptions=descriptions,
            text_search=TextSearchService(descriptions, query, api.catalog, None),
            token_digests=api.token_digests,
            sessions=UiSessions(world.engine),
            decoder=None,
            link=link,
            analytics=AnalyticsService(world.engine),
            connected=lambda: ["edge-a"],
            image_search=True,
            text_crops=False,
            live_poll_s=0.05,
        ),
    )
    install_error_handlers(app)
    return app


@pytest.fixture(scope="module")
def site(world: World, encoder: QueryEncoder, searcher: ExactSearcher) -> Iterator[str]:
    with LiveServer(dashboard_app(world, encoder, searcher)) as live:
        yield live.url


def browser(url: str) -> httpx.Client:
    """A cookie-keeping client, as a browser is (no bearer token)."""
    return httpx.Client(base_url=url, timeout=30, follow_redirects=False)


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name}"
    return found.group(1)


def sign_in(c: httpx.Client, next_path: str = "/") -> httpx.Response:
    form = c.get("/signin")
    assert form.status_code == 200
    return c.post(
        "/signin", data={"token": TOKEN, "csrf": hidden(form.text, "csrf"), "next": next_path}
    )


@pytest.fixture
def signed_in(site: str) -> Iterator[httpx.Client]:
    with browser(site) as c:
        assert sign_in(c).status_code == 303
        yield c


def test_pages_redirect_to_sign_in_without_a_session(site: str) -> None:
    with browser(site) as c:
        for page in PAGES:
            r = c.get(page + "?camera=1")
            assert r.status_code == 303, page
            assert r.headers["location"].startswith("/signin?next=")
            assert httpx.URL(r.headers["location"]).params["next"] == page + "?camera=1"
        for data in ("/ui/live/events", "/ui/detections/1/image"):
            assert c.get(data).status_code == 401, data


def test_sign_in_sets_a_strict_http_only_cookie_and_goes_where_asked(site: str) -> None:
    with browser(site) as c:
        r = sign_in(c, "/descriptions?camera=1")
        assert r.status_code == 303
        assert r.headers["location"] == "/descriptions?camera=1"
        cookie = next(h for h in r.headers.get_list("set-cookie") if "semcom_session=" in h)
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/" in cookie
        assert TOKEN not in cookie
        assert TOKEN not in r.headers["location"]
        page = c.get("/descriptions?camera=1")
        assert page.status_code == 200
        assert "<h1>Descriptions</h1>" in page.text


def test_a_wrong_token_and_a_forged_form_are_refused(site: str) -> None:
    with browser(site) as c:
        form = c.get("/signin")
        nonce = hidden(form.text, "csrf")
        wrong = c.post("/signin", data={"token": "not-" + TOKEN, "csrf": nonce})
        assert wrong.status_code == 401
        assert 'id="signin-error"' in wrong.text
        assert "Unknown API token" in wrong.text
        assert "semcom_session" not in c.cookies
    with browser(site) as c:  # login CSRF: no matching sign-in cookie
        forged = c.post("/signin", data={"token": TOKEN, "csrf": "made-up"})
        assert forged.status_code == 403
        assert "semcom_session" not in c.cookies


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "\\\\evil", ""])
def test_sign_in_never_redirects_off_site(target: str) -> None:
    assert safe_next(target) == "/"
    assert safe_next("/tracks/3?page=2") == "/tracks/3?page=2"


def test_sign_out_needs_the_csrf_token_and_ends_the_session_everywhere(site: str) -> None:
    with browser(site) as c:
        sign_in(c)
        cookie = c.cookies["semcom_session"]
        page = c.get("/")
        assert c.post("/signout").status_code == 403  # no CSRF token
        assert c.post("/signout", data={"csrf": "wrong"}).status_code == 403
        assert c.get("/").status_code == 200  # still signed in
        out = c.post("/signout", data={"csrf": hidden(page.text, "csrf")})
        assert out.status_code == 303
        assert out.headers["location"] == "/signin"
    with browser(site) as other:  # the old cookie, replayed, is dead
        other.cookies.set("semcom_session", cookie)
        assert other.get("/").status_code == 303


def test_a_state_changing_request_without_csrf_is_refused(signed_in: httpx.Client) -> None:
    files = {"image": ("q.png", image_png(3), "image/png")}
    assert signed_in.post("/explore/image", files=files).status_code == 403
    wrong = signed_in.post("/explore/image", files=files, data={"csrf": "x" * 43})
    assert wrong.status_code == 403
    csrf = hidden(signed_in.get("/explore").text, "csrf")
    ok = signed_in.post("/explore/image", files=files, data={"csrf": csrf})
    assert ok.status_code == 200, ok.text[:500]
    assert 'id="gallery"' in ok.text
    assert 'class="hit"' in ok.text


def test_sessions_expire_and_are_purged(world: World) -> None:
    now = [BASE_US]
    sessions = UiSessions(world.engine, ttl_s=60, clock=lambda: now[0])
    sid, session = sessions.create("dashboard")
    assert sessions.lookup(sid) == session
    now[0] += 61_000_000
    assert sessions.lookup(sid) is None
    assert sessions.lookup("x" * 500) is None
    assert sessions.end(sid)  # still a row until purged or ended
    assert not sessions.end(sid)


def test_every_page_renders_the_catalog(signed_in: httpx.Client, world: World) -> None:
    overview = signed_in.get("/")
    assert overview.status_code == 200
    for edge in ("edge-a", "edge-b"):
        assert f'data-edge="{edge}"' in overview.text
    assert "connected" in overview.text
    assert "disconnected" in overview.text
    track_id, _track = next(iter(world.tracks.items()))
    page = signed_in.get(f"/tracks/{track_id}")
    assert page.status_code == 200
    points = re.search(r'<svg id="track-path".*?<polyline points="([^"]+)"', page.text, re.S)
    assert points
    assert len(points.group(1).split()) >= 2
    browse = signed_in.get("/explore")
    assert browse.status_code == 200
    assert 'class="hit"' in browse.text
    embedded = next(iter(world.embedded))
    similar = signed_in.get(f"/explore?similar={embedded}")
    assert similar.status_code == 200, similar.text[:400]
    assert 'id="gallery"' in similar.text
    assert 'class="similar"' in similar.text
    assert signed_in.get("/tracks/999999").status_code == 404
    for other in ("/live", "/descriptions", "/link", "/explore?q=car"):
        r = signed_in.get(other)
        assert r.status_code == 200, other
        assert '<main id="main"' in r.text
        assert "<h1>" in r.text


def test_bad_filters_are_named_and_the_page_still_answers(signed_in: httpx.Client) -> None:
    r = signed_in.get("/explore?camera=abc&from=yesterday&class=99999999&k=0")
    assert r.status_code == 200
    assert "camera &#39;abc&#39; is not a number" in r.text
    assert "from:" in r.text
    assert "class 99999999 is out of range" in r.text
    bad = signed_in.get("/explore?similar=abc")
    assert bad.status_code == 422
    assert "similar: must be a detection id" in bad.text


def test_pages_load_nothing_from_another_host(signed_in: httpx.Client) -> None:
    for page in PAGES:
        r = signed_in.get(page)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert "app;dur=" in r.headers["server-timing"]
        for url in re.findall(r'(?:src|href|action)="([^"]+)"', r.text):
            assert url.startswith(("/", "#", "data:")), f"{page} refers to {url}"
    assert signed_in.get("/ui/static/app.js").status_code == 200


def _insert_track(world: World, local_id: int) -> int:
    with world.engine.begin() as conn:  # an explicit id: the world's ids were given, too
        top = conn.execute(select(func.max(schema.tracks.c.id))).scalar_one()
        result = conn.execute(
            insert(schema.tracks).values(
                id=int(top) + 1000,
                camera_id=1,
                local_id=local_id,
                class_id=2,
                first_seen_us=BASE_US - DAY_US,  # away from the world's windows
                last_seen_us=BASE_US - DAY_US + 1,
                ended=False,
            )
        )
        return int(result.inserted_primary_key[0])


def test_the_live_feed_pushes_a_new_track(signed_in: httpx.Client, world: World) -> None:
    events: list[dict[str, Any]] = []
    types: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            signed_in.stream("GET", "/ui/live/events", timeout=20) as r,
        ):
            types.append(r.headers["content-type"])
            opened.set()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert opened.wait(10)
    time.sleep(0.3)  # the feed starts from the newest track when its first listener comes
    stored = _insert_track(world, 990_001)
    committed_us = time.time_ns() // 1000
    reader.join(10)
    assert types[0].startswith("text/event-stream")
    assert events, "no event within 10 s"
    assert events[0]["id"] == stored
    assert events[0]["class"] == "car"
    assert events[0]["camera"] == "north-gate"
    assert events[0]["detection_id"] is None
    assert 0 <= events[0]["stored_us"] - committed_us < 2_000_000


def test_results_page_on_and_browse_filters_by_class(signed_in: httpx.Client, world: World) -> None:
    embedded = next(iter(world.embedded))
    two = signed_in.get(f"/explore?similar={embedded}&k=2&group=detection")
    assert two.text.count('class="hit"') == 2
    assert "Show 4 results" in two.text
    assert "k=4" in two.text
    assert "group=detection" in two.text  # the filter travels with the link
    track_classes = {t["class_id"] for t in world.tracks.values()}
    assert track_classes == {2}  # the world's tracks are cars
    page = signed_in.get("/explore?class=2")
    names = re.findall(r'<li class="hit">.*?<p>([a-z ]+|class \d+) ·', page.text, re.S)
    assert len(names) == min(len(world.tracks), 24)
    assert set(names) == {class_name(2)}
    none = signed_in.get("/explore?class=0")  # people: detections only, no track
    assert 'class="hit"' not in none.text
    assert "No tracks match these filters" in none.text


def test_class_counts_are_tracks_by_the_bucket_they_were_first_seen_in(world: World) -> None:
    start = min(int(t["first_seen_us"]) for t in world.tracks.values()) - 1
    bucket = 2_000_000
    end = start + 20 * bucket
    got = class_buckets(world.engine, start, end, bucket)
    expected: dict[int, list[int]] = {}
    for t in world.tracks.values():
        first = int(t["first_seen_us"])
        if start <= first < end:
            expected.setdefault(int(t["class_id"]), [0] * 20)[(first - start) // bucket] += 1
    assert got.counts == expected
    assert sum(got.totals().values()) > 1
    one_camera = class_buckets(world.engine, start, end, bucket, [1])
    assert sum(one_camera.totals().values()) == sum(
        1
        for t in world.tracks.values()
        if t["camera_id"] == 1 and start <= t["first_seen_us"] < end
    )


def test_the_link_page_draws_what_the_monitor_measured(
    world: World, searcher: ExactSearcher
) -> None:
    now = [BASE_US]
    monitor = LinkMonitor(clock=lambda: now[0])
    monitor.session_opened("edge-a", "s1", "websocket")
    for step in range(30):  # 5 minutes: a frame every 10 s, a heartbeat; f16 then int8
        now[0] = BASE_US + step * 10_000_000
        monitor.data("edge-a", 1000 + step, now[0] - 250_000, "f16" if step < 20 else "int8")
        monitor.heartbeat("edge-a", Heartbeat(step, 8e3, 2, "f16" if step < 20 else "int8", 4096))
    with LiveServer(dashboard_app(world, None, searcher, monitor)) as live, browser(live.url) as c:
        sign_in(c)
        page = c.get("/link?edge=edge-a")
        assert page.status_code == 200
        assert page.text.count('class="line"') == 3  # goodput, latency, backlog
        assert page.text.count('class="dot"') >= 3 * 29
        assert "f16 → int8" in page.text
        assert ">250 / 250 ms<" in page.text  # capture to arrival, as measured
        unknown = c.get("/link?edge=nope")
        assert "No link figures for edge nope: showing edge-a." in unknown.text
        overview = c.get("/")
        row = re.search(r'<tr data-edge="edge-a">.*?</tr>', overview.text, re.S)
        assert row
        assert "connected" in row.group(0)
        assert "(websocket)" in row.group(0)
        assert "int8" in row.group(0)
        assert "29 msgs" in row.group(0)


def test_the_overview_shows_each_edges_capture_rate_and_drops(
    world: World, searcher: ExactSearcher
) -> None:
    monitor = LinkMonitor()
    monitor.session_opened("edge-a", "s1", "webrtc")
    monitor.heartbeat("edge-a", Heartbeat(0, 8e3, 0, "f16", 0, {"capture_fps": 24.9, "dropped": 3}))
    monitor.session_opened("edge-b", "s2", "webrtc")
    monitor.heartbeat("edge-b", Heartbeat(0, 8e3))  # a replay, or an older edge: no figures
    with LiveServer(dashboard_app(world, None, searcher, monitor)) as live, browser(live.url) as c:
        sign_in(c)
        overview = c.get("/").text
    rows = {
        edge: re.search(rf'<tr data-edge="{edge}">.*?</tr>', overview, re.S)
        for edge in ("edge-a", "edge-b")
    }
    assert rows["edge-a"] is not None
    assert rows["edge-b"] is not None
    assert "<td>24.9 fps, 3 frames dropped</td>" in rows["edge-a"].group(0)
    assert "fps" not in rows["edge-b"].group(0)
    assert '<th scope="col">Capture</th>' in overview


def test_the_events_page_lists_analytics_and_charts_a_cameras_lines(
    signed_in: httpx.Client, world: World
) -> None:
    scene = {
        "frame": {"width": 1280, "height": 720},
        "lines": {"gate": {"points": [[0, 0.5], [1, 0.5]]}},
    }
    stored = AnalyticsService(world.engine).set_scene(2, scene)
    now_us = time.time_ns() // 1000
    track_id = next(iter(world.tracks))
    with world.engine.begin() as conn:
        top = conn.execute(select(func.max(schema.analytics_events.c.id))).scalar_one() or 0
        for i, direction in enumerate(["in", "out", "in"]):
            conn.execute(
                insert(schema.analytics_events).values(
                    id=int(top) + 1 + i,
                    camera_id=2,
                    track_id=track_id + 100_000 * (i + 1),
                    kind="line_crossing",
                    subject="gate",
                    ordinal=0,
                    at_us=now_us - (i + 1) * 60_000_000,
                    class_id=2,
                    direction=direction,
                    scene_version=stored.version,
                    created_us=now_us,
                )
            )
    page = signed_in.get("/events?camera=2")
    assert page.status_code == 200, page.text[:300]
    assert page.text.count("<tr data-event=") == 3
    assert "Line gate: " in page.text
    assert "2 in" in page.text
    assert "1 out" in page.text
    assert '<svg class="chart"' in page.text
    other = signed_in.get("/events?camera=2&kind=wrong_way")
    assert "<tr data-event=" not in other.text
    assert "No events match these filters" in other.text


def test_the_events_page_shows_a_zones_congestion_change(
    signed_in: httpx.Client, world: World
) -> None:
    """A congestion change belongs to no track: no track link, its new level shown."""
    scene = {
        "frame": {"width": 1280, "height": 720},
        "zones": {"queue": {"polygon": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]}},
    }
    stored = AnalyticsService(world.engine).set_scene(2, scene)
    now_us = time.time_ns() // 1000
    with world.engine.begin() as conn:
        top = conn.execute(select(func.max(schema.analytics_events.c.id))).scalar_one() or 0
        conn.execute(
            insert(schema.analytics_events).values(
                id=int(top) + 1,
                camera_id=2,
                track_id=-2,
                kind="congestion",
                subject="queue",
                ordinal=now_us // 60_000_000,
                at_us=now_us // 60_000_000 * 60_000_000,
                direction="jammed",
                value=2.5,
                unit="vehicles",
                scene_version=stored.version,
                created_us=now_us,
                details={"level": "jammed", "previous": "free"},
            )
        )
    page = signed_in.get("/events?camera=2&kind=congestion")
    assert page.status_code == 200, page.text[:300]
    assert '<option value="congestion" selected>congestion</option>' in page.text
    [row] = re.findall(r"<tr data-event=.*?</tr>", page.text, re.S)
    assert "<td>queue</td>" in row
    assert "jammed 2.50 vehicles" in row
    assert "<td>-</td>" in row
    assert "/tracks/" not in row
