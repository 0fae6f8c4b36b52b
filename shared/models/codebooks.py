"""Codebooks that ship with an encoder in the models manifest (``codebook:`` of an entry).

Such a codebook is fitted on generic crops of that encoder, so an edge can send PQ codes from
its first frame instead of int8 until its cloud has fitted one of its own. Its file lies next to
the model's in the models directory (``semcom models import FILE --as NAME`` places the model;
the codebook file is copied beside it), and it is used only when its content hash is the one the
manifest gives. The edge starts on it (``edge.daemon``); the cloud adds every one present in
its models directory to the codecs it decodes (``cloud.app``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from shared.errors import CodebookError
from shared.models.manifest import Manifest, ModelEntry, load_manifest
from shared.models.store import ModelStore
from shared.pq import PQCodec, load_codebook

logger = logging.getLogger(__name__)


def codebook_path(entry: ModelEntry, store: ModelStore) -> Path | None:
    """Where ``entry``'s codebook lies in the models directory (None: it has none)."""
    if entry.codebook is None:
        return None
    return store.root / entry.store_key / entry.codebook.file


def shipped_codebook(
    name: str, models_dir: Path | None = None, manifest: Manifest | None = None
) -> PQCodec | None:
    """The codebook of the manifest encoder ``name`` when its file is provisioned; None when
    ``name`` is no manifest encoder, has no codebook, or its file is absent.

    Raises :class:`~shared.errors.CodebookError` when the file is there but is not the
    manifest's codebook (another content hash, or damaged): never used silently.
    """
    store = ModelStore(models_dir, manifest or load_manifest())
    entry = store.manifest.get(name)
    if entry is None or entry.kind != "encoder" or entry.codebook is None:
        return None
    path = codebook_path(entry, store)
    assert path is not None
    if not path.is_file():
        logger.info("encoder %s: its codebook %s is not provisioned", name, path)
        return None
    book = load_codebook(path)
    if book.content_hash.hex() != entry.codebook.content_hash:
        raise CodebookError(
            str(path),
            f"content hash {book.content_hash.hex()[:16]}... is not the manifest's "
            f"{entry.codebook.content_hash[:16]}... for {name}",
        )
    if entry.dim is not None and book.dim != entry.dim:
        raise CodebookError(str(path), f"encodes dim {book.dim}, {name} gives {entry.dim}")
    return book


def shipped_codebooks(
    models_dir: Path | None = None, manifest: Manifest | None = None
) -> list[PQCodec]:
    """Every manifest encoder's codebook that is provisioned (for the cloud's codec set)."""
    found = load_manifest() if manifest is None else manifest
    books = []
    for entry in found:
        if entry.codebook is not None:
            book = shipped_codebook(entry.name, models_dir, found)
            if book is not None:
                books.append(book)
    return books
