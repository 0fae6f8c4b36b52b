"""The cloud's one SQL schema (SQLAlchemy Core): journal, catalog, descriptions and jobs.

The tables here are the model; ``cloud/migrations`` holds the Alembic revisions that build
them in a database (a test checks the two agree). Times are microseconds since the Unix epoch
(``*_us``, int64), boxes are normalised to [0, 1] of the frame.

- ``journal_frames`` / ``journal_watermarks``: every frame an edge sent, once, keyed by
  (edge id, seq): the exactly-once ledger the acks rest on; per edge, the watermark, the
  highest seq ever stored and the spool incarnation they came from (migration ``0003``).
- ``edges``, ``cameras``, ``spaces`` (one per encoder: vectors of different encoders never
  mix), ``codecs`` (what an embedding's code needs to be decoded again).
- ``tracks``, ``detections`` (every box: from per-frame ``Detections`` and from embeddings),
  ``embeddings`` (the encoded vector of a detection, the source of truth for any index),
  ``frame_counts`` (objects per class and frame).
- ``ui_sessions``: the dashboard's signed-in browser sessions (hashed ids, CSRF tokens), in
  the database so that sign-out ends a session on every replica (migration ``0004``).
- ``descriptions`` (what the describer wrote about a camera and time window) and ``jobs``
  (persisted work such as describer runs). Full-text search of descriptions uses objects
  outside this model, made by migration ``0002`` (see :mod:`cloud.describe.fts`).
- ``scenes`` (each camera's analytics scenes, newest current, history kept),
  ``analytics_events`` (what :mod:`cloud.analytics` found in the tracks, once per event key),
  ``analytics_progress`` (the analytics runner's watermark per camera) and
  ``alert_dead_letters`` (alerts that could not be delivered), from migration ``0005``.
- ``alert_cursors`` and ``alert_quiet``: the alert dispatcher's position in the events and
  its rules' quiet periods (migration ``0006``).
- ``congestion_windows``: per camera, zone and time window, the occupancy, mean speed and
  congestion level (:mod:`cloud.analytics.congestion_store`), with the analytics runner's
  closed-window frontier in ``analytics_progress.congestion_us`` (migration ``0007``).
- ``codebooks``: PQ codebooks the cloud fitted for an encoder space, by content hash, pushed
  to that space's edges (:mod:`cloud.codebooks`, migration ``0008``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.exc import DBAPIError

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

journal_frames = Table(
    "journal_frames",
    metadata,
    Column("edge_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("type", SmallInteger, nullable=False),
    Column("capture_ts_us", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Column("frame", LargeBinary, nullable=False),
    Index(None, "capture_ts_us"),
)

journal_watermarks = Table(
    "journal_watermarks",
    metadata,
    Column("edge_id", String(64), primary_key=True),
    Column("watermark", BigInteger, nullable=False),
    # the spool incarnation the edge's last stored frames came from, and the highest seq ever
    # stored (retention never lowers it): what a HelloAck tells a reset or replaced spool
    Column("spool_id", String(64), nullable=False, server_default=""),
    Column("max_seq", BigInteger, nullable=False, server_default="0"),
)

edges = Table(
    "edges",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("software_version", String(64), nullable=False),
    Column("detector", String(128), nullable=False),
    Column("encoder", String(128), nullable=False),
    Column("embedding_dim", Integer, nullable=False),
    Column("random_init_encoder", Boolean, nullable=False),
    Column("first_seen_us", BigInteger, nullable=False),
    Column("last_seen_us", BigInteger, nullable=False),
)

cameras = Table(
    "cameras",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("edge_id", String(64), ForeignKey("edges.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("fps", Float, nullable=True),
    Column("first_seen_us", BigInteger, nullable=False),
    UniqueConstraint("edge_id", "name"),
)

spaces = Table(
    "spaces",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("encoder", String(128), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("random_init", Boolean, nullable=False),
)

codecs = Table(
    "codecs",
    metadata,
    Column("fingerprint", BigInteger, primary_key=True, autoincrement=False),
    Column("codec_id", String(64), nullable=False),
    Column("content_hash", LargeBinary(32), nullable=False),
    Column("dim", Integer, nullable=False),
)

tracks = Table(
    "tracks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("camera_id", Id, ForeignKey("cameras.id"), nullable=False),
    Column("local_id", BigInteger, nullable=False),  # the edge tracker's id
    Column("class_id", Integer, nullable=True),
    Column("first_seen_us", BigInteger, nullable=False),
    Column("last_seen_us", BigInteger, nullable=False),
    Column("frames", Integer, nullable=True),  # from TrackEnd
    Column("ended", Boolean, nullable=False),
    Column("class_votes", JSON, nullable=True),
    Column("path", JSON, nullable=True),  # sampled boxes [[x1, y1, x2, y2], ...]
    # when the ingest writer last changed the track or gave it a sighting (its clock, not
    # capture time): the analytics runner's change feed (migration ``0005``)
    Column("updated_us", BigInteger, nullable=False, server_default="0"),
    Index(None, "camera_id", "local_id"),
    Index(None, "last_seen_us"),
    Index(None, "camera_id", "updated_us"),
)

detections = Table(
    "detections",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("camera_id", Id, ForeignKey("cameras.id"), nullable=False),
    Column("track_id", Id, ForeignKey("tracks.id"), nullable=True),
    Column("ts_us", BigInteger, nullable=False),
    Column("class_id", Integer, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("x1", Float, nullable=False),
    Column("y1", Float, nullable=False),
    Column("x2", Float, nullable=False),
    Column("y2", Float, nullable=False),
    Column("edge_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),  # the journal frame it came from
    Column("has_embedding", Boolean, nullable=False),
    # a point of a TrackSummary's simplified path: boxes between two are interpolated when
    # read (migration ``0009``)
    Column("path_point", Boolean, nullable=False, server_default=false()),
    Index(None, "camera_id", "ts_us"),
    Index(None, "ts_us"),
    Index(None, "track_id"),
)

embeddings = Table(
    "embeddings",
    metadata,
    Column("detection_id", Id, ForeignKey("detections.id"), primary_key=True),
    Column("space_id", Id, ForeignKey("spaces.id"), nullable=False),
    Column("codec", BigInteger, ForeignKey("codecs.fingerprint"), nullable=False),
    Column("reason", SmallInteger, nullable=False),
    Column("code", LargeBinary, nullable=False),
    Index(None, "space_id", "detection_id"),
)

frame_counts = Table(
    "frame_counts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("camera_id", Id, ForeignKey("cameras.id"), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("class_id", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    Index(None, "camera_id", "ts_us"),
)

descriptions = Table(
    "descriptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("camera_id", Id, ForeignKey("cameras.id"), nullable=True),
    Column("from_us", BigInteger, nullable=False),
    Column("to_us", BigInteger, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("describer", String(128), nullable=False),  # model name, or "rules"
    Column("summary", Text, nullable=False),
    Column("body", JSON, nullable=False),  # the validated structured output
    Index(None, "camera_id", "from_us"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # queued, running, done, failed
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before_us", BigInteger, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("error", Text, nullable=True),
    Column("key", String(200), nullable=True),  # dedupe: one job per (kind, key), e.g. a window
    Index(None, "state", "not_before_us"),
    Index(None, "kind", "key", unique=True),
)


ui_sessions = Table(
    "ui_sessions",
    metadata,
    # SHA-256 of the session id in the cookie: a stolen database holds no usable session
    Column("id_sha256", LargeBinary(32), primary_key=True),
    Column("client", String(64), nullable=False),  # the api_tokens entry that signed in
    Column("csrf", String(64), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Index(None, "expires_us"),
)

scenes = Table(
    "scenes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("camera_id", Id, ForeignKey("cameras.id"), nullable=False),
    Column("version", String(16), nullable=False),  # cloud.analytics.scene.Scene.version
    Column("body", JSON, nullable=False),  # the validated scene, defaults filled in
    Column("created_us", BigInteger, nullable=False),
    Index(None, "camera_id", "id"),  # the newest row of a camera is its current scene
)

# No foreign key to tracks: retention deletes tracks when their detections are gone, events by
# their own time. A zone's congestion change (kind "congestion") belongs to no track: its
# track_id is minus the camera id (cloud.analytics.congestion_store).
analytics_events = Table(
    "analytics_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("camera_id", Id, ForeignKey("cameras.id"), nullable=False),
    Column("track_id", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),  # cloud.analytics.events.EventKind, congestion
    Column("subject", String(64), nullable=False),  # line or zone name; "" for speed
    Column("ordinal", Integer, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("class_id", Integer, nullable=True),
    Column("direction", String(8), nullable=True),  # in / out (line crossings)
    Column("value", Float, nullable=True),  # speed, dwell (s), wrong-way distance
    Column("unit", String(32), nullable=True),
    Column("scene_version", String(64), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("details", JSON, nullable=True),
    UniqueConstraint("track_id", "kind", "subject", "ordinal"),
    Index(None, "camera_id", "at_us"),
    Index(None, "kind", "at_us"),
    Index(None, "at_us"),  # retention (migration 0007)
)

analytics_progress = Table(
    "analytics_progress",
    metadata,
    Column("camera_id", Id, ForeignKey("cameras.id"), primary_key=True, autoincrement=False),
    # tracks.updated_us up to which this camera's tracks are analysed
    Column("watermark_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    # congestion windows ending at or before it are closed (final); migration 0007
    Column("congestion_us", BigInteger, nullable=True),
)

alert_dead_letters = Table(
    "alert_dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rule", String(128), nullable=False),
    Column("target", String(512), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("last_attempt_us", BigInteger, nullable=False),
    Column("replayed_us", BigInteger, nullable=True),
    Index(None, "created_us"),
)

# A zone's congestion per time window, one row per (camera, zone, window start) that had a
# vehicle in it (cloud.analytics.congestion_store), migration 0007.
congestion_windows = Table(
    "congestion_windows",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("camera_id", Id, ForeignKey("cameras.id"), nullable=False),
    Column("zone", String(64), nullable=False),
    Column("start_us", BigInteger, nullable=False),  # aligned to the epoch
    Column("window_us", BigInteger, nullable=False),
    Column("occupancy", Float, nullable=False),  # mean vehicles present over the window
    Column("mean_speed", Float, nullable=True),  # none: no vehicle with a measured speed
    Column("speed_unit", String(32), nullable=False),  # km/h or image_widths/s
    Column("vehicles", Integer, nullable=False),  # distinct vehicles present
    Column("level", String(8), nullable=False),  # free, slow, jammed, unknown
    Column("provisional", Boolean, nullable=False),  # the window is still open
    Column("scene_version", String(64), nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    UniqueConstraint("camera_id", "zone", "start_us"),
    Index(None, "start_us"),
)

# The alert dispatcher's position in analytics_events (cloud.alerts.dispatcher), migration 0006.
alert_cursors = Table(
    "alert_cursors",
    metadata,
    Column("name", String(64), primary_key=True),  # one per dispatcher ("default")
    Column("event_id", BigInteger, nullable=False),  # the last event id handled
    Column("updated_us", BigInteger, nullable=False),
)

# Per alert rule, camera and subject (line or zone), the event time of the last alert: the
# rule's quiet period runs from it (migration 0006).
alert_quiet = Table(
    "alert_quiet",
    metadata,
    Column("rule", String(128), primary_key=True),
    Column("camera_id", BigInteger, primary_key=True, autoincrement=False),
    Column("subject", String(64), primary_key=True),
    Column("last_at_us", BigInteger, nullable=False),
)

# Codebooks the cloud fitted (cloud.codebooks), by content hash: the .npz file an edge is sent,
# for the encoder space (encoder name, dim) whose embeddings it was fitted on (migration 0008).
codebooks = Table(
    "codebooks",
    metadata,
    Column("content_hash", LargeBinary(32), primary_key=True),
    Column("codec_id", String(64), nullable=False),
    Column("space", String(200), nullable=False),  # the space name (encoder-dim...)
    Column("encoder", String(128), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("file", LargeBinary, nullable=False),  # the PQCodec.save bytes
    Column("info", JSON, nullable=False),  # how it was fitted, held-out recall
    Column("created_us", BigInteger, nullable=False),
    Index(None, "space"),
)


def bulk_insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, object]]) -> None:
    """Insert many rows of plain columns (no JSON) in one go, inside ``conn``'s transaction.

    SQLite: one executemany straight to the driver (SQLAlchemy's per-row parameter processing
    was a third of the ingest writer's time). PostgreSQL with psycopg: ``COPY ... FROM STDIN``
    on the same connection (a quarter of an executemany's client CPU per row, and less server
    work); its errors are raised as SQLAlchemy's (:class:`~sqlalchemy.exc.IntegrityError` for
    a key conflict, ...), as a Core insert raises them. Other databases take the Core path.
    """
    if not rows:
        return
    cols = list(rows[0])
    # itemgetter of several keys returns the tuple, in C
    values = [(r[cols[0]],) for r in rows] if len(cols) == 1 else list(map(itemgetter(*cols), rows))
    names = ", ".join(cols)
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(cols))
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", values)
    elif conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy(conn, f"COPY {table.name} ({names}) FROM STDIN", values)
    else:
        conn.execute(table.insert(), list(rows))


def _copy(conn: Connection, sql: str, values: Sequence[Sequence[object]]) -> None:
    dbapi = conn.dialect.loaded_dbapi
    driver: Any = conn.connection.driver_connection  # a psycopg.Connection
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in values:
                copy.write_row(row)
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi.Error) from exc
