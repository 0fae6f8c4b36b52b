"""An SVG that stands where a rebuilt crop cannot be shown, saying why."""

from __future__ import annotations

from fastapi.responses import Response
from markupsafe import escape


def placeholder_svg(reason: str) -> Response:
    text = escape(reason[:60])
    body = (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 160 160" role="img" '
        f'aria-label="{text}"><rect width="160" height="160" fill="#e8ebef"/>'
        f'<text x="80" y="84" font-size="11" text-anchor="middle" fill="#445">{text}</text></svg>'
    )
    return Response(
        body,
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=60", "X-Semcom-Crop": "unavailable"},
    )
