"""``semcom bench faults`` end to end: real cloud and edge processes, killed and cut."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.uplink]


def test_bench_faults_loses_nothing_on_both_transports(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "semcom", "bench", "faults", "--seconds", "20", "--every", "4"]
    cmd += ["--seed", "0", "--json", "--keep", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.stdout, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert [r["transport"] for r in result["runs"]] == ["webrtc", "websocket"]
    for run in result["runs"]:
        where = f"{run['transport']} (files in {tmp_path}): {json.dumps(run)}"
        assert run["produced"] > 100, where
        assert run["kills"] >= 1, where
        assert run["lost"] == 0, where
        assert run["duplicated"] == 0, where
        assert run["index_missing"] == 0, where
        assert run["left_in_spool"] == 0, where
        assert run["stored"] == run["produced"] - run["quarantined"], where
    assert result["ok"] is True
    assert done.returncode == 0, done.stderr[-4000:]
