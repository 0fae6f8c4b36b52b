"""Charts and drawings as inline SVG, made on the server: no chart library, no script.

Each drawing has ``role="img"`` and an ``aria-label`` saying what it shows; the pages give the
same figures as a table for screen readers and keyboard users. Text is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from markupsafe import Markup, escape

PALETTE: Final = ("#2f6fb3", "#d9822b", "#3a9b5c", "#b33a3a", "#7d5ba6", "#8c6d46", "#5a6b7a")


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def stacked_bars(
    series: Sequence[tuple[str, Sequence[int]]],
    bucket_labels: Sequence[str],
    label: str,
    width: int = 720,
    height: int = 200,
) -> Markup:
    """One bar per bucket, stacked by series (name, counts per bucket), with a legend."""
    n = len(bucket_labels)
    totals = [sum(s[1][i] for s in series) for i in range(n)] if n else []
    peak: float = max(totals, default=0) or 1
    left, bottom, top = 36, 24, 8
    plot_w, plot_h = width - left - 8, height - bottom - top
    bar_w = plot_w / max(n, 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'class="axis"/>',
        f'<text x="{left - 4}" y="{top + 10}" class="tick" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" class="tick" text-anchor="end">0</text>',
    ]
    for i in range(n):
        y: float = top + plot_h
        for k, (name, counts) in enumerate(series):
            h = counts[i] / peak * plot_h
            if h <= 0:
                continue
            y -= h
            parts.append(
                f'<rect x="{_fmt(left + i * bar_w + 1)}" y="{_fmt(y)}" '
                f'width="{_fmt(max(bar_w - 2, 1))}" height="{_fmt(h)}" '
                f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(name)} '
                f"{escape(bucket_labels[i])}: {counts[i]}</title></rect>"
            )
    for i in range(0, n, max(1, n // 6)):
        parts.append(
            f'<text x="{_fmt(left + i * bar_w)}" y="{height - 6}" class="tick">'
            f"{escape(bucket_labels[i])}</text>"
        )
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" data-color="{k % len(PALETTE)}"></span>{escape(name)}</li>'
        for k, (name, _c) in enumerate(series)
    )
    return Markup("".join(parts) + f'<ul class="legend">{legend}</ul>')


def line_chart(
    points: Sequence[tuple[float, float | None]],
    label: str,
    unit: str,
    width: int = 720,
    height: int = 180,
    x_labels: tuple[str, str] | None = None,
) -> Markup:
    """A line over (x, y) points, x increasing, with a dot at each point (a lone point shows);
    y None breaks the line (no data). ``x_labels``: texts under the first and last x."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points if p[1] is not None]
    if not xs or not ys:
        return Markup(f'<p class="muted">{escape(label)}: no data yet.</p>')
    x0, x1 = min(xs), max(xs)
    peak = max(ys) or 1.0
    left, bottom, top = 48, 20, 8
    plot_w, plot_h = width - left - 8, height - bottom - top
    span = (x1 - x0) or 1.0
    runs: list[list[str]] = [[]]
    dots: list[str] = []
    for x, y in points:
        if y is None:
            runs.append([])
            continue
        px = left + (x - x0) / span * plot_w
        py = top + plot_h - y / peak * plot_h
        runs[-1].append(f"{_fmt(px)},{_fmt(py)}")
        dots.append(
            f'<circle cx="{_fmt(px)}" cy="{_fmt(py)}" r="2.5" class="dot">'
            f"<title>{escape(_fmt(y))} {escape(unit)}</title></circle>"
        )
    lines = "".join(
        f'<polyline points="{" ".join(run)}" class="line"/>' for run in runs if len(run) >= 2
    )
    if x_labels:
        lines += (
            f'<text x="{left}" y="{height - 4}" class="tick">{escape(x_labels[0])}</text>'
            f'<text x="{width - 8}" y="{height - 4}" class="tick" text-anchor="end">'
            f"{escape(x_labels[1])}</text>"
        )
    lines += "".join(dots)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'class="axis"/>'
        f'<text x="{left - 4}" y="{top + 10}" class="tick" text-anchor="end">'
        f"{escape(_fmt(peak))} {escape(unit)}</text>"
        f'<text x="{left - 4}" y="{top + plot_h}" class="tick" text-anchor="end">0</text>'
        f"{lines}</svg>"
    )


def track_path(
    boxes: Sequence[tuple[float, float, float, float]],
    frame_w: int | None,
    frame_h: int | None,
    label: str,
    width: int = 640,
) -> Markup:
    """The path of box centres over the frame's outline (boxes normalised to [0, 1]),
    with the first and last box drawn; the frame's aspect ratio when it is known."""
    aspect = (frame_h / frame_w) if frame_w and frame_h else 9 / 16
    w, h = float(width), float(width) * aspect
    centres = [((x1 + x2) / 2 * w, (y1 + y2) / 2 * h) for x1, y1, x2, y2 in boxes]
    parts = [
        f'<svg id="track-path" viewBox="0 0 {_fmt(w)} {_fmt(h)}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">',
        f'<rect x="0" y="0" width="{_fmt(w)}" height="{_fmt(h)}" class="frame"/>',
    ]
    for name, (x1, y1, x2, y2) in (("first", boxes[0]), ("last", boxes[-1])) if boxes else ():
        parts.append(
            f'<rect x="{_fmt(x1 * w)}" y="{_fmt(y1 * h)}" width="{_fmt((x2 - x1) * w)}" '
            f'height="{_fmt((y2 - y1) * h)}" class="box {name}"><title>{name} box</title></rect>'
        )
    if centres:
        pts = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in centres)
        parts.append(f'<polyline points="{pts}" class="path"/>')
        sx, sy = centres[0]
        ex, ey = centres[-1]
        parts.append(f'<circle cx="{_fmt(sx)}" cy="{_fmt(sy)}" r="5" class="start"/>')
        parts.append(f'<circle cx="{_fmt(ex)}" cy="{_fmt(ey)}" r="5" class="end"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
