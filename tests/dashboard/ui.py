"""What the end-to-end tests do in the browser, as a user would: sign in, submit forms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs, quote, urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, Response

SESSION_COOKIE: Final = "semcom_session"

#: Installed before any page script (``page.add_init_script``): notes when each
#: ``li[data-track]`` first shows in the document (browser clock, ms since the epoch) and
#: its ``data-stored-us``; the Python side reads ``window.__tracksSeen`` afterwards, so the
#: time is the browser's own however long the test process was busy elsewhere.
TRACK_OBSERVER_JS: Final = """
(() => {
  const seen = (window.__tracksSeen = {});
  const note = (el) => {
    const id = el.getAttribute && el.getAttribute("data-track");
    if (el.tagName === "LI" && id && !(id in seen)) {
      seen[id] = { at_ms: Date.now(), stored_us: el.getAttribute("data-stored-us") };
    }
  };
  const scan = (node) => {
    if (node.nodeType !== 1) return;
    note(node);
    node.querySelectorAll("li[data-track]").forEach(note);
  };
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "attributes") note(r.target);
      r.addedNodes.forEach(scan);
    }
  }).observe(document, {
    childList: true, subtree: true, attributes: true, attributeFilter: ["data-track"],
  });
})();
"""


def path_of(url: str) -> str:
    """``/path?query`` of an absolute or relative URL."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def submit(form: Locator) -> None:
    """Submit ``form`` as a user does: its submit button, or (none) ``requestSubmit()``."""
    buttons = form.locator(
        "button:not([type=button]):not([type=reset]), input[type=submit], input[type=image]"
    )
    if buttons.count():
        buttons.first.click()
    else:
        form.evaluate("f => f.requestSubmit()")


def post_signin(page: Page, token: str) -> Response:
    """Type ``token`` into the sign-in form on ``page`` and send it; the POST's response
    (not the redirect's target)."""
    page.get_by_label("API token").fill(token)

    def is_post(r: Response) -> bool:
        return r.request.method == "POST" and urlsplit(r.url).path == "/signin"

    with page.expect_response(is_post) as posted:
        submit(page.locator("form#signin"))
    page.wait_for_load_state()
    return posted.value


def sign_in(page: Page, token: str, next_path: str | None = None) -> Response:
    """Open ``/signin`` (with ``next``), sign in with ``token``; the POST's response."""
    page.goto("/signin" + (f"?next={quote(next_path, safe='/')}" if next_path else ""))
    response = post_signin(page, token)
    assert response.status == 303, f"sign-in answered {response.status}: {response.text()[:500]}"
    return response


def session_cookie(page: Page) -> dict[str, object]:
    cookies = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert len(cookies) == 1, f"cookies: {[c['name'] for c in page.context.cookies()]}"
    return dict(cookies[0])


def csrf_of(page: Page, form: str) -> str:
    """The hidden ``csrf`` field of ``form`` (a CSS selector) on ``page``."""
    field = page.locator(f"{form} input[name=csrf]")
    assert field.get_attribute("type") == "hidden"
    value = field.input_value()
    assert value, f"{form}: empty csrf field"
    return value
