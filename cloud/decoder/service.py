"""On-demand decoding: detection ids -> rebuilt crops as PNG bytes, batched and cached.

Pixels are never stored by the cloud: a crop is rebuilt from the detection's stored code when
somebody asks, kept in a bounded in-memory LRU of PNG bytes (keyed by detection id), and
forgotten on restart.

Requests are served by one worker thread (never the event loop): it takes the first queued
request, waits up to ``batch_wait_ms`` for more (at most ``max_batch``), reads each detection's
code from the catalog, decodes the codes, runs the decoder once for the whole batch and encodes
PNGs with Pillow. Concurrent requests for the same id share one job. Callers await
:meth:`DecodeService.png` / :meth:`DecodeService.png_for` from any event loop.
"""

from __future__ import annotations

import asyncio
import io
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from cloud.catalog_records import EmbeddingRecord
from cloud.decoder.errors import (
    CodecUnavailable,
    DecodeRefused,
    DecoderError,
    NoEmbedding,
    SpaceMismatch,
    UnknownDetection,
)
from shared.errors import CodecError, UnknownCodec
from shared.vectors import CodecSet

if TYPE_CHECKING:
    from cloud.decoder.checkpoint import LoadedDecoder
    from cloud.decoder.config import DecoderConfig

logger = logging.getLogger(__name__)


class EmbeddingLookup(Protocol):
    """What the service reads from the catalog (``cloud.catalog.Catalog`` fits)."""

    def embedding(self, detection_id: int) -> EmbeddingRecord | None: ...

    def detection(self, detection_id: int) -> object | None: ...


def encode_png(crop: NDArray[np.uint8]) -> bytes:
    """(s, s, 3) RGB uint8 -> PNG bytes."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop), "RGB").save(out, format="PNG")
    return out.getvalue()


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: int) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: int, value: bytes) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


_Job = tuple[int, "Future[bytes]"]


class DecodeService:
    """Rebuilt crops of detections; see the module docstring."""

    def __init__(
        self,
        decoder: LoadedDecoder,
        lookup: EmbeddingLookup,
        codecs: CodecSet,
        *,
        cache_size: int = 1024,
        batch_wait_ms: float = 5.0,
        max_batch: int = 32,
    ) -> None:
        self.decoder = decoder
        self.lookup = lookup
        self.codecs = codecs
        self.batch_wait_s = max(0.0, batch_wait_ms) / 1000.0
        self.max_batch = max(1, max_batch)
        self._cache = _Lru(cache_size)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._inflight: dict[int, Future[bytes]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.requests = self.cache_hits = self.decoded = self.batches = self.largest_batch = 0

    @property
    def space(self) -> str:
        """The embedding space the decoder rebuilds (catalog name)."""
        return self.decoder.space

    # ---------------------------------------------------------------- async API

    async def png(self, detection_id: int) -> bytes:
        """PNG of one detection's rebuilt crop; :class:`DecodeRefused` subclasses otherwise."""
        self.requests += 1
        cached = self._cache.get(detection_id)
        if cached is not None:
            self.cache_hits += 1
            return cached
        return await asyncio.wrap_future(self.submit(detection_id))

    async def png_for(self, detection_ids: Iterable[int]) -> dict[int, bytes]:
        """PNGs of every id that can be rebuilt (others are skipped, logged at debug level).

        For callers that want what is available, e.g. the describer's image attachments.
        """
        ids = list(dict.fromkeys(detection_ids))
        results = await asyncio.gather(*(self.png(i) for i in ids), return_exceptions=True)
        out: dict[int, bytes] = {}
        for detection_id, result in zip(ids, results, strict=True):
            if isinstance(result, bytes):
                out[detection_id] = result
            elif isinstance(result, DecodeRefused):
                logger.debug("no rebuilt crop: %s", result)
            elif isinstance(result, BaseException):
                raise result
        return out

    # ---------------------------------------------------------------- threads

    def submit(self, detection_id: int) -> Future[bytes]:
        """A future of one PNG (thread-safe; concurrent requests for one id share a job)."""
        with self._lock:
            if self._closed:
                raise DecoderError("the decode service is closed")
            job = self._inflight.get(detection_id)
            if job is not None:
                return job
            job = Future[bytes]()
            self._inflight[detection_id] = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="crop-decoder", daemon=True)
                self._thread.start()
        self._queue.put((detection_id, job))
        return job

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued work and stop the worker."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "cached": len(self._cache),
            "decoded": self.decoded,
            "batches": self.batches,
            "largest_batch": self.largest_batch,
        }

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self._process(batch)
            except Exception as exc:  # the loop top: fail this batch, keep serving
                logger.exception("decoding a batch of %d crops failed", len(batch))
                for _, job in batch:
                    if not job.done():
                        job.set_exception(DecoderError(f"decoding failed: {exc}"))
            finally:
                with self._lock:
                    for detection_id, _ in batch:
                        self._inflight.pop(detection_id, None)
            if stop:
                return

    def _process(self, batch: list[_Job]) -> None:
        ready: list[tuple[int, Future[bytes], NDArray[np.float32]]] = []
        for detection_id, job in batch:
            try:
                ready.append((detection_id, job, self._vector(detection_id)))
            except DecodeRefused as exc:
                job.set_exception(exc)
        if not ready:
            return
        crops = self.decoder.decode(np.stack([v for _, _, v in ready]))
        self.batches += 1
        self.decoded += len(ready)
        self.largest_batch = max(self.largest_batch, len(ready))
        for (detection_id, job, _), crop in zip(ready, crops, strict=True):
            png = encode_png(crop)
            self._cache.put(detection_id, png)
            job.set_result(png)

    def _vector(self, detection_id: int) -> NDArray[np.float32]:
        """The detection's embedding as received, or why it cannot be rebuilt."""
        stored = self.lookup.embedding(detection_id)
        if stored is None:
            if self.lookup.detection(detection_id) is None:
                raise UnknownDetection(detection_id)
            raise NoEmbedding(detection_id)
        if stored.space != self.decoder.space:
            raise SpaceMismatch(detection_id, stored.space, self.decoder.space)
        try:
            try:
                codec = self.codecs.resolve(stored.fingerprint)
            except UnknownCodec:
                codec = self.codecs.accept(stored.codec_id, stored.content_hash, stored.dim)
            return np.asarray(codec.decode(stored.code)[0], np.float32)
        except CodecError as exc:
            raise CodecUnavailable(
                detection_id, f"its code ({stored.codec_id}) does not decode here: {exc}"
            ) from None


def open_decode_service(
    config: DecoderConfig, lookup: EmbeddingLookup, codecs: CodecSet
) -> DecodeService:
    """The service of the cloud config's ``decoder`` section (loads the checkpoint: seconds)."""
    from cloud.decoder.checkpoint import load_decoder

    decoder = load_decoder(config.checkpoint, config.device)
    if decoder.device == "cpu":
        import torch

        # NHWC convolutions (oneDNN): 1.3-1.9x faster on CPU for the small batches the
        # dashboard asks for, the same pixels (outputs differ by < 1e-7).
        decoder.model = decoder.model.to(memory_format=torch.channels_last)
    logger.info("crop decoder %s: %s", config.checkpoint, decoder.meta.describe())
    return DecodeService(
        decoder,
        lookup,
        codecs,
        cache_size=config.cache_size,
        batch_wait_ms=config.batch_wait_ms,
        max_batch=config.max_batch,
    )
