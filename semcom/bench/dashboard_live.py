"""The live feed's delay in ``semcom bench dashboard``: database commit to the browser's list.

:class:`LiveInserter` adds new tracks to the cloud's catalog from the benchmark's own process,
each in its own committed transaction, as another writer would; :func:`measure_live` keeps
``/live`` open in Chromium, inserts them one every ``every_s`` and reads, for each, what the
page's script (``cloud/dashboard/static/app.js``) stamped on the ``li[data-track=ID]`` it
added: ``data-received-ms`` (the browser's ``Date.now()`` when the event arrived) and
``data-stored-us`` (the server's clock when its poller saw the track). One clock: everything
runs on this machine. The gaps between inserts are drawn uniformly from 0.5-1.5 x
``every_s``: at a fixed 0.25 s they would lock to the cloud's 0.25 s poll and measure one
phase of it over and over.

- ``delay_ms`` = received - commit (``time.time()`` right after the commit returned);
- ``seen_ms`` = stored - commit: the cloud's poll (every 0.25 s by default) and query;
- ``push_ms`` = received - stored: the Server-Sent Event's way to the page.

A MutationObserver records each track's first arrival, so a later replacement of the same
``li`` (a track re-sent once its crop arrives) cannot move the figure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np

from semcom.bench.dashboard_seed import (
    CAMERAS,
    CLASS_SHARE,
    CLASSES,
    CODEC,
    EDGES,
    FIRST_SIGHT,
    Seeded,
    unit,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

STATUS_OPEN: Final = "Live:"  # app.js's status text once the event stream is open
SETTLE_MS: Final = 1000  # after the stream opens: the cloud's poller reads its starting point
FIRST_SEEN_JS: Final = """() => {
  window.__benchFirst = {};
  const list = document.getElementById("live-tracks");
  const note = (li) => {
    const id = li.dataset && li.dataset.track;
    if (id && li.dataset.receivedMs && !(id in window.__benchFirst)) {
      window.__benchFirst[id] = [Number(li.dataset.receivedMs), Number(li.dataset.storedUs)];
    }
  };
  new MutationObserver((changes) => {
    for (const c of changes) for (const n of c.addedNodes) if (n.nodeType === 1) note(n);
  }).observe(list, {childList: true});
}"""


class LiveInserter:
    """New tracks, each with one detection and its embedding, committed one at a time.

    Writes through its own SQLAlchemy engine on the cloud's database (SQLite in WAL mode: the
    cloud's readers are not blocked). The new embeddings are in the catalog, not in the
    running cloud's vector index (only its ingest writer feeds that; a restart's reconcile
    would add them): the live feed does not read the index.
    """

    def __init__(self, url: str, seeded: Seeded, seed: int) -> None:
        from cloud.db import make_engine
        from shared.vectors import create_codec

        self.engine = make_engine(url)
        self.seeded = seeded
        self.codec = create_codec(CODEC, seeded.dim)
        self.rng = np.random.default_rng(seed + 2)
        self.next_seq = dict(seeded.next_seq)

    def insert(self) -> tuple[int, float]:
        """One new track; returns its id and ``time.time()`` right after its commit."""
        from sqlalchemy import insert

        from cloud.schema import detections, embeddings, tracks

        rng, now_us = self.rng, time.time_ns() // 1000
        camera = int(rng.integers(0, len(CAMERAS)))
        edge = EDGES[CAMERAS[camera][0]]
        cls = int(rng.choice(CLASSES, p=CLASS_SHARE))
        x, y = (float(v) for v in rng.uniform(0.2, 0.8, size=2))
        code = self.codec.encode(unit(rng.normal(size=(1, self.seeded.dim))))[0].tobytes()
        seq = self.next_seq[edge]
        self.next_seq[edge] = seq + 1
        track = {"camera_id": camera + 1, "local_id": 10_000_000 + seq, "class_id": cls}
        box = {"x1": x - 0.05, "y1": y - 0.08, "x2": x + 0.05, "y2": y + 0.08}
        with self.engine.begin() as conn:
            track_id = conn.execute(
                insert(tracks)
                .values(**track, first_seen_us=now_us, last_seen_us=now_us, ended=False)
                .returning(tracks.c.id)
            ).scalar_one()
            detection_id = conn.execute(
                insert(detections)
                .values(
                    **box,
                    camera_id=camera + 1,
                    track_id=track_id,
                    ts_us=now_us,
                    class_id=cls,
                    confidence=0.8,
                    edge_id=edge,
                    seq=seq,
                    has_embedding=True,
                )
                .returning(detections.c.id)
            ).scalar_one()
            conn.execute(
                insert(embeddings).values(
                    detection_id=detection_id,
                    space_id=self.seeded.space_id,
                    codec=self.seeded.codec_fp,
                    reason=FIRST_SIGHT,
                    code=code,
                )
            )
        return int(track_id), time.time()

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class LiveResult:
    inserted: int = 0
    delay_ms: list[float] = field(default_factory=list)
    seen_ms: list[float] = field(default_factory=list)
    push_ms: list[float] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)  # track ids that never showed


def measure_live(
    page: Page,
    base_url: str,
    inserter: LiveInserter,
    count: int,
    every_s: float = 0.25,
    arrive_timeout_s: float = 15.0,
) -> LiveResult:
    """Open ``/live``, insert ``count`` tracks (one every ``every_s`` on average) and time
    each one's arrival on the page."""
    page.goto(f"{base_url}/live", wait_until="load")
    page.evaluate(FIRST_SEEN_JS)
    page.wait_for_function(
        f"() => (document.getElementById('live-status') || {{}}).textContent"
        f"?.startsWith({STATUS_OPEN!r})"
    )
    page.wait_for_timeout(SETTLE_MS)
    commits: dict[int, float] = {}
    gaps = inserter.rng.uniform(0.5 * every_s, 1.5 * every_s, size=count)
    for gap in gaps:
        started = time.monotonic()
        track_id, committed_s = inserter.insert()
        commits[track_id] = committed_s
        left_ms = (gap - (time.monotonic() - started)) * 1000
        page.wait_for_timeout(max(1.0, left_ms))  # the browser runs on; Playwright's events too
    deadline = time.monotonic() + arrive_timeout_s
    seen: dict[str, list[float]] = {}
    while time.monotonic() < deadline:
        seen = page.evaluate("() => window.__benchFirst")
        if all(str(t) in seen for t in commits):
            break
        page.wait_for_timeout(100)
    out = LiveResult(inserted=len(commits))
    for track_id, committed_s in commits.items():
        got = seen.get(str(track_id))
        if got is None:
            out.missing.append(track_id)
            continue
        received_ms, stored_us = got
        out.delay_ms.append(received_ms - committed_s * 1000)
        out.seen_ms.append(stored_us / 1000 - committed_s * 1000)
        out.push_ms.append(received_ms - stored_us / 1000)
    return out
