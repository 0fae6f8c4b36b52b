"""Fixtures of the dashboard's real-browser tests.

- ``chromium_path``: Debian's ``/usr/bin/chromium`` (``make test`` installs it as root), or
  the test skips saying so. Playwright drives it; ``playwright install`` is never used.
- ``browser`` (module): Chromium launched headless by Playwright's sync API.
- ``served`` (module): :class:`~tests.dashboard.served.Served`, a real ``semcom cloud serve``
  on a free port of 127.0.0.1 holding what a real ``semcom edge replay`` of a recorded file
  sent (five road users over 10 s ending about now), every message acknowledged and every
  track stored before the first test.
- ``guard``, ``context``, ``page`` (per test): a fresh browser context (own cookies) whose
  requests are recorded; any request to a host other than 127.0.0.1 is aborted, and at
  teardown the test fails listing those URLs (and any URL holding a token), and any uncaught
  script error of the page.
- ``artifacts`` (per test): the folder for its screenshots, under ``$SEMCOM_TEST_ARTIFACTS``
  or ``<repo>/.test-artifacts/dashboard``; ``shoot(label)`` writes a full-page screenshot of
  ``page`` there, and teardown always writes the page as it was left (``NN-end.png``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from semcom.bench.procs import Children, CloudChild, EdgeChild, free_port
from tests.dashboard.browser import CHROMIUM, LAUNCH_ARGS, HostGuard, Shooter, new_context
from tests.dashboard.served import SECONDS, Served, cloud_spec, edge_spec

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SEMCOM_TEST_ARTIFACTS") or REPO / ".test-artifacts" / "dashboard")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"{CHROMIUM} not found: the browser tests drive Debian's chromium package "
            "(`make test` installs it when run as root; or: apt-get install chromium)"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the Python package playwright is missing: pip install -e '.[dev]'")
    driver = sync_playwright().start()
    try:
        launched = driver.chromium.launch(executable_path=str(chromium_path), args=LAUNCH_ARGS)
        yield launched
        launched.close()
    finally:
        driver.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dashboard")
    with Children() as kids:
        cloud = CloudChild(cloud_spec(root / "cloud", free_port()))
        kids.add(cloud)
        cloud.start()
        # the encoder loads (torch, timm: seconds) while the cloud starts
        from cloud.config import EncoderConfig
        from cloud.encoder import QueryEncoder
        from tests.dashboard.recording import ENCODER, road_users

        embedder = QueryEncoder(EncoderConfig(name=ENCODER, random_init=True))
        users = road_users(embedder, count=5, first_track_id=1, seconds=SECONDS, seed=11)
        cloud.wait_ready()
        edge = EdgeChild(edge_spec(cloud.url, root / "edge"), None)
        kids.add(edge)
        served = Served(cloud, edge, embedder, root)
        served.start_replay(users)
        served.wait_replayed()
        served.wait_stored(users)
        yield served
        if not cloud.alive:
            pytest.fail(f"the cloud died during the tests:\n{cloud.log_tail()}")


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    folder = ARTIFACTS / name
    shutil.rmtree(folder, ignore_errors=True)  # this run's screenshots only
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def guard(served: Served) -> HostGuard:
    return HostGuard(served.secrets)


@pytest.fixture
def context(browser: Browser, guard: HostGuard, served: Served) -> Iterator[BrowserContext]:
    ctx = new_context(browser, guard, base_url=served.url)
    yield ctx
    ctx.close()
    try:
        guard.check()
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def _tab(context: BrowserContext, artifacts: Path) -> Iterator[tuple[Page, Shooter]]:
    tab = context.new_page()
    shooter = Shooter(tab, artifacts)
    script_errors: list[str] = []
    tab.on("pageerror", lambda error: script_errors.append(f"{tab.url}: {error}"))
    yield tab, shooter
    if not tab.is_closed():
        shooter("end")
    if script_errors:
        pytest.fail("uncaught script errors:\n  " + "\n  ".join(script_errors), pytrace=False)


@pytest.fixture
def page(_tab: tuple[Page, Shooter]) -> Page:
    return _tab[0]


@pytest.fixture
def shoot(_tab: tuple[Page, Shooter]) -> Callable[[str], Path]:
    """``shoot("overview")``: a full-page screenshot of ``page`` into the test's artifacts."""
    return _tab[1]
