"""The vector index converges to the catalog after a crash: a real ``semcom cloud serve``
SIGKILLed during ingest (its faiss files saved a moment before, so older than the catalog),
restarted on the same data, drained; then every catalog embedding is indexed once and
``semcom_index_missing_vectors`` says 0. The edge's stream makes ids reach the index out of
order, as real traffic does: two codecs, and boxes that arrive before their embeddings."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.pipeline import Outbox
from edge.sink import FileSink
from shared.messages import Detections, Embedding, Envelope
from tests.uplink.conftest import EDGE, Cloud, EdgeThread, uplink_config, wait_for, write_stream

pytestmark = [pytest.mark.uplink, pytest.mark.slow]


def _gauges(cloud: Cloud) -> dict[str, dict[str, float]]:
    """``{metric name: {space label: value}}`` of the cloud's /metrics."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(cloud.metrics()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[sample.labels.get("space", "")] = sample.value
    return out


def _catalog_embeddings(cloud: Cloud) -> int:
    with sqlite3.connect(f"file:{cloud.db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])


def _boxes_first(envs: list[Envelope], path: Path) -> int:
    """The stream again, with the box of each embedding's sighting sent one embedding early:
    the cloud files the box as a detection row, and the embedding joins that row later, so
    its id is below ids already indexed (as when a box outruns its embedding). Returns the
    number of messages."""
    data = [e for e in envs if e.seq != 0]
    sightings = [e for e in data if isinstance(e.message, Embedding)]
    early = {id(a): b for a, b in itertools.pairwise(sightings)}
    outbox = Outbox(EDGE, sink := FileSink(path))
    for env in data:
        if id(env) in early:
            nxt = early[id(env)]
            m = nxt.message
            assert isinstance(m, Embedding)
            box = Detections(m.camera, (m.box,), (m.class_id,), (0.9,), (m.track_id,))
            outbox.put(nxt.capture_ts_us, box)
        outbox.put(env.capture_ts_us, env.message)
    sink.close()
    return len(data) + len(early)


def _saved(cloud: Cloud) -> bool:
    return any((cloud.workdir / "semcom-data" / "index").glob("*/manifest.json"))


def test_index_matches_the_catalog_after_a_sigkill_during_ingest(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEMCOM_CLOUD__INDEX__SAVE_EVERY_S", "0.3")
    cloud.start()
    envs = write_stream(tmp_path / "scene.smf", seconds=10.0)
    stream = tmp_path / "stream.smf"
    messages = _boxes_first(envs, stream)
    # Two rungs: the outage's backlog is encoded with int8, the rest with f16, and commits
    # that mix them hand the index ids out of order (grouped by codec).
    config = uplink_config(cloud, tmp_path, ladder=["f16", "int8"])
    edge = EdgeThread(config, file=stream, rate=messages / 6.0)
    edge.start()
    wait_for(lambda: _saved(cloud) and len(cloud.stored()) >= messages // 3, 30, "a save")
    cloud.kill()  # the saved index now lags the catalog: the normal crash case
    killed_at = _catalog_embeddings(cloud)
    time.sleep(2.0)
    cloud.start()
    edge.join(90)
    assert edge.error is None, edge.error
    assert edge.report is not None
    assert edge.report.left_in_spool == 0
    stored = _catalog_embeddings(cloud)
    assert stored > killed_at > 0

    def converged() -> bool:
        gauges = _gauges(cloud)
        indexed = sum(gauges.get("semcom_index_vectors", {}).values())
        missing = gauges.get("semcom_index_missing_vectors", {"": -1.0})
        return indexed == stored and all(v == 0 for v in missing.values())

    try:
        wait_for(converged, 20, "index == catalog")
    except AssertionError:
        gauges = _gauges(cloud)
        indexed, missing = (
            gauges.get(k) for k in ("semcom_index_vectors", "semcom_index_missing_vectors")
        )
        raise AssertionError(f"catalog {stored}, indexed {indexed}, missing {missing}") from None
    log = cloud.log.read_text()
    assert "indexing failed" not in log
