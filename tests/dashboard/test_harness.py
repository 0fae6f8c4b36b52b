"""The dashboard tests' own machinery: the served cloud and its replayed data, the host guard.

These do not need the dashboard's pages; they show that what the end-to-end tests rest on
holds (a real cloud with the recording stored, image search in the recording's space, a
browser that cannot reach past 127.0.0.1 without the test failing).
"""

from __future__ import annotations

import base64
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.dashboard.browser import HostGuard, Shooter, leaves_host, new_context
from tests.dashboard.recording import ENCODER
from tests.dashboard.served import Served

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.mark.browser
def test_the_cloud_serves_and_holds_every_replayed_road_user(served: Served) -> None:
    with urllib.request.urlopen(f"{served.url}/healthz", timeout=5) as response:
        assert response.status == 200
    tracks = {t.local_id: t for t in served.tracks()}
    assert sorted(tracks) == [u.track_id for u in served.users[:5]]
    for user in served.users[:5]:
        track = tracks[user.track_id]
        assert track.class_id == user.class_id
        assert track.path_points >= 2, track  # the TrackEnd's sampled path
        assert len(served.detection_ids(track.id)) >= 2
    stats = served.api("/v1/stats")
    assert f"{ENCODER}-192-random-init" in [s["name"] for s in stats["spaces"]]


@pytest.mark.browser
def test_image_search_in_the_recordings_space_finds_the_road_user_of_the_crop(
    served: Served,
) -> None:
    """The recording's vectors are the query encoder's: a road user's crop finds its track
    first (the premise of the dashboard's image-search test)."""
    user = served.users[2]
    answer = served.api("/v1/search", {"image": base64.b64encode(user.png).decode(), "k": 3})
    assert answer["space"] == f"{ENCODER}-192-random-init"
    assert answer["hits"][0]["track_id"] == served.track_of(user).id
    assert answer["hits"][0]["score"] > 0.99


@pytest.mark.browser
def test_the_host_guard_aborts_and_reports_requests_that_leave_127_0_0_1(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    guard = HostGuard(served.secrets)
    context = new_context(browser, guard, base_url=served.url)
    try:
        page = context.new_page()
        local = page.goto("/healthz")
        assert local is not None
        assert local.status == 200
        assert guard.problems() == []
        page.set_content(
            '<script src="http://example.com/x.js"></script>'
            '<img src="https://cdn.example.org/a.png">'
            f'<img src="{served.url}/healthz?t=1">'
        )
        page.wait_for_load_state("load")
        page.evaluate(
            "() => new Promise(done => { const ws = new WebSocket('ws://example.net/s');"
            " ws.onclose = ws.onerror = () => done(); setTimeout(done, 2000); })"
        )
        Shooter(page, tmp_path)("foreign-requests")
    finally:
        context.close()
    assert guard.blocked == [
        "http://example.com/x.js",
        "https://cdn.example.org/a.png",
        "ws://example.net/s",
    ]
    assert f"{served.url}/healthz?t=1" in guard.requested  # 127.0.0.1 went through
    with pytest.raises(AssertionError, match=r"no request of any page leaves 127\.0\.0\.1") as info:
        guard.check()
    assert "left 127.0.0.1: http://example.com/x.js" in str(info.value)
    assert "left 127.0.0.1: ws://example.net/s" in str(info.value)
    assert (tmp_path / "01-foreign-requests.png").stat().st_size > 0


@pytest.mark.browser
def test_the_host_guard_reports_a_token_in_a_url_without_printing_it(
    browser: Browser, served: Served
) -> None:
    guard = HostGuard(served.secrets)
    context = new_context(browser, guard, base_url=served.url)
    try:
        context.new_page().goto(f"/healthz?token={served.api_token}")
    finally:
        context.close()
    with pytest.raises(AssertionError, match=r"secret in URL: .*token=<secret 0>") as info:
        guard.check()
    assert served.api_token not in str(info.value)


@pytest.mark.parametrize(
    ("url", "leaves"),
    [
        ("http://127.0.0.1:8443/live", False),
        ("ws://127.0.0.1:1/x", False),
        ("data:text/plain,hi", False),
        ("blob:http://127.0.0.1:8443/0d1f", False),
        ("http://localhost:8443/", True),  # only 127.0.0.1: the served cloud's own address
        ("https://fonts.googleapis.com/css", True),
        ("http://[::1]:8443/", True),
    ],
)
def test_leaves_host(url: str, leaves: bool) -> None:
    assert leaves_host(url) is leaves
