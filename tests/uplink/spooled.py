"""Spool files filled as an edge fills them while its cloud is out of reach."""

from __future__ import annotations

import time
from pathlib import Path

from edge.loadgen import CodecChoice, SceneSpec, SyntheticScene
from edge.pipeline import Outbox
from edge.sink import SpoolSink
from edge.spool import Spool
from shared.codec import decode
from shared.messages import Hello
from shared.vectors import VectorCodec, create_codec
from tests.uplink.conftest import EDGE, content


def fill_spool(
    path: Path,
    seconds: float,
    hello: Hello | None = None,
    codec: VectorCodec | None = None,
    camera: str = "cam-synth",
    seed: int = 0,
) -> set[tuple[int, str]]:
    """Spool a synthetic scene's messages (every kind) as the edge pipeline does, made under
    ``hello``; returns what they say (see ``conftest.content``)."""
    codec = codec or create_codec("f16", 64)
    choice = CodecChoice([codec])
    scene = SyntheticScene(SceneSpec(tracks_per_s=3.0, track_s=3.0, seed=seed), choice, camera)
    spool = Spool(path)
    outbox = Outbox(EDGE, SpoolSink(spool))
    t0 = time.time_ns() // 1_000
    outbox.put(t0, hello or choice.hello("test", camera), control=True)
    for i in range(int(seconds * 10)):
        now = t0 + i * 100_000
        for message in scene.tick(i * 0.1, now):
            outbox.put(now, message)
    for message in scene.tick(seconds + scene.spec.track_s + 1, t0 + int(20e6)):
        outbox.put(t0 + int(20e6), message)
    frames = [bytes(f) for _, f in spool.peek(1 << 40)]
    spool.close()
    assert all(decode(f).seq for f in frames)
    return {content(f) for f in frames}
