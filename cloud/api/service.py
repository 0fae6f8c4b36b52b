"""What each query does, without HTTP: blocking calls that the routes run in worker threads.

Errors from the catalog, the codecs, the image decoder and the index are turned into the API's
error tree here, where it is known which parameter caused them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloud.api import path_schemas, schemas, search_schemas
from cloud.api.deps import ApiDeps
from cloud.api.errors import Conflict, InvalidParameter, NotFound, Unavailable
from cloud.api.grouping import Exclusion, Grouping, nearest_groups
from cloud.api.images import ImageError, decode_image
from cloud.catalog_paths import TooManyBoxes, objects_in_view, track_path
from cloud.catalog_records import EmbeddingRecord, InvalidCursor
from cloud.index.base import Hit, SearchFilter
from cloud.index.errors import BackendUnavailable, IndexClosed, IndexProblem
from shared.errors import CodecError, UnknownCodec
from shared.vectors import VectorCodec

logger = logging.getLogger(__name__)

NO_ENCODER = "no query encoder configured (cloud config `encoder`)"


def make_filter(
    cameras: Sequence[int] | None,
    classes: Sequence[int] | None,
    from_us: int | None,
    to_us: int | None,
) -> SearchFilter | None:
    """The filter of the given conditions (None: none given); ``from`` after ``to`` is 422.

    The range is half-open, ``from <= time < to``; ``from == to`` is valid and matches
    nothing, as does an empty list of cameras or classes (the index's rule).
    """
    if from_us is not None and to_us is not None and from_us > to_us:
        raise InvalidParameter("to", "must not be before `from`")
    where = SearchFilter(
        cameras=None if cameras is None else tuple(dict.fromkeys(cameras)),
        classes=None if classes is None else tuple(dict.fromkeys(classes)),
        from_us=from_us,
        to_us=to_us,
    )
    return None if where.is_everything else where


def _unit(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """Decoded int8 / PQ codes are only nearly unit-norm; the index expects unit vectors."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), np.float32)


class QueryService:
    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps
        self.catalog = deps.catalog

    # ---------------------------------------------------------------- catalog

    def cameras(self) -> schemas.CameraList:
        return schemas.CameraList(cameras=[schemas.Camera.of(c) for c in self.catalog.cameras()])

    def detections(
        self, where: SearchFilter | None, limit: int, cursor: str | None
    ) -> schemas.DetectionPage:
        try:
            page = self.catalog.detections(where, limit, cursor)
        except InvalidCursor as exc:
            raise InvalidParameter("cursor", str(exc)) from None
        return schemas.DetectionPage(
            items=[schemas.Detection.of(d) for d in page.items], next_cursor=page.next_cursor
        )

    def detection(self, detection_id: int) -> schemas.Detection:
        found = self.catalog.detection(detection_id)
        if found is None:
            raise NotFound(f"no detection with id {detection_id}")
        return schemas.Detection.of(found)

    def track(self, track_id: int) -> schemas.Track:
        found = self.catalog.track(track_id)
        if found is None:
            raise NotFound(f"no track with id {track_id}")
        return schemas.Track.of(found)

    def track_path(self, track_id: int, step_ms: int) -> path_schemas.TrackPath:
        try:
            with self.catalog.engine.connect() as conn:
                found = track_path(conn, track_id, step_ms * 1000)
        except TooManyBoxes as exc:
            raise InvalidParameter("step_ms", f"{exc}: use a larger step") from None
        if found is None:
            raise NotFound(f"no track with id {track_id}")
        return path_schemas.TrackPath(
            track_id=track_id,
            step_ms=step_ms,
            boxes=[path_schemas.PathStep.of(b) for b in found],
        )

    def objects_in_view(
        self, cameras: list[int] | None, from_us: int, to_us: int, window_s: float
    ) -> path_schemas.ObjectsInView:
        if to_us <= from_us:
            raise InvalidParameter("to", "must be after from")
        window_us = round(window_s * 1e6)
        if window_us < 1:
            raise InvalidParameter("window_s", f"{window_s} is under one microsecond")
        try:
            with self.catalog.engine.connect() as conn:
                found = objects_in_view(conn, cameras, from_us, to_us, window_us)
        except TooManyBoxes as exc:
            raise InvalidParameter("window_s", f"{exc}: use a larger window") from None
        return path_schemas.ObjectsInView(
            window_s=window_s, windows=[path_schemas.ViewWindowOut.of(w) for w in found]
        )

    def stats(self) -> schemas.Stats:
        return schemas.Stats.of(self.catalog.stats(), self.catalog.spaces())

    def health(self) -> tuple[int, schemas.Health]:
        """200 when the database answers, else 503; the other parts are reported as given."""
        try:
            self.catalog.ping()
            database = "ok"
        except Exception as exc:  # any driver error means "not ready"; say which
            database = f"{type(exc).__name__}: {str(exc)[:200]}"
        try:
            details: dict[str, Any] = dict(self.deps.health())
        except Exception as exc:  # a failing probe is reported, not raised
            logger.warning("health probe failed: %s", exc)
            details = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        ok = database == "ok"
        health = schemas.Health(
            status="ok" if ok else "unavailable", database=database, details=details
        )
        return (200 if ok else 503), health

    # ---------------------------------------------------------------- search

    def search_detection(
        self,
        detection_id: int,
        k: int,
        where: SearchFilter | None,
        space: str | None,
        group: Grouping = "track",
        exclude_own_track: bool = True,
    ) -> search_schemas.SearchResponse:
        """Detections that look like detection ``detection_id``: with ``exclude_own_track``
        other objects only (its track and itself left out), else itself first, near 1."""
        stored = self.catalog.embedding(detection_id)
        if stored is None:
            if self.catalog.detection(detection_id) is None:
                raise NotFound(f"no detection with id {detection_id}")
            raise InvalidParameter(
                "detection_id",
                f"detection {detection_id} has no embedding (edges embed only some sightings "
                "of a track); search with another detection of its track or by image",
                code="no_embedding",
            )
        if space is not None and space != stored.space:
            raise InvalidParameter(
                "space",
                f"detection {detection_id} is embedded in {stored.space!r}, not {space!r}: "
                "vectors of different encoders do not compare",
            )
        try:
            vectors = self._codec(stored).decode(stored.code)
        except CodecError as exc:
            raise Conflict(
                f"the embedding of detection {detection_id} does not decode: {exc}",
                code="codec_unavailable",
            ) from None
        exclude = Exclusion()
        if exclude_own_track:
            query = self.catalog.detection(detection_id)
            track_id = None if query is None else query.track_id
            exclude = Exclusion(track_id=track_id, detection_id=detection_id)
        return self._search(stored.space, _unit(vectors), k, where, group, exclude)

    def search_image(
        self,
        data: bytes,
        k: int,
        where: SearchFilter | None,
        space: str | None,
        group: Grouping = "track",
    ) -> search_schemas.SearchResponse:
        """Detections that look like the object in a PNG/JPEG image (embedded here)."""
        encoder = self.deps.query_encoder
        if encoder is None:
            raise Conflict(NO_ENCODER, code="no_query_encoder")
        if space is not None and space != encoder.space:
            raise InvalidParameter(
                "space",
                f"the query encoder embeds images in {encoder.space!r}, not {space!r}",
            )
        try:
            image = decode_image(data)
        except ImageError as exc:
            raise InvalidParameter("image", str(exc), code="invalid_image") from None
        vectors = _unit(encoder.embed([image]))
        return self._search(encoder.space, vectors, k, where, group, Exclusion())

    def search_vectors(
        self, space: str, vectors: NDArray[np.float32], k: int, where: SearchFilter | None
    ) -> search_schemas.SearchResponse:
        """Detections nearest a query vector made elsewhere (a text embedding), one per track."""
        return self._search(space, _unit(vectors), k, where, "track", Exclusion())

    def _codec(self, stored: EmbeddingRecord) -> VectorCodec:
        """The codec of a stored code; built-in codecs are created from the catalog's record
        (a fresh process has seen no Hello yet), codebooks must be configured."""
        codecs = self.deps.codecs
        try:
            return codecs.resolve(stored.fingerprint)
        except UnknownCodec:
            pass
        try:
            return codecs.accept(stored.codec_id, stored.content_hash, stored.dim)
        except CodecError as exc:
            raise Conflict(
                f"codec {stored.codec_id!r} of detection {stored.detection_id} is not loaded "
                f"in this cloud (a codebook missing from the config's `codebooks`?): {exc}",
                code="codec_unavailable",
            ) from None

    def _search(
        self,
        space: str,
        vectors: NDArray[np.float32],
        k: int,
        where: SearchFilter | None,
        group: Grouping,
        exclude: Exclusion,
    ) -> search_schemas.SearchResponse:
        """The k best groups of one query vector (see :mod:`cloud.api.grouping`)."""
        searcher = self.deps.searcher
        if space not in searcher.spaces():
            raise NotFound(f"no index for embedding space {space!r}", code="unknown_space")

        def fetch(n: int) -> list[Hit]:
            return searcher.search(space, vectors, n, where)[0]

        try:
            found = nearest_groups(fetch, self.catalog.detections_by_ids, k, group, exclude)
        except KeyError:  # the index dropped the space since the check above
            raise NotFound(
                f"no index for embedding space {space!r}", code="unknown_space"
            ) from None
        except (BackendUnavailable, IndexClosed) as exc:
            raise Unavailable(f"the index is not available: {exc}") from None
        except IndexProblem as exc:  # e.g. a query of another width than the space's
            raise Conflict(f"the index refused the query: {exc}", code="index_error") from None
        return search_schemas.SearchResponse(
            space=space,
            random_init_encoder=self._random_init(space),
            group=group,
            excluded_track=exclude.track_id,
            excluded_detection=exclude.detection_id,
            candidates=found.candidates,
            hits=[
                search_schemas.Hit(
                    score=h.score,
                    track_id=h.detection.track_id,
                    sightings=h.sightings,
                    detection=schemas.Detection.of(h.detection),
                )
                for h in found.hits
            ],
        )

    def _random_init(self, space: str) -> bool:
        record = self.catalog.space(space)
        if record is not None:
            return record.random_init
        encoder = self.deps.query_encoder
        return encoder is not None and encoder.space == space and encoder.random_init
