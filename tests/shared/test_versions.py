"""Protocol versions: the Heartbeat's link-health fields (3), and what happens to frames of
versions 2 and 3 under version 4 (a fatal mismatch for a live peer; spooled data restamped)."""

from __future__ import annotations

import pytest

from shared import limits
from shared.codec import decode, encode, restamp
from shared.errors import DecodeError, InvalidMessage, VersionMismatch
from shared.messages import Envelope, FrameCounts, Heartbeat, Hello
from tests.shared.golden import RAW


def _as_v2(frame: bytes) -> bytes:
    return frame[:2] + bytes([2]) + frame[3:]


def test_heartbeat_carries_the_edges_link_health() -> None:
    beat = Heartbeat(7, 1_000_000.0, reconnects=4, rung="pq32x8", spool_bytes=2**40)
    again = decode(encode(Envelope("e", 0, 1, 1, beat))).message
    assert again == beat
    assert (again.reconnects, again.rung, again.spool_bytes) == (4, "pq32x8", 2**40)
    # Without them (the cloud's own heartbeats): none reported.
    assert Heartbeat(0, 0.0) == Heartbeat(0, 0.0, 0, "", 0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rung": "x" * (limits.MAX_CODEC_ID_CHARS + 1)}, "rung"),
        ({"reconnects": 2**32}, "reconnects"),
        ({"spool_bytes": -1}, "spool_bytes"),
    ],
)
def test_heartbeat_fields_are_bounded(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidMessage, match=field):
        Heartbeat(0, 0.0, **kwargs)  # type: ignore[arg-type]


def test_heartbeat_carries_a_bounded_health_summary() -> None:
    health = {"capture_fps": 24.9, "dropped": 3.0, "ack_ms_p95": 41.5}
    beat = Heartbeat(1, 2.0, health=health)
    again = decode(encode(Envelope("e", 0, 1, 1, beat), RAW)).message
    assert isinstance(again, Heartbeat)
    assert again == beat
    assert again.health["dropped"] == 3.0
    assert again.health["capture_fps"] == pytest.approx(24.9, rel=1e-6)  # float32 on the wire
    assert Heartbeat(0, 0.0).health == {}
    # one byte string per summary, whatever the order it was built in
    backwards = Heartbeat(1, 2.0, health=dict(reversed(list(health.items()))))
    same = [encode(Envelope("e", 0, 1, 1, b), RAW) for b in (backwards, beat)]
    assert same[0] == same[1]


@pytest.mark.parametrize(
    ("health", "message"),
    [
        ({f"f{i}": 1.0 for i in range(limits.MAX_HEALTH_ENTRIES + 1)}, "17 entries exceeds max"),
        ({"x" * (limits.MAX_HEALTH_NAME_CHARS + 1): 1.0}, "length 33"),
        ({"Capture": 1.0}, "does not match"),
        ({"": 1.0}, "length 0"),
        ({"fps": float("nan")}, "NaN"),
        ({"fps": float("inf")}, "finite"),
        ({"fps": 1e39}, "outside"),
        ({"fps": "25"}, "expected a number"),
        ({7: 1.0}, "expected a string"),
        ([("fps", 1.0)], "expected a mapping"),
    ],
)
def test_heartbeat_health_is_bounded(health: object, message: str) -> None:
    with pytest.raises(InvalidMessage, match=message):
        Heartbeat(0, 0.0, health=health)  # type: ignore[arg-type]


def test_a_decoded_health_map_is_checked_like_a_built_one() -> None:
    import msgpack

    from shared.codec import PREFIX_BYTES

    good = encode(Envelope("e", 0, 1, 1, Heartbeat(1, 2.0, health={"fps": 1.0})), RAW)
    prefix, body = good[:PREFIX_BYTES], msgpack.unpackb(good[PREFIX_BYTES:])
    for bad, why in (({"fps": 1}, "expected a float"), ({"FPS": 1.0}, "does not match")):
        frame = prefix + msgpack.packb([*body[:-1], bad], use_single_float=True)
        with pytest.raises(DecodeError, match=why):
            decode(frame)


def test_a_version_2_frame_is_a_version_mismatch() -> None:
    old = _as_v2(encode(Envelope("e", 0, 1, 1, Heartbeat(1, 2.0)), RAW))
    with pytest.raises(VersionMismatch) as info:
        decode(old)
    assert info.value.got == 2


def test_restamp_upgrades_spooled_data_frames_only() -> None:
    counts = Envelope("e", 5, 10, 11, FrameCounts("cam", {2: 3}))
    spooled = _as_v2(encode(counts, RAW))
    assert decode(restamp(spooled)) == counts  # the data layout is the same in 2 and 3
    # Control messages of version 2 are not laid out as ours (Heartbeat) or are never
    # spooled (Hello): left alone, so they still fail as a version mismatch.
    beat = _as_v2(encode(Envelope("e", 0, 1, 1, Heartbeat(1, 2.0)), RAW))
    hello = _as_v2(encode(Envelope("e", 0, 1, 1, Hello("v", "d", "e", 8, (), (), False)), RAW))
    assert restamp(beat) == beat
    assert restamp(hello) == hello
    current = encode(counts, RAW)
    assert restamp(current) == current
    one = _as_v2(current)[:2] + bytes([1]) + current[3:]  # version 1: not the same layout
    assert restamp(one) == one


def test_a_version_3_peer_is_refused_and_its_spooled_data_restamped() -> None:
    """Version 4 refuses a version-3 peer (its HelloAck, Acks and Errors would be version 4,
    which it cannot read), but data frames a version-3 edge spooled are laid out as today's
    and are sent again under 4."""
    counts = Envelope("e", 5, 10, 11, FrameCounts("cam", {2: 3}))
    v3 = encode(counts, RAW)[:2] + bytes([3]) + encode(counts, RAW)[3:]
    with pytest.raises(VersionMismatch) as info:
        decode(v3)
    assert (info.value.got, info.value.supported) == (3, (4,))
    assert restamp(v3)[2] == 4
    assert decode(restamp(v3)) == counts
