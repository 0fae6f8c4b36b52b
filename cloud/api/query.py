"""Query parameters shared by the list routes (FastAPI ``Query`` metadata on the params types)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Query

from cloud.api.params import MAX_FILTER_ITEMS, CameraId, ClassId, Time

MAX_PAGE: Final = 1000

Cameras = Annotated[
    list[CameraId] | None,
    Query(max_length=MAX_FILTER_ITEMS, description="Camera ids (repeatable: any of)."),
]
Classes = Annotated[
    list[ClassId] | None,
    Query(alias="class", max_length=MAX_FILTER_ITEMS, description="Class ids (repeatable)."),
]
From = Annotated[Time | None, Query(alias="from", description="Not before this time.")]
To = Annotated[Time | None, Query(description="Before this time (exclusive).")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=r"^[A-Za-z0-9_=-]*$",
        description="`next_cursor` of the previous page; none or empty: the first page.",
    ),
]
