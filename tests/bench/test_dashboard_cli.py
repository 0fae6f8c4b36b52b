"""``semcom bench dashboard`` end to end: a seeded cloud, headless Chromium, the live feed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from semcom.bench.dashboard_browser import CHROMIUM

PAGES = {
    "overview", "live", "explore", "explore_text", "explore_similar", "track", "descriptions",
    "link",
}  # fmt: skip
FIELDS = {
    "benchmark", "detections", "tracks", "embeddings", "descriptions", "rounds", "warmup",
    "browser", "catalog", "cloud", "how", "machine", "pages", "live", "offsite_requests",
    "offsite_urls", "page_errors", "targets", "worst_page_p95_ms", "complete", "ok", "seconds",
}  # fmt: skip
CROP_PAGES = {"live", "explore", "explore_similar", "track"}  # galleries of embedded detections


@pytest.mark.slow
@pytest.mark.browser
def test_bench_dashboard_small_run_reports_every_page_and_every_live_track(
    tmp_path: Path,
) -> None:
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found: the bench drives Debian's chromium package")
    pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    cmd = [sys.executable, "-m", "semcom", "bench", "dashboard", "--detections", "2000"]
    cmd += ["--rounds", "2", "--live-tracks", "5", "--descriptions", "40", "--json"]
    cmd += ["--keep", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.stdout, done.stderr[-4000:]
    doc = json.loads(done.stdout)
    where = f"(files in {tmp_path}): {done.stdout[:3000]}"
    assert set(doc) == FIELDS, where
    assert doc["benchmark"] == "dashboard", where
    assert doc["detections"] == 2000, where
    assert doc["tracks"] > 100, where
    assert doc["embeddings"] > 300, where
    assert doc["descriptions"] == 40, where
    assert doc["cloud"]["index_vectors"] == doc["embeddings"], where
    assert doc["browser"].lower().startswith("chromium"), where
    assert set(doc["pages"]) == PAGES, where
    for name, page in doc["pages"].items():
        assert page["loads"] == 2, name
        ms = page["document_ms"]
        assert ms is not None, name
        assert 0 < ms["p50"] <= ms["p95"] <= ms["max"], name
        assert page["static_requests"] >= 2, name  # the stylesheet and the script, every load
        # the untrained decoder (on by default) serves every crop: each one a timed request
        assert page["crops_rebuilt"] == page["crop_images"] == page["data_requests"], name
        if name in CROP_PAGES:
            assert page["data_requests"] > 0, name
            assert 0 < page["data_ms"]["p50"] <= page["data_ms"]["max"], name
    assert doc["cloud"]["decoder"].startswith("untrained (random weights, seed 0)"), where
    assert doc["page_errors"] == [], where
    live = doc["live"]
    assert live["tracks"] == live["arrived"] == 5, where
    assert live["missing"] == [], where
    assert 0 < live["delay_ms"]["p50"] <= live["delay_ms"]["max"], where
    assert doc["offsite_requests"] == 0, where
    assert doc["complete"] is True, where
    assert doc["targets"] == {"page_p95_ms": 300.0, "live_p95_ms": 2000.0}, where
    assert done.returncode == 0, done.stderr[-4000:]
