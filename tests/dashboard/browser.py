"""The browser side of the dashboard's tests: Debian's Chromium through Playwright.

- :data:`CHROMIUM`, :data:`LAUNCH_ARGS`: the system browser (never ``playwright install``)
  and flags that run it headless as root without touching the network on its own.
- :class:`HostGuard`: on a browser context, records every URL requested and aborts each one
  whose host is not 127.0.0.1; :meth:`HostGuard.check` fails listing those URLs, and any URL
  that holds a secret (the API token), without printing the secret.
- :class:`Shooter`: numbered full-page screenshots into a test's artifacts folder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        Page,
        Request,
        Route,
        WebSocket,
        WebSocketRoute,
    )

CHROMIUM: Final = Path("/usr/bin/chromium")
LAUNCH_ARGS: Final = (
    "--headless=new",
    "--no-sandbox",  # root in CI containers: Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_MS: Final = 10_000
ALLOWED_HOST: Final = "127.0.0.1"
#: schemes that never reach a network (the page's own documents and objects)
LOCAL_SCHEMES: Final = frozenset({"data", "blob", "about", "chrome", "chrome-error", "devtools"})


def leaves_host(url: str) -> bool:
    """Whether requesting ``url`` would go anywhere but 127.0.0.1."""
    parts = urlsplit(url)
    return parts.scheme not in LOCAL_SCHEMES and parts.hostname != ALLOWED_HOST


class HostGuard:
    """Every request of a browser context: the URLs, and those it stopped (not 127.0.0.1)."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self.requested: list[str] = []  # every URL any page of the context asked for
        self.blocked: list[str] = []  # those that would have left 127.0.0.1 (aborted)

    def install(self, context: BrowserContext) -> None:
        context.route(leaves_host, self._abort)
        context.route_web_socket(leaves_host, self._abort_websocket)
        context.on("request", self._saw)
        context.on("page", lambda page: page.on("websocket", self._websocket))

    def _abort(self, route: Route) -> None:
        self.blocked.append(route.request.url)
        route.abort("blockedbyclient")

    def _abort_websocket(self, route: WebSocketRoute) -> None:  # never connected to its server
        self.blocked.append(route.url)
        route.close(code=1008, reason="blocked by the test's host guard")

    def _saw(self, request: Request) -> None:
        self.requested.append(request.url)

    def _websocket(self, ws: WebSocket) -> None:
        self.requested.append(ws.url)

    def redact(self, url: str) -> str:
        for i, secret in enumerate(self.secrets):
            url = url.replace(secret, f"<secret {i}>")
        return url

    def problems(self) -> list[str]:
        out = [f"left 127.0.0.1: {self.redact(u)}" for u in dict.fromkeys(self.blocked)]
        leaked = [u for u in dict.fromkeys(self.requested) if self.redact(u) != u]
        out += [f"secret in URL: {self.redact(u)}" for u in leaked]
        return out

    def check(self) -> None:
        """AssertionError naming every request that left 127.0.0.1 or carried a secret."""
        problems = self.problems()
        if problems:
            raise AssertionError(
                "no request of any page leaves 127.0.0.1, and no URL holds a token; but:\n  "
                + "\n  ".join(problems)
            )


def new_context(browser: Browser, guard: HostGuard, base_url: str | None = None) -> BrowserContext:
    """A fresh context (own cookies and storage) guarded by ``guard``, ~10 s timeouts."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    guard.install(context)
    return context


class Shooter:
    """``shoot(label)``: a full-page screenshot of the page, ``NN-label.png`` in ``folder``."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.taken: list[Path] = []

    def __call__(self, label: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "page"
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path
