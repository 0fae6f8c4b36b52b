"""sim.bundling: messages grouped into bundles as the uplink groups them, by hand-computed
windows, with the real encoded sizes."""

from __future__ import annotations

import pytest

from shared.bundle import encode_bundle
from shared.codec import encode
from shared.compression import Compressor
from shared.framing import batch_overhead
from shared.geometry import Box
from shared.messages import Detections, Envelope, FrameCounts, Message
from sim.bundling import BundleSettings, bundle_sizes
from sim.errors import MeasureError

T0 = 1_764_000_000_000_000


def _boxes(i: int) -> Detections:
    box = Box(0.1 + 0.01 * i, 0.2, 0.2 + 0.01 * i, 0.3)
    return Detections("cam-01", (box,), (2,), (0.8,), (5,))


def _envelopes(items: list[tuple[float, Message]], first_seq: int) -> list[Envelope]:
    out = []
    for k, (t, m) in enumerate(items):
        us = T0 + round(t * 1e6)
        out.append(Envelope("sim-edge", first_seq + k, us, us, m))
    return out


def test_messages_within_the_linger_window_share_one_bundle() -> None:
    items: list[tuple[float, Message]] = [
        (0.0, _boxes(0)),
        (0.4, FrameCounts("cam-01", {2: 1})),  # 0.1 s later in the input: order is by time
        (0.1, _boxes(1)),
        (0.6, _boxes(2)),
        (2.0, _boxes(3)),
    ]
    settings = BundleSettings(linger_s=0.5, box_step=64)
    got = bundle_sizes(items, settings, T0)
    # windows [0, 0.5], [0.6, 1.1], [2.0, 2.5]: each sent when its window closes
    assert [t for t, _ in got] == [0.5, 0.6 + 0.5, 2.5]
    ordered = sorted(items, key=lambda i: i[0])
    comp = Compressor()
    groups = [(_envelopes(ordered[:3], 1), 0.5), (_envelopes(ordered[3:4], 4), 1.1)]
    groups.append((_envelopes(ordered[4:], 5), 2.5))
    expected = []
    for envs, at in groups:
        bundle = encode_bundle(envs, box_step=64, send_ts_us=T0 + round(at * 1e6), compressor=comp)
        frames = [len(encode(e, comp)) for e in envs]
        single = frames[0] if len(frames) == 1 else batch_overhead(frames)
        expected.append(min(len(bundle), single))
    assert [n for _, n in got] == expected
    # one bundle of three costs less than the three frames alone
    assert got[0][1] < sum(len(encode(e, comp)) for e in groups[0][0])


def test_a_full_bundle_goes_at_once_and_bundling_off_sends_batches() -> None:
    items: list[tuple[float, Message]] = [(0.01 * i, _boxes(i)) for i in range(10)]
    frame = len(encode(_envelopes(items[:1], 1)[0], Compressor()))
    small = BundleSettings(linger_s=5.0, box_step=64, max_bytes=4 * frame + 2)
    got = bundle_sizes(items, small, T0)
    assert len(got) == 3  # 4 + 4 + 2 frames' worth, each under the batch limit
    assert [t for t, _ in got] == [0.04, 0.08, 0.08 + 5.0]
    off = bundle_sizes(items, BundleSettings(linger_s=0.0, enabled=False), T0)
    assert len(off) == 10
    assert sum(n for _, n in off) > 2 * sum(n for _, n in got)


def test_a_presets_uplink_keys_set_the_bundling_without_an_uplink() -> None:
    keys = {"uplink.bundle_linger_ms": 5000, "uplink.bundle_box_step": 128}
    settings = BundleSettings.of_keys(keys)
    assert (settings.linger_s, settings.box_step) == (5.0, 128)
    assert settings.max_bytes == BundleSettings().max_bytes  # the rest: the uplink's defaults


def test_a_bad_preset_uplink_key_is_named() -> None:
    with pytest.raises(MeasureError, match=r"uplink\.bundle_linger_ms: .*less than or equal"):
        BundleSettings.of_keys({"uplink.bundle_linger_ms": 10**9})
