"""Payload strategies: what one camera sends, message by message, under each way of sending.

Every strategy is built from one :class:`~sim.measure.Recording` (the same frames, the same
detections), so they differ only in what they put on the wire:

- ``raw``: every frame as 8-bit RGB (``width * height * 3`` bytes);
- ``jpeg``: every frame as a JPEG (quality q, Pillow);
- ``h264``: the frames as one H.264 stream at the clip's fps (libx264, CRF c; PyAV). The
  measured total is spread evenly over the frames (I-frame bursts are not modelled);
- ``jpeg_crops``: every RoI of every frame as a JPEG of its 224 x 224 square crop (S = 2.5,
  the crop the encoder sees);
- ``paper``: the paper's scheme, every RoI of every frame as one 768-d float32 vector
  (3,072 B) in our Embedding message (box, class, confidence, track id, header), framed by the
  real wire codec with compression off (the paper counts 3,072 B per crop);
- ``semcom``: exactly what the edge pipeline sent (track-aware emission, the configured codec,
  counts, boxes every few frames, track ends);
- ``semcom-lean`` (and any other :class:`~sim.measure.Stream`): what another emission preset's
  pipeline sent on the same frames (the lean preset, ``deploy/edge.lean.yaml``);
- ``semcom-<codec>``: the same messages with every embedding re-encoded with ``<codec>``;
- ``semcom-<codec>-all-rois``: no track-aware emission: every RoI of every frame as an
  embedding with ``<codec>`` (nothing else);
- ``semcom-ladder``: the track-aware messages with each embedding's size on every rung of a
  codec ladder; the rate controller (:class:`edge.ratecontrol.LadderController`) picks the
  rung in the simulation.

Every semcom strategy built from recorded messages carries its :class:`~sim.fidelity.Fidelity`
(what the cloud knows from those messages against the edge's full-rate observations) and, for
``semcom`` and the streams, its :class:`~sim.warmup.Warmup` (the same messages on the universal
int8 rung, until the cloud has fitted a codebook).

Sizes are bytes of encoded frames (header + msgpack + zstd), without SCTP/DTLS/UDP/IP headers
(a few % for frames of a kilobyte) or pixel container headers. The track-aware semcom
strategies (``semcom``, the streams, ``semcom-<codec>`` and their warm-up) are measured as the
uplink sends them, in bundle frames (:mod:`sim.bundling`: one per linger window); each
:class:`~sim.measure.Sent` keeps its single-frame size for per-kind breakdowns, and
``semcom-ladder`` and the ``-all-rois`` strategies count single frames.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
from numpy.typing import NDArray

from shared.messages import Embedding, EmitReason, Message
from shared.vectors import VectorCodec, create_codec, fingerprint
from sim.bundling import BundleSettings, bundle_sizes
from sim.fidelity import Fidelity, Reference, measure_fidelity, view_of
from sim.measure import MessageFramer, Recording, RoI, Sent
from sim.warmup import WARMUP_VECTORS, Warmup, warmup_of

logger = logging.getLogger(__name__)

RAW_2048_FRAME_BYTES: Final = 2048 * 2048 * 3
"""The paper's reference: one raw 2048 x 2048 RGB frame, 12,582,912 B (its 99.9 % is vs this)."""
PAPER_DIM: Final = 768
"""The paper's embedding: ViT-B, 768-d float32 (3,072 B)."""
PIXEL_STRATEGIES: Final = ("raw", "jpeg", "h264", "jpeg_crops")
QUIET_KINDS: Final = ("FrameCounts", "Detections")


@dataclass(frozen=True)
class Payload:
    """One camera's messages under a strategy: creation times (s of video) and sizes (bytes).

    ``rung_sizes`` (adaptive strategies): each message's size on every rung of ``rungs``
    (-1 for messages that are not embeddings); ``quiet`` marks messages a quieter emission
    policy spaces out (counts, boxes, drift and keyframe embeddings).
    """

    name: str
    description: str
    times_s: NDArray[np.float64]
    sizes: NDArray[np.int64]
    duration_s: float
    frames: int
    rungs: tuple[str, ...] = ()
    rung_sizes: NDArray[np.int64] | None = None
    quiet: NDArray[np.bool_] | None = None
    fidelity: Fidelity | None = None
    warmup: Warmup | None = None

    @property
    def total_bytes(self) -> int:
        return int(self.sizes.sum())

    @property
    def bytes_per_s(self) -> float:
        return self.total_bytes / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def min_bytes_per_s(self) -> float:
        """The least the strategy can offer: every embedding on the cheapest rung (the rate
        controller's floor before it makes the policy quieter); ``bytes_per_s`` otherwise."""
        if self.rung_sizes is None or not len(self.rungs):
            return self.bytes_per_s
        last = self.rung_sizes[:, -1]
        total = int(np.where(last >= 0, last, self.sizes).sum())
        return total / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def bytes_per_frame(self) -> float:
        return self.total_bytes / self.frames if self.frames else 0.0

    @property
    def messages_per_s(self) -> float:
        return len(self.sizes) / self.duration_s if self.duration_s > 0 else 0.0


def _payload(
    name: str, description: str, rec: Recording, items: Iterable[tuple[float, int]]
) -> Payload:
    pairs = sorted((t, n) for t, n in items if n > 0)
    return Payload(
        name,
        description,
        np.asarray([t for t, _ in pairs], np.float64),
        np.asarray([n for _, n in pairs], np.int64),
        rec.duration_s,
        rec.frames,
    )


def _per_frame(rec: Recording, values: Sequence[int]) -> list[tuple[float, int]]:
    return list(zip(rec.frame_times, values, strict=True))


def _grouped(times: Sequence[float], sizes: Sequence[int]) -> list[tuple[float, int]]:
    """Sum sizes that share a time (one frame's RoIs go out together)."""
    out: dict[float, int] = {}
    for t, n in zip(times, sizes, strict=True):
        out[t] = out.get(t, 0) + n
    return list(out.items())


def pixel_payloads(rec: Recording) -> list[Payload]:
    """raw, jpeg, h264 and jpeg_crops on the recording's frames (empty for a message file)."""
    if not rec.jpeg_frame_bytes:
        return []
    m = rec.media
    h264 = rec.h264_total_bytes
    per_frame = [
        h264 // rec.frames + (1 if i < h264 % rec.frames else 0) for i in range(rec.frames)
    ]
    return [
        _payload(
            "raw",
            f"every frame as 8-bit RGB ({rec.width}x{rec.height}x3 B)",
            rec,
            _per_frame(rec, [rec.raw_frame_bytes] * rec.frames),
        ),
        _payload(
            "jpeg",
            f"every frame as a JPEG, quality {m.jpeg_quality}",
            rec,
            _per_frame(rec, rec.jpeg_frame_bytes),
        ),
        _payload(
            "h264",
            f"H.264 (libx264, CRF {m.h264_crf}) of the frames at {rec.fps:g} fps",
            rec,
            _per_frame(rec, per_frame),
        ),
        _payload(
            "jpeg_crops",
            f"every RoI as a JPEG of its {m.crop_size}x{m.crop_size} crop, quality "
            f"{m.crop_jpeg_quality}",
            rec,
            _grouped([r.t_s for r in rec.rois], rec.crop_jpeg_bytes),
        ),
    ]


class _Sizer:
    """Encoded size of a message as the edge frames it, timed by video seconds."""

    def __init__(self, compress: bool = True) -> None:
        self.framer = MessageFramer(compress=compress)

    def __call__(self, t_s: float, message: Message) -> int:
        return self.framer.size(1_700_000_000_000_000 + round(t_s * 1e6), message)


def _unit(rng: np.random.Generator, dim: int) -> NDArray[np.float32]:
    v = rng.standard_normal(dim).astype(np.float32)
    out: NDArray[np.float32] = v / np.float32(np.linalg.norm(v))
    return out


def _roi_vectors(rec: Recording, dim: int, seed: int) -> list[NDArray[np.float32]]:
    """A vector per RoI: its track's first sent embedding (this encoder), else a random unit one.

    Sizes depend on the vector only through zstd, which gains little on float codes."""
    rng = np.random.default_rng(seed)
    fallback: dict[int, NDArray[np.float32]] = {}
    out = []
    for roi in rec.rois:
        v = rec.vectors.get(roi.track_id) if dim == rec.dim else None
        if v is None:
            v = fallback.get(roi.track_id)
            if v is None:
                v = fallback[roi.track_id] = _unit(rng, dim)
        out.append(v)
    return out


def _roi_embedding(rec: Recording, roi: RoI, codec: VectorCodec, code: bytes) -> Embedding:
    return Embedding(
        "cam-01",
        roi.track_id,
        EmitReason.FIRST_SIGHT,
        roi.class_id,
        roi.confidence,
        roi.box,
        fingerprint(codec),
        code,
    )


def _all_rois(
    rec: Recording, codec: VectorCodec, seed: int, *, compress: bool = True
) -> tuple[list[tuple[float, int]], list[tuple[float, Embedding]]]:
    """(sizes grouped per frame, every RoI's Embedding message with its time)."""
    if not rec.rois:
        return [], []
    vectors = np.stack(_roi_vectors(rec, codec.dim, seed))
    codes = codec.encode(vectors)
    sizer = _Sizer(compress)
    messages = [
        (r.t_s, _roi_embedding(rec, r, codec, codes[i].tobytes())) for i, r in enumerate(rec.rois)
    ]
    sizes = [sizer(t, m) for t, m in messages]
    return _grouped([r.t_s for r in rec.rois], sizes), messages


def paper_payload(rec: Recording, seed: int = 0) -> Payload:
    """The paper's scheme as the paper counts it: every RoI of every frame as a 768-d float32
    vector, 3,072 B uncompressed, in our Embedding message (box, class, header) without zstd.

    ``semcom-f32-all-rois`` is the same content through our codec (zstd); how much zstd takes
    off float32 codes depends on the encoder's weights (random-init outputs compress far more
    than trained ones are likely to), so the paper's count does not use it."""
    codec = create_codec("f32", PAPER_DIM)
    return _payload(
        "paper",
        "paper: every RoI of every frame, 768-d float32 (3,072 B, uncompressed) + box, class, "
        "header",
        rec,
        _all_rois(rec, codec, seed, compress=False)[0],
    )


def _source(sent: Sent) -> NDArray[np.float32] | None:
    """The vector an embedding was coded from: the encoder's f32 output when kept."""
    return sent.original if sent.original is not None else sent.vector


def _recoded(messages: Sequence[Sent], codec: VectorCodec) -> list[tuple[float, Message]]:
    """The recorded messages (with their times) with every embedding re-encoded with ``codec``."""
    out: list[tuple[float, Message]] = []
    for sent in messages:
        vector = _source(sent)
        message = sent.message
        if isinstance(message, Embedding) and vector is not None:
            code = codec.encode(vector[None, :])[0].tobytes()
            message = replace(message, codec=fingerprint(codec), code=code)
        out.append((sent.t_s, message))
    return out


def _bundled(
    items: Iterable[tuple[float, Message]], settings: BundleSettings, t0_us: int
) -> list[int]:
    """Sizes of what the uplink sends for these messages: bundle frames (sim.bundling)."""
    return [n for _, n in bundle_sizes(items, settings, t0_us)]


def _reencoded(messages: Sequence[Sent], codec: VectorCodec) -> list[int]:
    """Sizes of the recorded messages with every embedding re-encoded with ``codec``."""
    sizer = _Sizer()
    sizes = []
    for sent in messages:
        vector = _source(sent)
        if isinstance(sent.message, Embedding) and vector is not None:
            code = codec.encode(vector[None, :])[0].tobytes()
            message = replace(sent.message, codec=fingerprint(codec), code=code)
            sizes.append(sizer(sent.t_s, message))
        else:
            sizes.append(sent.size)
    return sizes


def _fidelity(
    rec: Recording,
    ref: Reference | None,
    messages: Sequence[Sent],
    codec: VectorCodec | None = None,
) -> Fidelity | None:
    """What the cloud knows from ``messages`` (embeddings as sent, or re-coded with ``codec``)."""
    if ref is None:
        return None

    def decoded(sent: Sent) -> NDArray[np.float32] | None:
        vector = _source(sent)
        if codec is None or vector is None:
            return sent.vector
        out: NDArray[np.float32] = codec.decode(codec.encode(vector[None, :]))[0]
        return out

    items = ((s.t_s, s.message, decoded(s), s.original) for s in messages)
    return measure_fidelity(ref, view_of(items, rec.t0_us), min_track_frames=rec.min_track_frames)


def _sent_payload(
    name: str,
    description: str,
    rec: Recording,
    messages: Sequence[Sent],
    ref: Reference | None,
    warmup_vectors: int | None,
    bundling: BundleSettings,
) -> Payload:
    """A strategy made of recorded messages as sent (in bundle frames, as the uplink sends
    them: ``bundling``), with its fidelity and warm-up."""
    items = bundle_sizes(((s.t_s, s.message) for s in messages), bundling, rec.t0_us)
    payload = _payload(name, description, rec, items)
    warm = None
    if warmup_vectors is not None and rec.dim > 0:
        warm = warmup_of(
            _bundled(_recoded(messages, create_codec("int8", rec.dim)), bundling, rec.t0_us),
            sum(s.kind == "Embedding" for s in messages),
            rec.duration_s,
            warmup_vectors,
        )
    return replace(payload, fidelity=_fidelity(rec, ref, messages), warmup=warm)


def semcom_payloads(
    rec: Recording,
    codecs: Sequence[str] = ("f32", "f16", "int8"),
    ladder: Sequence[str] = (),
    *,
    all_rois: bool = True,
    seed: int = 0,
    warmup_vectors: int | None = WARMUP_VECTORS,
) -> list[Payload]:
    """``semcom`` (as sent), each other preset's stream (``semcom-lean``), per-codec variants
    with and without track-aware emission, and ``semcom-ladder`` when a ladder of two or more
    codecs is given. ``warmup_vectors``: the cloud's codebook threshold (None: no warm-up)."""
    random = " (random-init encoder)" if rec.random_init else ""

    def reference(track_ids: Sequence[int] | None = None) -> Reference | None:
        if not rec.rois:
            return None
        queries = (rec.queries.rows, rec.queries.array(rec.dim)) if rec.queries.rows else None
        return Reference.of(rec.rois, rec.frame_times, rec.width, rec.height, track_ids, queries)

    ref = reference(rec.roi_track_ids)
    out = [
        _sent_payload(
            "semcom",
            f"semcom as the edge sent it: track-aware, {rec.codec_id or 'recorded'} codes, "
            f"{rec.dim}-d{random}",
            rec,
            rec.messages,
            ref,
            warmup_vectors,
            rec.bundling,
        )
    ]
    for stream in rec.streams:
        out.append(
            _sent_payload(
                stream.name,
                f"{stream.description or stream.name}: {stream.codec_id} codes{random}",
                rec,
                stream.messages,
                reference(stream.roi_track_ids),
                warmup_vectors,
                stream.bundling,
            )
        )
    has_vectors = any(s.vector is not None for s in rec.messages) or not any(
        s.kind == "Embedding" for s in rec.messages
    )
    if rec.dim <= 0:
        return out
    for spec in codecs:
        codec = create_codec(spec, rec.dim)
        if has_vectors:
            out.append(
                _payload(
                    f"semcom-{codec.codec_id}",
                    f"track-aware, every embedding as {codec.codec_id}",
                    rec,
                    bundle_sizes(_recoded(rec.messages, codec), rec.bundling, rec.t0_us),
                )
            )
            out[-1] = replace(out[-1], fidelity=_fidelity(rec, ref, rec.messages, codec))
        if all_rois and rec.rois:
            items, messages = _all_rois(rec, codec, seed)
            fid = None
            raw = reference()  # every RoI under the tracker's own ids
            if raw is not None:  # vectors are stand-ins (one per track): no recall measured
                view = view_of(((t, m, None, None) for t, m in messages), rec.t0_us)
                fid = measure_fidelity(raw, view, min_track_frames=rec.min_track_frames)
            out.append(
                replace(
                    _payload(
                        f"semcom-{codec.codec_id}-all-rois",
                        f"no track-aware emission: every RoI of every frame as {codec.codec_id}",
                        rec,
                        items,
                    ),
                    fidelity=fid,
                )
            )
    if len(ladder) >= 2 and has_vectors:
        out.append(ladder_payload(rec, [create_codec(spec, rec.dim) for spec in ladder]))
    return out


def ladder_payload(rec: Recording, rungs: Sequence[VectorCodec]) -> Payload:
    """Track-aware messages with every embedding's size on each rung (richest first)."""
    per_rung = [_reencoded(rec.messages, c) for c in rungs]
    sizes = np.asarray(per_rung[0], np.int64)
    table = np.stack([np.asarray(r, np.int64) for r in per_rung], axis=1)
    embedding = np.asarray([s.kind == "Embedding" for s in rec.messages], bool)
    table[~embedding] = -1
    quiet = np.asarray(
        [
            s.kind in QUIET_KINDS
            or (
                isinstance(s.message, Embedding)
                and s.message.reason in (EmitReason.DRIFT, EmitReason.KEYFRAME)
            )
            for s in rec.messages
        ],
        bool,
    )
    order = np.argsort(np.asarray([s.t_s for s in rec.messages]), kind="stable")
    names = tuple(c.codec_id for c in rungs)
    return Payload(
        "semcom-ladder",
        f"track-aware, the rate controller's codec ladder {' > '.join(names)}",
        np.asarray([rec.messages[i].t_s for i in order], np.float64),
        sizes[order],
        rec.duration_s,
        rec.frames,
        names,
        table[order],
        quiet[order],
    )


def build_payloads(
    rec: Recording,
    codecs: Sequence[str] = ("f32", "f16", "int8"),
    ladder: Sequence[str] = ("f16", "int8"),
    *,
    seed: int = 0,
    warmup_vectors: int | None = WARMUP_VECTORS,
) -> list[Payload]:
    """Every strategy the recording supports: pixels (with a video), paper, semcom family."""
    out = pixel_payloads(rec)
    if rec.rois:
        out.append(paper_payload(rec, seed))
    elif rec.jpeg_frame_bytes:
        out.append(_payload("paper", "paper: no RoIs detected on this clip", rec, []))
    out.extend(semcom_payloads(rec, codecs, ladder, seed=seed, warmup_vectors=warmup_vectors))
    return out


@dataclass(frozen=True)
class Headline:
    """The comparison the paper makes, for one strategy (rates per second of video)."""

    name: str
    bytes_per_s: float
    bytes_per_frame: float
    reduction_vs_raw_pct: float | None  # vs the clip's own raw frames
    reduction_vs_2048_pct: float | None  # vs one raw 2048 x 2048 frame per frame
    vs_h264_pct: float | None  # bytes as a share of H.264's


def headline(payload: Payload, raw: Payload | None, h264: Payload | None) -> Headline:
    per_frame = payload.bytes_per_frame
    return Headline(
        payload.name,
        payload.bytes_per_s,
        per_frame,
        100.0 * (1 - payload.bytes_per_s / raw.bytes_per_s) if raw and raw.bytes_per_s else None,
        100.0 * (1 - per_frame / RAW_2048_FRAME_BYTES) if payload.frames else None,
        100.0 * payload.bytes_per_s / h264.bytes_per_s if h264 and h264.bytes_per_s else None,
    )
