"""The paper's crop rule, and multi-frame containers (batches, message files)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import limits
from shared.codec import decode, encode
from shared.errors import DecodeError, EncodeError
from shared.framing import FrameWriter, pack_batch, read_frames, unpack_batch
from shared.geometry import PixelRegion, square_crop_region
from shared.messages import Ack, Envelope


@pytest.mark.parametrize(
    ("box", "frame", "expected"),
    [
        # 20x10 box centred at (100, 100): scaled 50x25 -> square side 50 -> [75, 125).
        ((90, 95, 110, 105), (640, 360), PixelRegion(75, 75, 125, 125)),
        # Near the top-left corner the square is clipped (not shifted), as in the paper.
        ((0, 0, 40, 20), (640, 360), PixelRegion(0, 0, 70, 60)),
        # A box covering most of the frame clips to the whole frame.
        ((100, 50, 540, 310), (640, 360), PixelRegion(0, 0, 640, 360)),
        # Tall box: side from the height. 10x40 centred (300, 200) -> side 100 -> [250, 350).
        ((295, 180, 305, 220), (640, 360), PixelRegion(250, 150, 350, 250)),
    ],
)
def test_square_crop_rule(
    box: tuple[float, float, float, float], frame: tuple[int, int], expected: PixelRegion
) -> None:
    assert square_crop_region(box, *frame) == expected


def test_crop_scale_is_configurable_and_checked() -> None:
    assert square_crop_region((90, 95, 110, 105), 640, 360, scale=1.0) == PixelRegion(
        90, 90, 110, 110
    )
    with pytest.raises(ValueError, match="positive"):
        square_crop_region((0, 0, 1, 1), 640, 360, scale=0)


@given(
    x1=st.floats(-50, 700),
    y1=st.floats(-50, 400),
    w=st.floats(0, 800),
    h=st.floats(0, 500),
    scale=st.floats(0.5, 4.0),
)
def test_crop_always_inside_frame_and_non_empty(
    x1: float, y1: float, w: float, h: float, scale: float
) -> None:
    r = square_crop_region((x1, y1, x1 + w, y1 + h), 640, 360, scale=scale)
    assert 0 <= r.x1 < r.x2 <= 640
    assert 0 <= r.y1 < r.y2 <= 360


def _frames(n: int) -> list[bytes]:
    return [encode(Envelope("edge-01", i, i, i, Ack(i, ()))) for i in range(1, n + 1)]


def test_batch_round_trip_and_limits() -> None:
    frames = _frames(50)
    assert unpack_batch(pack_batch(frames)) == frames
    with pytest.raises(EncodeError, match="exceeds max of 65536"):
        pack_batch([b"x" * 30_000] * 3)
    batch = pack_batch(frames)
    with pytest.raises(DecodeError, match="truncated frame"):
        unpack_batch(batch[:-3])
    with pytest.raises(DecodeError, match="bad magic"):
        unpack_batch(b"XX" + batch[2:])
    with pytest.raises(DecodeError, match="longer than 3 bytes"):
        unpack_batch(b"SB\x01\xff\xff\xff\xff")
    assert unpack_batch(b"SB\x01") == []
    assert len(pack_batch([b"y" * (limits.MAX_FRAME_BYTES - 6)])) == limits.MAX_FRAME_BYTES


def test_message_file_round_trip_and_cut_tail() -> None:
    buf = io.BytesIO()
    writer = FrameWriter(buf)
    frames = _frames(20)
    for f in frames:
        writer.write(f)
    writer.flush()
    data = buf.getvalue()
    assert [decode(f).seq for f in read_frames(io.BytesIO(data))] == list(range(1, 21))
    got: list[bytes] = []
    with pytest.raises(DecodeError, match="file ends inside a frame"):
        got.extend(read_frames(io.BytesIO(data[:-2])))
    assert got == frames[:-1]  # every whole record before the cut is still read
    with pytest.raises(DecodeError, match="not a semcom message file"):
        list(read_frames(io.BytesIO(b"hello")))


def test_host_address_picker_offers_only_the_chosen_addresses() -> None:
    from shared.addresses import host_address_picker

    pick = host_address_picker(["127.0.0.1", "::1"])
    assert pick(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert pick(use_ipv4=False, use_ipv6=True) == ["::1"]
    assert pick(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
