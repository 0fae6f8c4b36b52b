"""The fault benchmark's ledger on the edge's side: the spool file and the log."""

from __future__ import annotations

from pathlib import Path

from edge.spool import Priority, Spool
from semcom.bench.fault_audit import evicted_seqs, index_missing, read_spool


def test_read_spool_counts_every_allocated_seq(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    for _ in range(5):
        spool.append(Priority.COUNTS, lambda seq: f"frame {seq}".encode())
    spool.ack([1, 2])
    spool.quarantine("refused by the cloud", [4])
    spool.close()
    ledger = read_spool(tmp_path / "s.db")
    assert ledger.produced == {1, 2, 3, 4, 5}
    assert ledger.pending == {3, 5}
    assert ledger.quarantined == {4}


def test_evictions_come_from_the_edge_log() -> None:
    log = (
        "2026-12-03 WARNING edge.spool: spool full: dropped COUNTS message seq 17\n"
        "2026-12-03 INFO edge.uplink: connected\n"
        "2026-12-03 WARNING edge.spool: spool full: dropped BOXES message seq 18\n"
    )
    assert evicted_seqs(log) == {17, 18}


def test_index_missing_prefers_the_exported_gauge() -> None:
    metrics = {
        'semcom_index_vectors{space="a"}': 90.0,
        'semcom_index_vectors{space="b"}': 5.0,
        'semcom_index_missing_vectors{space="a"}': 3.0,
    }
    out = index_missing(metrics, 98)
    assert out["index_missing"] == 3
    assert out["index_vectors"] == 95
    del metrics['semcom_index_missing_vectors{space="a"}']
    assert index_missing(metrics, 98)["index_missing"] == 3
    assert str(index_missing(metrics, 98)["index_missing_from"]).startswith("catalog")
