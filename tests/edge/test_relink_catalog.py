"""A re-linked object in the real catalog: the edge policy's messages for an object lost longer
than ``lost_frames`` and re-found as a new tracker id, stored by the cloud's ingest (SQLite).

An ended track that a later message continues is not reopened at the cloud (cloud/
project_tracks.py: an ended track takes only sightings inside its span), so the policy must not
end a track while a re-link may still continue it: the object is then one track row with all its
frames and class votes, not two rows each with half of them.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from cloud.db import open_database
from cloud.schema import tracks
from cloud.session import EdgeSession
from cloud.store import Store
from shared.codec import decode, encode
from shared.framing import pack_batch
from shared.messages import Envelope, TrackSummary
from shared.vectors import CodecSet
from tests.cloud.test_store import hello
from tests.edge.test_relink import A2, Script, occluded


def test_an_object_lost_past_lost_frames_and_relinked_is_one_cloud_track(tmp_path: Path) -> None:
    s = Script(lost_frames=3)
    occluded(s, A2, gap=8)  # tracker id 1 for 10 frames, 8 frames unseen, id 2 for 10 frames
    assert s.policy.stats.relinked == 1
    summaries = [m for m in s.messages + s.policy.flush() if isinstance(m, TrackSummary)]
    engine = open_database(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        session = EdgeSession("edge-01", "s1", Store(engine, CodecSet()))
        frames = [hello()] + [
            encode(Envelope("edge-01", seq, m.last_seen_us, m.last_seen_us, m))
            for seq, m in enumerate(summaries, start=1)
        ]
        for frame in frames:  # one batch each, in order, as the uplink sends them
            for reply in session.receive(pack_batch([frame])):
                decode(reply)
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    tracks.c.local_id,
                    tracks.c.first_seen_us,
                    tracks.c.last_seen_us,
                    tracks.c.frames,
                    tracks.c.class_votes,
                    tracks.c.ended,
                )
            ).all()
    finally:
        engine.dispose()
    first_us, last_us = 1_000_000, 1_000_000 + 27 * 40_000  # frames 0 and 27 at 25 fps
    assert [tuple(r) for r in rows] == [(1, first_us, last_us, 20, {"2": 20}, True)]
