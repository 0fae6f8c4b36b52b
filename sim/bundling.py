"""Bytes as the uplink sends them: a strategy's messages grouped into bundle frames.

The edge's uplink (:mod:`edge.uplink`) sends what its spool holds as one bundle frame
(:mod:`shared.bundle`), waiting up to ``bundle_linger_ms`` after a partial bundle is ready
for more, and never beyond ``batch_bytes`` of spooled frames. :func:`bundle_sizes` does the
same on video time: a bundle opens with a message, takes every message made within the
linger window after it (while the frames it replaces stay under the batch size), and is sent
when the window closes (or at once when full). Its size is the real encoded bundle's, made of
the same messages with consecutive seqs and the clip's capture times; a bundle is sent as a
single frame or a batch instead when that is smaller, as the uplink does.

An idle link is assumed (no backlog): on a congested one, bundles only grow fuller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from edge.config import UplinkConfig
from shared.bundle import encode_bundle
from shared.codec import encode
from shared.compression import Compressor
from shared.framing import batch_overhead
from shared.messages import Envelope, Message
from sim.errors import MeasureError

_DEFAULTS: Final = UplinkConfig.model_fields


@dataclass(frozen=True)
class BundleSettings:
    """The uplink's bundling: linger (s), box grid (1/65,535) and largest batch (bytes)."""

    linger_s: float = _DEFAULTS["bundle_linger_ms"].default / 1e3
    box_step: int = _DEFAULTS["bundle_box_step"].default
    max_bytes: int = _DEFAULTS["batch_bytes"].default
    enabled: bool = _DEFAULTS["bundles"].default

    @classmethod
    def of(cls, uplink: UplinkConfig | None) -> BundleSettings:
        """An edge config's uplink settings (its defaults without an uplink section)."""
        if uplink is None:
            return cls()
        linger_s = uplink.bundle_linger_ms / 1e3
        return cls(linger_s, uplink.bundle_box_step, uplink.batch_bytes, uplink.bundles)

    @classmethod
    def of_keys(cls, keys: Mapping[str, Any]) -> BundleSettings:
        """A preset's dotted ``uplink.*`` keys (e.g. the lean preset's ``bundle_linger_ms``)
        where no uplink is configured for them to complete: validated as that section would
        be, with a placeholder cloud URL and token that nothing connects to."""
        section = {k.removeprefix("uplink."): v for k, v in keys.items()}
        try:
            uplink = UplinkConfig.model_validate(
                {"cloud": "http://sim.invalid", "token": "sim", **section}
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"uplink.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise MeasureError(f"invalid preset uplink keys: {problems}") from None
        return cls.of(uplink)


def bundle_sizes(
    messages: Iterable[tuple[float, Message]],
    settings: BundleSettings = BundleSettings(),
    t0_us: int = 0,
    edge_id: str = "sim-edge",
) -> list[tuple[float, int]]:
    """(send time in s of video, bytes) of each data-channel message the uplink would send
    for ``messages`` (creation time in s of video, message), in time order; ``t0_us``: the
    capture time of video second 0 (track times in the messages are on that clock)."""
    items = sorted(messages, key=lambda item: item[0])
    compressor = Compressor()
    out: list[tuple[float, int]] = []
    group: list[Envelope] = []
    frames: list[int] = []
    opened = 0.0

    def flush(at: float) -> None:
        if not group:
            return
        batch = frames[0] if len(frames) == 1 else batch_overhead(frames)
        size = batch
        if settings.enabled:
            send_us = t0_us + round(at * 1e6)
            bundle = encode_bundle(
                group, box_step=settings.box_step, send_ts_us=send_us, compressor=compressor
            )
            size = min(batch, len(bundle))
        out.append((at, size))
        group.clear()
        frames.clear()

    for seq, (t, message) in enumerate(items, start=1):
        if group and t > opened + settings.linger_s:
            flush(opened + settings.linger_s)
        us = t0_us + round(t * 1e6)
        env = Envelope(edge_id, seq, us, us, message)
        size = len(encode(env, compressor))
        if group and sum(frames) + size > settings.max_bytes:
            flush(t)  # full: sent at once
        if not group:
            opened = t
        group.append(env)
        frames.append(size)
    if group:
        flush(opened + settings.linger_s)
    return out
