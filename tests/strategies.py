"""Hypothesis strategies derived from the wire schema, so every message type is covered."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from shared import limits
from shared.geometry import BOX_UNITS, Box
from shared.messages import (
    ID_PATTERN,
    MESSAGE_TYPES,
    Ack,
    Detections,
    Envelope,
    TrackEnd,
    TrackSummary,
)
from shared.pathwire import PathPoint, TrackPath
from shared.schema import (
    F32,
    Bool,
    Boxes,
    BoxType,
    Bytes,
    Enum,
    Histogram,
    NamedFloats,
    Nested,
    Numbers,
    Seq,
    SInt,
    Str,
    UInt,
    WireType,
    wire_fields,
)

_unit = st.integers(0, BOX_UNITS).map(lambda v: v / BOX_UNITS)


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    x = sorted([draw(_unit), draw(_unit)])
    y = sorted([draw(_unit), draw(_unit)])
    return Box(x[0], y[0], x[1], y[1])


def _small(n: int) -> int:
    return min(n, 8)  # keep examples small; limits are tested separately


def for_wire(t: WireType[Any]) -> st.SearchStrategy[Any]:
    """A strategy producing valid Python values for wire type ``t``."""
    if isinstance(t, UInt):
        return st.integers(t.low, t.high)
    if isinstance(t, SInt):
        return st.integers(t.low, t.high)
    if isinstance(t, Bool):
        return st.booleans()
    if isinstance(t, F32):
        # Any float in range: the constructor rounds it to float32.
        return st.floats(max(t.low, -1e30), min(t.high, 1e30), allow_nan=False)
    if isinstance(t, Str):
        if t.pattern is not None:
            return st.from_regex(f"{ID_PATTERN}", fullmatch=True).filter(
                lambda s: t.min_chars <= len(s) <= t.max_chars
            )
        return st.text(min_size=t.min_chars, max_size=min(t.max_chars, 40))
    if isinstance(t, Bytes):
        if t.exact is not None:
            return st.binary(min_size=t.exact, max_size=t.exact)
        return st.binary(min_size=1, max_size=min(t.max_bytes, 64))
    if isinstance(t, Enum):
        return st.sampled_from(list(t.enum))
    if isinstance(t, BoxType):
        return boxes()
    if isinstance(t, Boxes):
        return st.lists(boxes(), max_size=_small(t.max_items)).map(tuple)
    if isinstance(t, Numbers):
        return st.lists(for_wire(t.item), max_size=_small(t.max_items)).map(tuple)
    if isinstance(t, Histogram):
        return st.dictionaries(for_wire(t.key), for_wire(t.value), max_size=6)
    if isinstance(t, NamedFloats):
        assert t.name.pattern is not None
        names = st.from_regex(t.name.pattern.pattern, fullmatch=True).filter(
            lambda s: t.name.min_chars <= len(s) <= t.name.max_chars
        )
        return st.dictionaries(names, for_wire(t.value), max_size=6)
    if isinstance(t, Seq):
        return st.lists(for_wire(t.item), max_size=4).map(tuple)
    if isinstance(t, Nested):
        return records(t.record)
    raise NotImplementedError(type(t))


def records(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Valid instances of a record class (cross-field rules included)."""
    if cls is Detections:
        return _detections()
    if cls is TrackEnd:
        return _track_ends()
    if cls is Ack:
        return _acks()
    if cls is TrackSummary:
        return track_summaries()
    return st.builds(cls, **{f.name: for_wire(f.metadata["wire"]) for f in wire_fields(cls)})


@st.composite
def _detections(draw: st.DrawFn) -> Detections:
    n = draw(st.integers(0, 8))
    fields = {f.name: f.metadata["wire"] for f in wire_fields(Detections)}
    return Detections(
        camera=draw(for_wire(fields["camera"])),
        boxes=tuple(draw(boxes()) for _ in range(n)),
        class_ids=tuple(draw(for_wire(fields["class_ids"].item)) for _ in range(n)),
        confidences=tuple(draw(for_wire(fields["confidences"].item)) for _ in range(n)),
        track_ids=tuple(draw(for_wire(fields["track_ids"].item)) for _ in range(n)),
    )


@st.composite
def _acks(draw: st.DrawFn) -> Ack:
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, limits.MAX_SEQ), st.integers(0, limits.MAX_SEQ)), max_size=5
        )
    )
    flat = tuple(v for a, b in pairs for v in sorted((a, b)))
    return Ack(draw(st.integers(0, limits.MAX_SEQ)), flat)


@st.composite
def _track_ends(draw: st.DrawFn) -> TrackEnd:
    fields = {f.name: for_wire(f.metadata["wire"]) for f in wire_fields(TrackEnd)}
    values = {name: draw(s) for name, s in fields.items()}
    lo, hi = sorted([values["first_seen_us"], values["last_seen_us"]])
    values["first_seen_us"], values["last_seen_us"] = lo, hi
    return TrackEnd(**values)


@st.composite
def track_paths(draw: st.DrawFn, max_offset_ms: int = limits.MAX_PATH_OFFSET_MS) -> TrackPath:
    """A path of up to 8 points (any grid, offsets never decreasing, up to ``max_offset_ms``)."""
    offsets = sorted(draw(st.lists(st.integers(0, max_offset_ms), max_size=8)))
    grid = draw(st.one_of(st.integers(1, 64), st.integers(1, limits.MAX_PATH_GRID)))
    return TrackPath(grid, tuple(PathPoint(t, draw(boxes())) for t in offsets))


@st.composite
def track_summaries(draw: st.DrawFn) -> TrackSummary:
    fields = {f.name: f.metadata["wire"] for f in wire_fields(TrackSummary) if f.name != "path"}
    values = {name: draw(for_wire(kind)) for name, kind in fields.items()}
    lo, hi = sorted([values["first_seen_us"], values["last_seen_us"]])
    values["first_seen_us"], values["last_seen_us"] = lo, hi
    span_ms = min((hi - lo) // 1000, limits.MAX_PATH_OFFSET_MS)
    return TrackSummary(**values, path=draw(track_paths(span_ms)))


def messages() -> st.SearchStrategy[Any]:
    return st.one_of([records(cls) for cls in MESSAGE_TYPES.values()])


@st.composite
def envelopes(draw: st.DrawFn, message: st.SearchStrategy[Any] | None = None) -> Envelope:
    capture = draw(st.integers(0, limits.MAX_TS_US))
    send = draw(st.integers(0, limits.MAX_TS_US))
    return Envelope(
        edge_id=draw(for_wire(Str(limits.MAX_ID_CHARS, pattern=ID_PATTERN, min_chars=1))),
        seq=draw(st.integers(0, limits.MAX_SEQ)),
        capture_ts_us=capture,
        send_ts_us=send,
        message=draw(message if message is not None else messages()),
    )
