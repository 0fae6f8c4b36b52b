"""Chromium for ``semcom bench dashboard``: launch, a host guard, sign-in, one page's timings.

The benchmark drives the system's Chromium (Debian's ``chromium`` package) through
Playwright's sync API; it never downloads a browser (no ``playwright install``).
:func:`require_browser` turns a missing package or browser into one line saying what to
install.

- :class:`OffsiteGuard`: on a browser context, aborts (and counts) every request whose host is
  not 127.0.0.1. Playwright's request interception also turns Chromium's HTTP cache off, so
  every load of a page requests all it uses from the server.
- :func:`sign_in`: the dashboard's own form (``/signin``: the hidden CSRF value matches its
  cookie) with an API token; the session cookie it sets is what every later page uses.
- :func:`load_page`: one navigation, then the server's time of the document and of each of its
  requests, from the ``Server-Timing: app;dur=<ms>`` header every dashboard response carries
  (``PerformanceNavigationTiming`` / ``PerformanceResourceTiming.serverTiming``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route

CHROMIUM: Final = Path("/usr/bin/chromium")
LAUNCH_ARGS: Final = (
    "--no-sandbox",  # root in containers: Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_MS: Final = 30_000
ALLOWED_HOST: Final = "127.0.0.1"
LOCAL_SCHEMES: Final = frozenset({"data", "blob", "about", "chrome", "chrome-error", "devtools"})
STATIC_PREFIX: Final = "/ui/static/"
STREAM_PATH: Final = "/ui/live/events"
CROP_PATH: Final = re.compile(r"/ui/detections/\d+/image")
IMAGES_WAIT_MS: Final = 10_000
# Crops are <img loading="lazy">: scrolled to the bottom (two frames for layout) every image
# starts; then wait until each has loaded or failed, at most waitMs.
TIMINGS_JS: Final = """async (waitMs) => {
  window.scrollTo(0, document.documentElement.scrollHeight);
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const pending = [...document.images].filter((i) => !i.complete);
  await Promise.race([
    Promise.all(pending.map((i) => new Promise((done) => {
      i.addEventListener("load", done); i.addEventListener("error", done); }))),
    new Promise((done) => setTimeout(done, waitMs)),
  ]);
  window.scrollTo(0, 0);
  const app = (e) => {
    const t = (e.serverTiming || []).find((s) => s.name === "app");
    return t ? t.duration : null;
  };
  const nav = performance.getEntriesByType("navigation")[0];
  return {
    url: nav.name,
    status: nav.responseStatus,
    document: app(nav),
    dom_ms: nav.domContentLoadedEventEnd - nav.startTime,
    resources: performance.getEntriesByType("resource").map(
      (e) => ({url: e.name, app: app(e), kind: e.initiatorType})),
    images: [...document.images].map(
      (i) => ({url: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth})),
  };
}"""


class BrowserUnavailable(Exception):
    """Playwright or Chromium is missing; the message says what to install."""


def require_browser(chromium: Path) -> None:
    """:class:`BrowserUnavailable` unless Playwright imports and ``chromium`` can run."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise BrowserUnavailable(
            "the Python package playwright is missing: pip install 'semcom[dashboard-bench]' "
            "(it drives the system Chromium; no `playwright install` needed)"
        ) from None
    if not chromium.is_file() or not os.access(chromium, os.X_OK):
        raise BrowserUnavailable(
            f"no Chromium at {chromium}: apt-get install chromium (Debian), or pass --chromium"
        )


def launch(driver: Playwright, chromium: Path) -> Browser:
    """Headless Chromium from ``chromium``; :class:`BrowserUnavailable` if it will not start."""
    from playwright.sync_api import Error

    try:
        return driver.chromium.launch(
            executable_path=str(chromium), args=list(LAUNCH_ARGS), headless=True
        )
    except Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BrowserUnavailable(f"Chromium at {chromium} did not start: {first}") from None


def leaves_host(url: str) -> bool:
    """Whether requesting ``url`` would go anywhere but 127.0.0.1."""
    parts = urlsplit(url)
    return parts.scheme not in LOCAL_SCHEMES and parts.hostname != ALLOWED_HOST


class OffsiteGuard:
    """Aborts and lists every request of a context that would leave 127.0.0.1."""

    def __init__(self) -> None:
        self.blocked: list[str] = []

    def install(self, context: BrowserContext) -> None:
        context.route(leaves_host, self._abort)

    def _abort(self, route: Route) -> None:
        self.blocked.append(route.request.url)
        route.abort("blockedbyclient")


def new_context(browser: Browser, guard: OffsiteGuard) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    guard.install(context)
    return context


class SignInFailed(Exception):
    """The dashboard did not accept the token through its form."""


def sign_in(page: Page, base_url: str, token: str) -> None:
    """Through ``/signin``'s form; :class:`SignInFailed` unless a session cookie results."""
    page.goto(f"{base_url}/signin", wait_until="load")
    page.fill("#token", token)
    with page.expect_navigation(wait_until="load"):
        page.click("#signin button[type=submit]")
    cookies = {c["name"] for c in page.context.cookies(base_url)}
    if "semcom_session" not in cookies or urlsplit(page.url).path == "/signin":
        raise SignInFailed(f"signing in did not give a session (now at {page.url})")


@dataclass
class PageLoad:
    """One load of one page: the server's milliseconds (``Server-Timing: app``)."""

    url: str
    status: int
    document_ms: float | None
    dom_ms: float  # the browser: navigation start to DOMContentLoaded handled
    data_ms: list[float] = field(default_factory=list)  # images, fetches (timed ones)
    static_ms: list[float] = field(default_factory=list)  # /ui/static/ (CSS, the script)
    untimed: list[str] = field(default_factory=list)  # requests without a Server-Timing
    crop_widths: list[int] = field(default_factory=list)  # each crop <img>: natural width px
    crops_pending: int = 0  # crop <img>s still loading when the timings were read


def load_page(page: Page, url: str) -> PageLoad:
    """Navigate to ``url`` (until ``load``), scroll to its end, wait until every image has
    loaded or failed (at most ``IMAGES_WAIT_MS``), and read its timings.

    The live feed's event stream is left out: it lasts as long as the page."""
    page.goto(url, wait_until="load")
    got: dict[str, Any] = page.evaluate(TIMINGS_JS, IMAGES_WAIT_MS)
    load = PageLoad(str(got["url"]), int(got["status"]), got["document"], float(got["dom_ms"]))
    for entry in got["resources"]:
        path = urlsplit(str(entry["url"])).path
        if path == STREAM_PATH or leaves_host(str(entry["url"])):
            continue
        if entry["app"] is None:
            load.untimed.append(path)
        elif path.startswith(STATIC_PREFIX):
            load.static_ms.append(float(entry["app"]))
        else:
            load.data_ms.append(float(entry["app"]))
    for image in got["images"]:
        if CROP_PATH.fullmatch(urlsplit(str(image["url"])).path):
            load.crop_widths.append(int(image["width"]) if image["complete"] else 0)
            load.crops_pending += not image["complete"]
    return load
