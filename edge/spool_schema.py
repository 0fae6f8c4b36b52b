"""The spool file's SQLite schema, its upgrades, and how a Hello is kept in it.

A spool file holds the frames waiting for the cloud (``frames``), the Hellos they were made
under (``hellos``: a frame is sent only in a session announced with its own Hello), the frames
the cloud refused (``quarantine``: kept for an operator, never deleted silently), a counter of
seqs, and its identity (``meta``: the incarnation id made with the file, announced in Hello so
that the cloud can tell a new spool from the one whose seqs it stored; see docs/wire.md).

A file written before one of these existed is upgraded when it is opened: it gets an
incarnation, and its frames get a NULL Hello ("made under an unknown Hello").
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import uuid

import msgpack

from shared.errors import ProtocolError
from shared.messages import Hello
from shared.schema import pack_record, unpack_record

_TABLES = """
CREATE TABLE IF NOT EXISTS frames (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    size INTEGER NOT NULL,
    frame BLOB NOT NULL,
    created REAL NOT NULL DEFAULT 0,
    hello INTEGER
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hellos (
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    hello BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    size INTEGER NOT NULL,
    frame BLOB NOT NULL,
    created REAL NOT NULL,
    hello INTEGER,
    reason TEXT NOT NULL,
    quarantined REAL NOT NULL
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS frames_by_priority ON frames (priority, seq);
CREATE INDEX IF NOT EXISTS frames_by_hello ON frames (hello, priority, seq);
"""
#: Columns added to ``frames`` since the first spool files, with their definitions.
_ADDED = {"created": "REAL NOT NULL DEFAULT 0", "hello": "INTEGER"}


def prepare(db: sqlite3.Connection) -> str:
    """Create or upgrade the schema; returns the file's incarnation id (made if missing)."""
    db.executescript(_TABLES)
    columns = {row[1] for row in db.execute("PRAGMA table_info(frames)")}
    for name, definition in _ADDED.items():
        if name not in columns:
            db.execute(f"ALTER TABLE frames ADD COLUMN {name} {definition}")
    db.executescript(_INDEXES)
    # INSERT OR IGNORE: two processes opening a new file agree on the first id written.
    db.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('incarnation', ?)", (uuid.uuid4().hex,)
    )
    return str(db.execute("SELECT value FROM meta WHERE name = 'incarnation'").fetchone()[0])


def hello_blob(hello: Hello) -> tuple[bytes, bytes]:
    """A Hello as kept in the spool (msgpack of its fields, without the spool id, which is
    the spool's and added when it is sent) and its content hash (sha256)."""
    blob = msgpack.packb(pack_record(dataclasses.replace(hello, spool_id="")), use_bin_type=True)
    return blob, hashlib.sha256(blob).digest()


def hello_from_blob(blob: bytes) -> Hello:
    """The Hello :func:`hello_blob` kept; raises :class:`ProtocolError` if it is damaged."""
    try:
        items = msgpack.unpackb(blob, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"damaged Hello in the spool: {exc}") from None
    return unpack_record(Hello, items, "Hello")
