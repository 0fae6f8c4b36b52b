"""Files of one faiss-backend index: incremental, atomic saves; loading on open.

The indexer saves every few seconds, so a save must cost what was added since the last one,
not the whole index (3 GB at 1M x 384: the IVF lists and the stored vectors). Layout, in one
directory per space::

    manifest.json            the commit point: everything else is named from here
    seg-<layout>-<start>.npz rows [start, start + n) of one layout: ids, cameras, classes,
                             ts_us, vectors (float16; earlier versions wrote float32, which
                             still loads) (append-only)
    alive-<uuid>.npy         the tombstone flags of every row (1 bit per row, packed)
    structure-<uuid>.faiss   IVF: the trained, empty index (centroids only); HNSW: the graph

Vectors are stored once, in the segments; the IVF lists are rebuilt on open by assigning the
stored vectors to the saved centroids (~5 s per million on two cores), which is cheaper than
writing the lists on every save. A *layout* is one numbering of positions; a compaction
renumbers them, so the next save writes all rows as new segments of a new layout. Each file
is written under a temporary name, fsynced and renamed (``os.replace``); the manifest is
replaced last, so a crash leaves the previous save intact; files it does not name are
deleted after each save and on open. Many segments (a long-running index saved often) are
merged into one by the save that finds more than :data:`MAX_SEGMENTS`. One process owns a
directory at a time (the cloud's indexer); nothing locks it against a second one.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from cloud.index import faiss_ops as ops
from cloud.index.batch import Batch
from cloud.index.columns import Columns
from cloud.index.errors import DimensionMismatch, IndexStorageError

FORMAT: Final = 1
MANIFEST: Final = "manifest.json"
MAX_SEGMENTS: Final = 32


@dataclass
class Manifest:
    space: str
    dim: int
    kind: str  # "flat", "ivf" or "hnsw"
    last_id: int
    trained_at: int  # live vectors when the IVF was trained (0: not IVF)
    layout: str
    segments: list[tuple[str, int]] = field(default_factory=list)  # (file, rows)
    alive: str | None = None
    structure: str | None = None
    format: int = FORMAT

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.segments)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def write_segment(directory: Path, layout: str, cols: Columns, start: int, stop: int) -> str:
    name = f"seg-{layout}-{start}.npz"
    tmp = directory / f".{name}.tmp"
    with open(tmp, "wb") as f:
        np.savez(
            f,
            ids=cols.ids[start:stop],
            cameras=cols.cameras[start:stop],
            classes=cols.classes[start:stop],
            ts_us=cols.ts[start:stop],
            vectors=cols.vectors[start:stop],
        )
    _publish(tmp, directory / name)
    return name


def write_alive(directory: Path, cols: Columns) -> str:
    name = f"alive-{uuid.uuid4().hex}.npy"
    tmp = directory / f".{name}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.packbits(cols.alive, bitorder="little"))
    _publish(tmp, directory / name)
    return name


def write_structure(directory: Path, index: Any) -> str:
    name = f"structure-{uuid.uuid4().hex}.faiss"
    tmp = directory / f".{name}.tmp"
    ops.faiss.write_index(index, str(tmp))
    _publish(tmp, directory / name)
    return name


def commit(directory: Path, manifest: Manifest) -> None:
    """Make ``manifest`` the saved state, then delete every file it does not name."""
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(asdict(manifest)))
    _publish(tmp, directory / MANIFEST)
    _fsync_dir(directory)
    sweep(directory, manifest)


def sweep(directory: Path, manifest: Manifest | None) -> None:
    keep = {MANIFEST}
    if manifest is not None:
        keep |= {name for name, _ in manifest.segments}
        keep |= {n for n in (manifest.alive, manifest.structure) if n}
    for path in directory.iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink(missing_ok=True)


def read_manifest(directory: Path) -> Manifest | None:
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        raw["segments"] = [(str(name), int(n)) for name, n in raw["segments"]]
        manifest = Manifest(**raw)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise IndexStorageError(path, f"unreadable manifest: {exc}") from None
    if manifest.format != FORMAT:
        raise IndexStorageError(path, f"format {manifest.format}, this build reads {FORMAT}")
    return manifest


def read_columns(directory: Path, manifest: Manifest) -> Columns:
    """The saved rows, appended segment by segment (one segment in memory at a time)."""
    cols = Columns(manifest.dim, manifest.rows)
    try:
        for name, rows in manifest.segments:
            with np.load(directory / name, allow_pickle=False) as seg:
                batch = Batch(
                    ids=seg["ids"].astype(np.int64),
                    vectors=seg["vectors"],  # float16; float32 in files of earlier versions
                    cameras=seg["cameras"].astype(np.int32),
                    classes=seg["classes"].astype(np.int32),
                    ts_us=seg["ts_us"].astype(np.int64),
                )
            if len(batch) != rows or batch.vectors.shape[1:] != (manifest.dim,):
                raise ValueError(f"{name} holds {batch.vectors.shape}, expected {rows} rows")
            cols.write_tail(batch)
            cols.publish(batch.vectors)
        if manifest.alive is not None:
            bits = np.load(directory / manifest.alive, allow_pickle=False)
            alive = np.unpackbits(bits, count=cols.n, bitorder="little").astype(np.bool_)
            cols.kill(np.flatnonzero(~alive).astype(np.int64))
    except (OSError, ValueError, KeyError) as exc:
        raise IndexStorageError(directory, f"unreadable index files: {exc}") from None
    return cols


def read_structure(directory: Path, manifest: Manifest) -> Any | None:
    if manifest.structure is None:
        return None
    path = directory / manifest.structure
    try:
        return ops.faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexStorageError(path, f"unreadable faiss index: {exc}") from None


@dataclass(frozen=True)
class Snapshot:
    """The state one save writes (taken under the index's writer lock)."""

    space: str
    dim: int
    last_id: int
    trained_at: int
    layout: str
    cols: Columns
    index: Any  # the faiss index
    structure_changed: bool  # since the previous save


def save(directory: Path, now: Snapshot, previous: Manifest | None) -> Manifest:
    """Write what changed since ``previous`` and commit; returns the new manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    cols, layout = now.cols, now.layout
    segments = list(previous.segments) if previous and previous.layout == layout else []
    done = sum(n for _, n in segments)
    if cols.n > done:
        segments.append((write_segment(directory, layout, cols, done, cols.n), cols.n - done))
    if len(segments) > MAX_SEGMENTS:
        layout = uuid.uuid4().hex
        segments = [(write_segment(directory, layout, cols, 0, cols.n), cols.n)]
    kind = ops.kind_of(now.index)
    structure = previous.structure if previous and not now.structure_changed else None
    if structure is None and kind != "flat":
        to_write = ops.trained_empty(now.index, cols, 0) if kind == "ivf" else now.index
        structure = write_structure(directory, to_write)
    manifest = Manifest(
        space=now.space,
        dim=now.dim,
        kind=kind,
        last_id=now.last_id,
        trained_at=now.trained_at,
        layout=layout,
        segments=segments,
        alive=write_alive(directory, cols) if cols.dead else None,
        structure=structure,
    )
    commit(directory, manifest)
    return manifest


@dataclass(frozen=True)
class Loaded:
    manifest: Manifest
    cols: Columns
    index: Any  # the faiss index, filled


def load(directory: Path, space: str, dim: int) -> Loaded | None:
    """The saved index of ``space`` in ``directory``; None when nothing was committed."""
    manifest = read_manifest(directory)
    if manifest is None:
        sweep(directory, None)  # a first save that never committed
        return None
    if manifest.space != space:
        raise IndexStorageError(directory, f"holds space {manifest.space!r}, not {space!r}")
    if manifest.dim != dim:
        raise DimensionMismatch(space, manifest.dim, dim, f"open {directory}")
    cols = read_columns(directory, manifest)
    stored = read_structure(directory, manifest)
    if manifest.kind == "flat":
        index = None  # Flat is the columns alone
    elif manifest.kind == "ivf" and stored is not None:
        index = ops.trained_empty(stored, cols, 0)  # 8-bit lists, also for an earlier IVF-Flat
        ops.fill(index, cols)
    elif manifest.kind == "hnsw" and stored is not None and stored.ntotal == cols.n:
        index = stored
    else:
        raise IndexStorageError(directory, f"no usable {manifest.kind} structure for the rows")
    sweep(directory, manifest)
    return Loaded(manifest, cols, index)
