"""The filters of a page, read from its URL (or form), so that a view can be shared as a link.

Invalid values do not fail the page: each is dropped and named in ``problems``, which the page
shows; the rest of the filter still applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.datastructures import FormData, QueryParams

from cloud.api.params import INT64_MAX, MAX_FILTER_ITEMS, parse_time_us
from cloud.index.base import SearchFilter
from shared.limits import MAX_CLASS_ID

MAX_K: Final = 100
GROUPS: Final = ("track", "detection")


@dataclass
class Filters:
    cameras: list[int] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    from_text: str = ""
    to_text: str = ""
    from_us: int | None = None
    to_us: int | None = None
    group: str = "track"
    k: int = 24
    problems: list[str] = field(default_factory=list)

    def search_filter(self) -> SearchFilter | None:
        if not (self.cameras or self.classes or self.from_us is not None or self.to_us):
            return None
        return SearchFilter(
            cameras=tuple(self.cameras) or None,
            classes=tuple(self.classes) or None,
            from_us=self.from_us,
            to_us=self.to_us,
        )

    def params(self) -> dict[str, Any]:
        """The filter as URL parameters (for links that keep it)."""
        return {
            "camera": self.cameras,
            "class": self.classes,
            "from": self.from_text,
            "to": self.to_text,
            "group": "" if self.group == "track" else self.group,
        }


def _ints(values: list[str], name: str, high: int, problems: list[str]) -> list[int]:
    out: list[int] = []
    for raw in values[:MAX_FILTER_ITEMS]:
        if raw == "":
            continue
        try:
            value = int(raw)
        except ValueError:
            problems.append(f"{name} {raw[:40]!r} is not a number: ignored")
            continue
        if not 0 <= value <= high:
            problems.append(f"{name} {value} is out of range: ignored")
            continue
        if value not in out:
            out.append(value)
    return out


def read_filters(source: QueryParams | FormData | Mapping[str, str]) -> Filters:
    def values(key: str) -> list[str]:
        if isinstance(source, QueryParams | FormData):
            return [v for v in source.getlist(key) if isinstance(v, str)]
        v = source.get(key)
        return [v] if isinstance(v, str) else []

    f = Filters()
    f.cameras = _ints(values("camera"), "camera", INT64_MAX, f.problems)
    f.classes = _ints(values("class"), "class", MAX_CLASS_ID, f.problems)
    for key in ("from", "to"):
        text = (values(key) or [""])[0].strip()
        if not text:
            continue
        try:
            us = parse_time_us(text)
        except ValueError as exc:
            f.problems.append(f"{key}: {exc}: ignored")
            continue
        if key == "from":
            f.from_text, f.from_us = text, us
        else:
            f.to_text, f.to_us = text, us
    if f.from_us is not None and f.to_us is not None and f.from_us > f.to_us:
        f.problems.append("to is before from: the time range is ignored")
        f.from_us = f.to_us = None
    group = (values("group") or ["track"])[0]
    f.group = group if group in GROUPS else "track"
    k = _ints(values("k"), "k", MAX_K, f.problems)
    f.k = max(1, k[0]) if k else f.k
    return f
