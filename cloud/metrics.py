"""Prometheus metrics of the cloud service, on a registry per app (no global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector


@dataclass
class CloudMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        # process_resident_memory_bytes and friends (Linux /proc): the service's memory over time
        ProcessCollector(registry=r)
        self.signaling = Counter(
            "semcom_signaling_requests", "Session requests by outcome.", ["outcome"], registry=r
        )
        self.auth_failures = Counter(
            "semcom_auth_failures", "Refused session requests by reason.", ["reason"], registry=r
        )
        self.sessions = Gauge("semcom_sessions_active", "Connected edges.", registry=r)
        # Per edge: what arrived, what was new, what was a repeat, and the bytes.
        self.received = Counter("semcom_frames_received", "Frames received.", ["edge"], registry=r)
        self.received_bytes = Counter(
            "semcom_bytes_received", "Bytes of frames received.", ["edge"], registry=r
        )
        self.stored = Counter("semcom_frames_stored", "Frames stored (new).", ["edge"], registry=r)
        self.duplicates = Counter(
            "semcom_frames_duplicate", "Frames received again and ignored.", ["edge"], registry=r
        )
        self.lag = Gauge(
            "semcom_ingest_lag_seconds",
            "Capture-to-commit delay of the edge's latest committed frame.",
            ["edge"],
            registry=r,
        )
        self.backlog = Gauge(
            "semcom_edge_backlog",
            "Messages waiting on the edge (its heartbeat).",
            ["edge"],
            registry=r,
        )
        # Link health the edge reports in its heartbeats (protocol v3).
        self.edge_reconnects = Gauge(
            "semcom_edge_reconnects",
            "Uplink reconnects since the edge process started (its heartbeat).",
            ["edge"],
            registry=r,
        )
        self.edge_spool_bytes = Gauge(
            "semcom_edge_spool_bytes",
            "Bytes of frames the edge's spool holds for the cloud (its heartbeat).",
            ["edge"],
            registry=r,
        )
        self.errors = Counter(
            "semcom_errors_sent", "Error messages sent to edges by code.", ["code"], registry=r
        )
        # Codebooks pushed to edges (cloud/codebook_push.py).
        self.codebook_offers = Counter(
            "semcom_codebook_offers", "Codebooks offered to edges.", ["edge"], registry=r
        )
        self.codebook_chunk_bytes = Counter(
            "semcom_codebook_chunk_bytes", "Codebook bytes sent to edges.", ["edge"], registry=r
        )
        self.codebook_installs = Counter(
            "semcom_codebook_installs",
            "Codebooks edges verified and switched to (state: installed or refused).",
            ["edge", "state"],
            registry=r,
        )
        # The writer (group commit) and the index behind it.
        self.writer_pending = Gauge(
            "semcom_writer_pending_frames", "Frames waiting for the ingest writer.", registry=r
        )
        self.backpressure = Counter(
            "semcom_writer_backpressure",
            "Times a session had to wait because the writer was behind.",
            registry=r,
        )
        self.write_failures = Counter(
            "semcom_writer_failures",
            "Ingest transactions that failed (nothing acked).",
            registry=r,
        )
        self.commit_seconds = Histogram(
            "semcom_commit_seconds", "Duration of one ingest transaction.", registry=r
        )
        self.commit_frames = Histogram(
            "semcom_commit_frames",
            "Frames per ingest transaction.",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.index_vectors = Gauge(
            "semcom_index_vectors", "Vectors in the index by space.", ["space"], registry=r
        )
        self.index_lag = Gauge(
            "semcom_index_pending_vectors", "Committed vectors not indexed yet.", registry=r
        )
        self.index_staleness = Gauge(
            "semcom_index_staleness_seconds",
            "Replicas following the catalog: how old the catalog view the index reflects is "
            "(a vector any replica committed before that is searchable here); bounded by "
            "index.follow_s plus one poll's duration.",
            registry=r,
        )
        self.index_missing = Gauge(
            "semcom_index_missing_vectors",
            "Embeddings in the catalog but not in the index, by space (0 once converged; "
            "counted by the indexer within a second of adding, not per scrape).",
            ["space"],
            registry=r,
        )
        self.index_rejected = Counter(
            "semcom_index_rejected_vectors",
            "Catalog embeddings the index refused for good (zero or non-finite after decoding).",
            ["space"],
            registry=r,
        )
        self.retention_deleted = Counter(
            "semcom_retention_deleted",
            "Rows removed by retention, by table.",
            ["table"],
            registry=r,
        )
