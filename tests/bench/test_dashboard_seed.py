"""``semcom bench dashboard``'s pieces without a browser: the seeded catalog, live inserts,
percentiles, and the one-line errors for a missing Playwright or Chromium."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from semcom.bench.dashboard import summary
from semcom.bench.dashboard_browser import BrowserUnavailable, require_browser
from semcom.bench.dashboard_seed import SeedSpec, seed_catalog


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, object]:
    db = tmp_path_factory.mktemp("seed") / "catalog.db"
    url = f"sqlite:///{db}"
    stages: dict[str, int] = {}
    seeded = seed_catalog(
        url, SeedSpec(detections=3000, descriptions=24), lambda s, d, t: stages.update({s: t})
    )
    assert set(stages) == {"tracks", "detections", "embeddings", "descriptions"}
    return url, db, seeded


def test_seeded_rows_are_counted_and_consistent(seeded_db: tuple[str, Path, object]) -> None:
    _url, db, seeded = seeded_db
    with sqlite3.connect(db) as conn:

        def one(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0])

        assert one("SELECT COUNT(*) FROM detections") == seeded.detections == 3000
        assert one("SELECT COUNT(*) FROM tracks") == seeded.tracks
        assert one("SELECT COUNT(*) FROM embeddings") == seeded.embeddings
        assert one("SELECT COUNT(*) FROM detections WHERE has_embedding") == seeded.embeddings
        assert 0.15 < seeded.embeddings / seeded.detections < 0.3  # about one in five
        assert one("SELECT COUNT(*) FROM cameras WHERE width > 0 AND height > 0") == 4
        assert one("SELECT SUM(frames) FROM tracks") == 3000
        # every track's first sighting is embedded (its crop in the galleries)
        assert one(
            "SELECT COUNT(*) FROM tracks t WHERE NOT EXISTS (SELECT 1 FROM detections d "
            "WHERE d.track_id = t.id AND d.has_embedding)"
        ) == 0  # fmt: skip
        assert one("SELECT COUNT(*) FROM descriptions WHERE describer = 'rules'") == 24
        assert seeded.descriptions == 24
        hits = "SELECT COUNT(*) FROM descriptions_fts WHERE descriptions_fts MATCH 'traffic'"
        assert one(hits) == 24
        now_us = time.time_ns() // 1000
        assert one("SELECT MIN(ts_us) FROM detections") > now_us - 2.1 * 3.6e9
        assert one("SELECT MAX(ts_us) FROM detections") < now_us
        longest = one("SELECT track_id FROM detections GROUP BY track_id ORDER BY COUNT(*) DESC")
        sizes = dict(conn.execute("SELECT track_id, COUNT(*) FROM detections GROUP BY track_id"))
        assert sizes[seeded.longest_track] == sizes[longest]
        path = conn.execute("SELECT path FROM tracks WHERE id = ?", (seeded.longest_track,))
        assert path.fetchone()[0].startswith("[[")
        assert one(
            f"SELECT COUNT(*) FROM embeddings WHERE detection_id = {seeded.embedded_detection}"
        ) == 1  # fmt: skip


def test_seeded_embeddings_decode_as_the_cloud_reads_them(
    seeded_db: tuple[str, Path, object],
) -> None:
    from cloud.catalog_vectors import CatalogVectors
    from cloud.db import make_engine
    from shared.vectors import CodecSet

    url, _db, seeded = seeded_db
    engine = make_engine(url)
    try:
        reader = CatalogVectors(engine, CodecSet())
        (space,) = reader.spaces()
        got = reader.read(space, reader.ids(space.id))
    finally:
        engine.dispose()
    _ids, vectors, *_ = got.arrays()
    assert len(vectors) == seeded.embeddings
    assert reader.skipped_undecodable == 0
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-2)


def test_live_inserts_commit_one_new_track_each(seeded_db: tuple[str, Path, object]) -> None:
    from semcom.bench.dashboard_live import LiveInserter

    url, db, seeded = seeded_db
    inserter = LiveInserter(url, seeded, seed=0)
    try:
        first, t1 = inserter.insert()
        second, t2 = inserter.insert()
    finally:
        inserter.close()
    assert second == first + 1 > seeded.tracks
    assert t1 <= t2 <= time.time()
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.track_id, e.detection_id FROM detections d JOIN embeddings e "
            "ON e.detection_id = d.id WHERE d.track_id IN (?, ?)",
            (first, second),
        ).fetchall()
    assert sorted(r[0] for r in rows) == [first, second]


def test_summary_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert summary(values) == {"p50": 50.0, "p95": 95.0, "max": 100.0}
    assert summary([3.0]) == {"p50": 3.0, "p95": 3.0, "max": 3.0}
    assert summary([]) is None


def test_a_missing_browser_or_playwright_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BrowserUnavailable, match="apt-get install chromium"):
        require_browser(tmp_path / "no-chromium")
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # import fails
    with pytest.raises(BrowserUnavailable, match=r"pip install 'semcom\[dashboard-bench\]'"):
        require_browser(tmp_path / "no-chromium")


def test_the_bench_decoder_rebuilds_the_seeded_crops_repeatably(
    seeded_db: tuple[str, Path, object], tmp_path: Path
) -> None:
    import asyncio
    import io

    from PIL import Image

    from cloud.catalog import Catalog
    from cloud.db import make_engine
    from cloud.decoder.config import DecoderConfig
    from cloud.decoder.service import open_decode_service
    from semcom.bench.dashboard_decoder import write_bench_decoder
    from semcom.bench.dashboard_seed import CODEC, ENCODER
    from shared.vectors import CodecSet

    url, _db, seeded = seeded_db
    first = write_bench_decoder(tmp_path / "a.pt", ENCODER, 384, CODEC, seed=0)
    again = write_bench_decoder(tmp_path / "b.pt", ENCODER, 384, CODEC, seed=0)
    assert first.space == "bench-synthetic-384"
    assert "untrained" in first.describe()
    assert first.to_dict()["trained"] is False
    assert (first.image_size, first.width) == (64, 16)  # `semcom cloud train-decoder` defaults
    engine = make_engine(url)
    pngs = []
    try:
        for decoder in (first, again):
            config = DecoderConfig(checkpoint=decoder.path, cache_size=0)
            service = open_decode_service(config, Catalog(engine), CodecSet())
            try:
                pngs.append(asyncio.run(service.png(seeded.embedded_detection)))
            finally:
                service.close()
    finally:
        engine.dispose()
    assert pngs[0] == pngs[1]  # seeded weights: the same crop every run
    crop = Image.open(io.BytesIO(pngs[0]))
    assert crop.size == (64, 64)
    assert len(pngs[0]) > 2000  # varied pixels (conv gain), not one flat grey
