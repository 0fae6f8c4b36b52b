"""The dashboard end to end: real Chromium, a real ``semcom cloud serve``, a real edge replay.

One cloud for the module (``served``), holding five road users replayed from a recording;
each test gets a fresh browser context (own cookies), signs in through the form as a user
does, and screenshots every page it visits (``.test-artifacts/dashboard/<test>/``). Every
test also fails if any page requested a host other than 127.0.0.1 or put a token in a URL,
or raised an uncaught script error (see ``conftest.py``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.dashboard.browser import HostGuard
from tests.dashboard.recording import road_users
from tests.dashboard.served import SECONDS, Served
from tests.dashboard.ui import (
    SESSION_COOKIE,
    TRACK_OBSERVER_JS,
    csrf_of,
    path_of,
    post_signin,
    query_of,
    session_cookie,
    sign_in,
    submit,
)

if TYPE_CHECKING:
    from playwright.sync_api import FilePayload, Page

Shoot = Callable[[str], Path]
LIVE_WITHIN_S = 5.0

pytestmark = pytest.mark.browser


def _landmarks(page: Page) -> None:
    """Every page: one ``<main id="main">`` and a heading."""
    assert page.locator("main#main").count() == 1, page.url
    assert page.locator("h1").count() >= 1, page.url
    assert page.locator("h1").first.inner_text().strip(), page.url


# ---------------------------------------------------------------------------- sign-in


def test_sign_in_sets_a_strict_http_only_session_and_goes_to_next(
    page: Page, served: Served, shoot: Shoot
) -> None:
    page.goto("/signin?next=/explore")
    shoot("signin")
    _landmarks(page)
    assert page.get_by_label("API token").get_attribute("name") == "token"
    assert page.locator("form#signin input#token").count() == 1
    csrf_of(page, "form#signin")

    posted = post_signin(page, served.api_token)
    assert posted.status == 303
    assert path_of(posted.headers["location"]) == "/explore"
    assert path_of(page.url) == "/explore"
    shoot("after-signin")
    cookie = session_cookie(page)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert served.api_token not in page.content()
    assert served.api_token not in str(cookie["value"])


def test_sign_in_without_next_goes_to_the_overview(page: Page, served: Served) -> None:
    posted = sign_in(page, served.api_token)
    assert path_of(posted.headers["location"]) == "/"
    assert path_of(page.url) == "/"


def test_a_wrong_token_gets_401_and_the_form_again_and_no_token_is_in_any_url(
    page: Page, served: Served, guard: HostGuard, shoot: Shoot
) -> None:
    wrong = "not-" + served.api_token
    page.goto("/signin")
    posted = post_signin(page, wrong)
    shoot("wrong-token")
    assert posted.status == 401
    assert page.locator("#signin-error").is_visible()
    assert page.locator("#signin-error").inner_text().strip()
    assert page.locator("form#signin").count() == 1
    csrf_of(page, "form#signin")  # a fresh form: one can try again
    assert SESSION_COOKIE not in [c["name"] for c in page.context.cookies()]

    posted = post_signin(page, served.api_token)  # then the right one
    assert posted.status == 303
    shoot("right-token")
    assert len(guard.requested) >= 4
    for url in guard.requested:
        assert served.api_token not in url
        assert wrong not in url


def test_a_sign_in_post_without_its_forms_csrf_field_is_refused(page: Page, served: Served) -> None:
    page.goto("/signin")
    csrf_of(page, "form#signin")
    refused = page.request.post(
        "/signin", form={"token": served.api_token, "next": "/"}, max_redirects=0
    )
    assert refused.status == 403
    assert SESSION_COOKIE not in [c["name"] for c in page.context.cookies()]


@pytest.mark.parametrize("path", ["/", "/live", "/explore", "/tracks/1", "/descriptions", "/link"])
def test_a_page_without_a_session_redirects_to_sign_in(page: Page, path: str, shoot: Shoot) -> None:
    answer = page.request.get(path, max_redirects=0)
    assert answer.status == 303
    location = answer.headers["location"]
    assert urlsplit(location).path == "/signin"
    assert query_of(location)["next"] == [path]

    page.goto(path)  # the browser follows it to the form
    shoot("redirected")
    assert urlsplit(page.url).path == "/signin"
    assert query_of(page.url)["next"] == [path]
    assert page.locator("form#signin").count() == 1


# ---------------------------------------------------------------------------- pages


def test_every_page_has_a_main_landmark_and_a_heading(
    page: Page, served: Served, shoot: Shoot
) -> None:
    track = served.track_of(served.users[0])
    sign_in(page, served.api_token)
    for path in ["/", "/live", "/explore", f"/tracks/{track.id}", "/descriptions", "/link"]:
        response = page.goto(path)
        assert response is not None
        assert response.status == 200, path
        assert path_of(page.url) == path
        shoot(path.strip("/") or "overview")
        _landmarks(page)
        assert page.locator("header form#signout").count() == 1, path


def test_the_replayed_edge_is_on_the_overview(page: Page, served: Served, shoot: Shoot) -> None:
    sign_in(page, served.api_token)
    assert path_of(page.url) == "/"
    shoot("overview")
    rows = page.locator("#edges tr[data-edge]")
    assert rows.count() == 1
    assert page.locator(f'#edges tr[data-edge="{served.edge_id}"]').is_visible()


def test_a_track_page_draws_its_path(page: Page, served: Served, shoot: Shoot) -> None:
    user = served.users[1]
    track = served.track_of(user)
    assert track.path_points >= 3  # the recording's TrackEnd: a box per second
    sign_in(page, served.api_token, f"/tracks/{track.id}")
    assert path_of(page.url) == f"/tracks/{track.id}"
    shoot(f"track-{track.id}")
    _landmarks(page)
    line = page.locator("svg#track-path polyline").first
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", line.get_attribute("points") or "")]
    points = list(zip(numbers[::2], numbers[1::2], strict=True))
    assert len(points) >= 2, points
    assert len(set(points)) >= 2, points  # the road user moved: not one point repeated


def test_image_search_and_find_similar_return_hits(
    page: Page, served: Served, shoot: Shoot
) -> None:
    """An uploaded crop of a road user finds that road user's track (the recording's
    vectors are the query encoder's), and "Find similar" on that hit finds more."""
    user = served.users[2]
    track = served.track_of(user)
    sign_in(page, served.api_token, "/explore")
    shoot("explore")
    _landmarks(page)
    assert page.locator("form#search").get_attribute("method") in (None, "get", "GET")
    for name in ("q", "camera", "class", "from", "to"):
        assert page.locator(f"form#search [name={name}]").count() >= 1, name
    form = page.locator("form#image-search")
    assert (form.get_attribute("method") or "").lower() == "post"
    assert (form.get_attribute("enctype") or "").lower() == "multipart/form-data"
    csrf_of(page, "form#image-search")
    form.locator("input[type=file][name=image]").set_input_files(
        {"name": "crop.png", "mimeType": "image/png", "buffer": user.png}
    )
    submit(form)
    page.wait_for_load_state()
    page.locator("#gallery .hit").first.wait_for()
    shoot("image-search")
    hits = page.locator("#gallery .hit")
    assert hits.count() >= 1
    tracks = [path_of(a.get_attribute("href") or "") for a in hits.locator("a.track").all()]
    assert f"/tracks/{track.id}" in tracks, tracks

    hit = hits.filter(has=page.locator(f'a.track[href$="/tracks/{track.id}"]')).first
    similar = hit.locator("a.similar")
    assert similar.inner_text().strip() == "Find similar"
    href = path_of(similar.get_attribute("href") or "")
    found = re.fullmatch(r"/explore\?similar=(\d+)", href)
    assert found, href
    assert int(found.group(1)) in served.detection_ids(track.id)
    similar.click()
    page.wait_for_url(re.compile(r"/explore\?similar=\d+$"))
    page.locator("#gallery .hit").first.wait_for()
    shoot("find-similar")
    assert page.locator("#gallery .hit").count() >= 1


def test_a_new_track_appears_on_the_live_page_within_5_s_of_being_stored(
    page: Page, served: Served, shoot: Shoot, artifacts: Path
) -> None:
    """A second replay starts after the live page is open; each of its tracks must show as
    ``li[data-track]`` within 5 s of the moment the catalog first held it (polled every
    20 ms here; the browser notes each li's arrival on its own clock)."""
    page.add_init_script(TRACK_OBSERVER_JS)
    sign_in(page, served.api_token, "/live")
    assert path_of(page.url) == "/live"
    page.locator("#live-tracks").wait_for(state="attached")
    shoot("live-before")
    newcomers = road_users(served.embedder, count=3, first_track_id=101, seconds=SECONDS, seed=31)
    with served.watch_tracks() as watch:
        started = time.time()
        served.start_replay(newcomers)
        watch.wait_new(timeout_s=60)
        served.wait_replayed()
        rows = served.wait_stored(newcomers)
        stored_at = watch.snapshot()
    assert {r.id for r in rows} <= set(stored_at)
    for row in rows:
        deadline_ms = (stored_at[row.id] + LIVE_WITHIN_S) * 1000
        left_ms = max(deadline_ms - time.time() * 1000, 0) + 200  # + polling slack
        page.wait_for_function(
            "id => window.__tracksSeen && id in window.__tracksSeen",
            arg=str(row.id),
            timeout=left_ms,
        )
    shoot("live-after")
    seen: dict[str, Any] = page.evaluate("() => window.__tracksSeen")
    delays = {r.id: round(seen[str(r.id)]["at_ms"] / 1000 - stored_at[r.id], 3) for r in rows}
    (artifacts / "live-delays.json").write_text(json.dumps(delays, indent=1) + "\n")
    for row in rows:
        appeared = seen[str(row.id)]
        late_s = appeared["at_ms"] / 1000 - stored_at[row.id]
        assert late_s <= LIVE_WITHIN_S, f"track {row.id} showed {late_s:.2f} s after storage"
        assert page.locator(f'#live-tracks li[data-track="{row.id}"]').count() == 1
        stored_us = int(appeared["stored_us"])
        assert started - 1.0 <= stored_us / 1e6 <= stored_at[row.id] + 1.0, (stored_us, started)


# ---------------------------------------------------------------------------- session


def test_sign_out_ends_the_session_on_the_server(page: Page, served: Served, shoot: Shoot) -> None:
    sign_in(page, served.api_token)
    old = str(session_cookie(page)["value"])
    before = page.request.get("/", headers={"Cookie": f"{SESSION_COOKIE}={old}"}, max_redirects=0)
    assert before.status == 200  # the cookie works until sign-out
    csrf_of(page, "header form#signout")

    submit(page.locator("header form#signout"))
    page.wait_for_url(re.compile(r"/signin(\?.*)?$"))
    shoot("signed-out")
    assert page.locator("form#signin").count() == 1

    after = page.request.get("/", headers={"Cookie": f"{SESSION_COOKIE}={old}"}, max_redirects=0)
    assert after.status == 303
    assert urlsplit(after.headers["location"]).path == "/signin"
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": old, "url": served.url}])
    page.goto("/live")  # the old cookie in the browser again: still signed out
    shoot("old-cookie")
    assert urlsplit(page.url).path == "/signin"


def test_a_post_without_the_csrf_token_is_refused(page: Page, served: Served) -> None:
    sign_in(page, served.api_token, "/explore")
    token = csrf_of(page, "header form#signout")
    action = page.locator("form#image-search").get_attribute("action") or "/explore"
    png = served.users[0].png
    image: FilePayload = {"name": "crop.png", "mimeType": "image/png", "buffer": png}

    assert page.request.post("/signout", max_redirects=0).status == 403
    wrong = {"X-CSRF-Token": "x" + token}
    assert page.request.post("/signout", headers=wrong, max_redirects=0).status == 403
    assert page.request.post(action, multipart={"image": image}, max_redirects=0).status == 403
    refused = page.request.post(
        action, multipart={"image": image, "csrf": "x" + token}, max_redirects=0
    )
    assert refused.status == 403
    assert page.request.get("/", max_redirects=0).status == 200  # still signed in

    # the session's token, as a header, is accepted
    ok = page.request.post(
        action, multipart={"image": image}, headers={"X-CSRF-Token": token}, max_redirects=0
    )
    assert ok.status in (200, 303), ok.status
