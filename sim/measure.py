"""Measure what a camera would send: the real edge pipeline and pixel encoders on one video.

One pass over the frames runs :class:`edge.pipeline.EdgePipeline` inline (detection,
tracking, the track-aware policy, crops, embedding, the vector codec), frames every message
as :class:`edge.pipeline.Outbox` does (:class:`MessageFramer`), and on the same frames measures raw,
JPEG, H.264 (:mod:`sim.media`) and JPEG crops of every RoI. The result, a :class:`Recording`,
keeps every RoI and every message with its size, so :mod:`sim.strategies` can build each
payload strategy from it without running the models again.

A recorded message file (``semcom edge run --out``) gives the semcom messages without a video
(:func:`read_message_file`); pixel strategies then need the video as well.

Inline means nothing is skipped for lack of time: every embedding the policy asks for is
computed (the threaded runner may skip some on a slow CPU).

Timestamps: the policy runs on the video's clock. The wire carries the send time as a delta
from the capture time; this offline pass runs slower or faster than the video, so instead of
its wall clock the send time is the capture time plus ``send_delay_ms`` (a live camera's
pipeline latency): otherwise the growing lag would add bytes a live edge never sends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from edge.capture import open_source
from edge.config import SourceConfig
from edge.crops import extract_crops
from edge.errors import EdgeError
from edge.pipeline import EdgePipeline
from shared.codec import decode, encode
from shared.compression import Compressor
from shared.errors import ProtocolError
from shared.framing import read_frames
from shared.geometry import Box
from shared.messages import Embedding, Envelope, Message
from shared.vectors import VectorCodec, builtin_codecs, create_codec, fingerprint
from sim.bundling import BundleSettings
from sim.errors import MeasureError
from sim.media import H264Meter, MediaError, jpeg_bytes, raw_bytes
from sim.queries import DEFAULT_EVERY, QuerySample, QuerySampler
from sim.replay import (
    CachingEncoder,
    KeepingCodec,
    RecordingDetector,
    RenameRecorder,
    ReplayDetector,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]  # frames done so far


@dataclass(frozen=True)
class MediaSettings:
    """How the pixel baselines are encoded."""

    jpeg_quality: int = 75
    h264_crf: int = 28
    crop_jpeg_quality: int = 75
    crop_size: int = 224  # px side of a RoI crop (the paper's 224 x 224)
    send_delay_ms: float = 50.0  # send time - capture time on the wire (a live edge's latency)


class MessageFramer:
    """Encodes messages as the edge's :class:`~edge.pipeline.Outbox` does (header + msgpack +
    zstd, seq numbered from 1) with a fixed send delay; returns each frame's size in bytes.
    ``compress=False`` leaves bodies uncompressed."""

    def __init__(
        self, edge_id: str = "sim-edge", send_delay_ms: float = 50.0, *, compress: bool = True
    ) -> None:
        self.edge_id = edge_id
        self.delay_us = round(send_delay_ms * 1e3)
        # min_bytes beyond any frame: bodies go uncompressed (the paper's own arithmetic)
        self.compressor = Compressor() if compress else Compressor(min_bytes=1 << 30)
        self.seq = 0

    def size(self, capture_ts_us: int, message: Message) -> int:
        self.seq += 1
        envelope = Envelope(
            self.edge_id, self.seq, capture_ts_us, capture_ts_us + self.delay_us, message
        )
        return len(encode(envelope, self.compressor))


@dataclass(frozen=True)
class RoI:
    """One detected (and usually tracked) object in one frame."""

    t_s: float  # video time of its frame (s)
    track_id: int  # 0: not tracked yet
    class_id: int
    confidence: float
    box: Box  # normalised


@dataclass(frozen=True)
class Sent:
    """One message the edge sent: when (video time, s), its type, and its encoded size."""

    t_s: float
    kind: str
    size: int
    message: Message
    vector: NDArray[np.float32] | None = None  # an Embedding's vector (decoded from its code)
    original: NDArray[np.float32] | None = None  # the encoder's f32 vector it was coded from


@dataclass
class Stream:
    """The messages another emission preset sent on the same frames (``name``: its strategy)."""

    name: str
    codec_id: str
    messages: list[Sent] = field(default_factory=list)
    description: str = ""
    roi_track_ids: list[int] | None = None  # see Recording.roi_track_ids
    bundling: BundleSettings = field(default_factory=BundleSettings)  # its uplink's bundling


@dataclass
class Recording:
    """Everything measured on one clip; sizes in bytes, times in s of video."""

    source: str
    width: int
    height: int
    fps: float
    frame_times: list[float] = field(default_factory=list)
    rois: list[RoI] = field(default_factory=list)
    messages: list[Sent] = field(default_factory=list)
    jpeg_frame_bytes: list[int] = field(default_factory=list)
    crop_jpeg_bytes: list[int] = field(default_factory=list)  # per RoI, in order of `rois`
    h264_total_bytes: int = 0
    media: MediaSettings = MediaSettings()
    detector: str = ""
    encoder: str = ""
    dim: int = 0
    random_init: bool = False
    codec_id: str = ""
    vectors: dict[int, NDArray[np.float32]] = field(default_factory=dict)  # track -> first sent
    t0_us: int = 0  # capture time of the first frame (us): places TrackEnd times
    streams: list[Stream] = field(default_factory=list)  # other presets on the same frames
    embeds_computed: int = 0  # crops the encoder embedded (every preset together)
    embeds_reused: int = 0  # crops a second preset asked for that were embedded already
    min_track_frames: int = 3  # reference tracks shorter than this are flicker (confirm_frames)
    #: each RoI's track id as the policy saw it, after its re-linking (edge/relink.py), in the
    #: order of ``rois``; None: the tracker's ids
    roi_track_ids: list[int] | None = None
    bundling: BundleSettings = field(default_factory=BundleSettings)  # see sim.bundling
    #: fresh sightings for same-track recall (sim.queries): rows of ``rois`` and f32 vectors
    queries: QuerySample = field(default_factory=QuerySample)

    @property
    def frames(self) -> int:
        return len(self.frame_times)

    @property
    def duration_s(self) -> float:
        """Video seconds covered: frames / fps."""
        return self.frames / self.fps if self.fps > 0 else 0.0

    @property
    def raw_frame_bytes(self) -> int:
        return raw_bytes(self.width, self.height)


def measure_video(
    source: Path,
    pipeline: EdgePipeline,
    *,
    media: MediaSettings = MediaSettings(),
    max_frames: int | None = None,
    progress: Progress | None = None,
    edge_id: str = "sim-edge",
    extra: Mapping[str, EdgePipeline] | None = None,
    query_every: int = DEFAULT_EVERY,
) -> Recording:
    """Run ``pipeline`` over every frame of ``source`` (inline) and measure all baselines.

    ``extra``: other pipelines (strategy name -> pipeline, e.g. another emission preset) run on
    the same frames with ``pipeline``'s detections and one shared embedding cache (their own
    detector and encoder are not used); their messages become :attr:`Recording.streams`.
    """
    try:
        src = open_source(SourceConfig(uri=str(source), pace=False))
    except EdgeError as exc:
        raise MeasureError(f"cannot open {source}: {exc}") from None
    if src.live:
        raise MeasureError(f"{source} is a live source; the simulator needs a file")
    pipelines = {"semcom": pipeline, **(extra or {})}
    runs = [
        _Run(name, p, MessageFramer(edge_id, media.send_delay_ms), KeepingCodec(p.codec))
        for name, p in pipelines.items()
    ]
    saved = [(r.pipeline.detector, r.pipeline.encoder, r.pipeline.codec) for r in runs]
    recorder = RecordingDetector(pipeline.detector)
    encoder = CachingEncoder(pipeline.encoder)
    sampler = QuerySampler(encoder, pipeline.crop_scale, query_every)
    for r in runs:
        r.pipeline.detector = recorder if r.pipeline is pipeline else ReplayDetector(recorder)
        r.pipeline.encoder = encoder
        r.pipeline.codec = r.codec
        relinker = getattr(r.pipeline.policy, "relinker", None)
        if relinker is not None:
            r.renames = RenameRecorder(relinker)
            r.pipeline.policy.relinker = r.renames  # type: ignore[assignment]
    fps = float(src.fps or 25.0)
    rec: Recording | None = None
    meter = H264Meter(fps, media.h264_crf)
    first_us: int | None = None
    try:
        for frame in src.frames(threading.Event()):
            if max_frames is not None and frame.index >= max_frames:
                break
            if rec is None:
                rec = Recording(
                    str(source),
                    frame.width,
                    frame.height,
                    fps,
                    media=media,
                    detector=recorder.name,
                    encoder=encoder.name,
                    dim=encoder.dim,
                    random_init=encoder.random_init,
                    codec_id=runs[0].codec.codec_id,
                    t0_us=frame.capture_ts_us,
                    streams=[Stream(r.name, r.codec.codec_id) for r in runs[1:]],
                )
            first_us = frame.capture_ts_us if first_us is None else first_us
            t = (frame.capture_ts_us - first_us) / 1e6
            rec.frame_times.append(t)
            encoder.new_frame()
            for r in runs:
                for ts, message in r.pipeline.process(frame):
                    _record(rec, r, ts, (ts - first_us) / 1e6, message)
            row0 = len(rec.rois)
            _measure_pixels(rec, frame.image, recorder, t, meter)
            sampler.add(frame.index, frame.image, recorder.last, row0)
            if progress is not None:
                progress(rec.frames)
        if rec is None:
            raise MeasureError(f"no frames could be read from {source}")
        assert first_us is not None
        end = rec.frame_times[-1]
        end_us = first_us + round(end * 1e6)
        for r in runs:
            for _ts, message in r.pipeline.finish():
                _record(rec, r, end_us, end, message)
        rec.h264_total_bytes = meter.close()
        rec.embeds_computed, rec.embeds_reused = encoder.computed, encoder.reused
        rec.queries = sampler.sample
        for r in runs:
            ids = r.renames.relinked_ids() if r.renames is not None else None
            if ids is not None and len(ids) != len(rec.rois):  # a policy that skips frames
                ids = None
            if r.name == "semcom":
                rec.roi_track_ids = ids
            else:
                next(s for s in rec.streams if s.name == r.name).roi_track_ids = ids
    except MediaError as exc:
        raise MeasureError(f"cannot encode the frames of {source}: {exc}") from None
    finally:
        for r, (det, enc, codec) in zip(runs, saved, strict=True):
            r.pipeline.detector, r.pipeline.encoder, r.pipeline.codec = det, enc, codec
            if r.renames is not None:
                r.pipeline.policy.relinker = r.renames.inner
    return rec


@dataclass
class _Run:
    """One pipeline of a measurement pass and how its messages are framed."""

    name: str
    pipeline: EdgePipeline
    framer: MessageFramer
    codec: KeepingCodec
    renames: RenameRecorder | None = None


def _record(rec: Recording, run: _Run, ts_us: int, t: float, message: Message) -> None:
    size = run.framer.size(ts_us, message)
    vector = original = None
    if isinstance(message, Embedding):
        original = run.codec.take()
        vector = run.codec.decode(message.code)[0]
        if run.name == "semcom":
            rec.vectors.setdefault(message.track_id, vector)
    sent = Sent(t, type(message).__name__, size, message, vector, original)
    if run.name == "semcom":
        rec.messages.append(sent)
    else:
        next(s for s in rec.streams if s.name == run.name).messages.append(sent)


def _measure_pixels(
    rec: Recording,
    image: NDArray[np.uint8],
    recorder: RecordingDetector,
    t: float,
    meter: H264Meter,
) -> None:
    media = rec.media
    rec.jpeg_frame_bytes.append(jpeg_bytes(image, media.jpeg_quality))
    meter.add(image)
    boxes = recorder.last
    if not len(boxes):
        return
    crops = extract_crops(image, boxes.xyxy, media.crop_size, 2.5)
    for i in range(len(boxes)):
        x1, y1, x2, y2 = (float(v) for v in boxes.xyxy[i])
        rec.rois.append(
            RoI(
                t,
                int(boxes.track_ids[i]),
                int(boxes.class_ids[i]),
                float(boxes.confidences[i]),
                Box.from_pixels(x1, y1, x2, y2, rec.width, rec.height),
            )
        )
        bgr = np.ascontiguousarray(crops[i][..., ::-1])
        rec.crop_jpeg_bytes.append(jpeg_bytes(bgr, media.crop_jpeg_quality))


def count_frames(source: Path) -> int | None:
    """Frames the container says a video holds (None when it does not say)."""
    import cv2

    cap = cv2.VideoCapture(str(source))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n if n > 0 else None


def read_message_file(path: Path, fps: float | None = None) -> Recording:
    """The semcom messages of a recorded file (``semcom edge run --out``), timed by their
    capture timestamps; frame times come from ``FrameCounts``/``Detections`` (and ``fps``)."""
    from shared.messages import Hello

    try:
        with open(path, "rb") as fh:
            envelopes = [(len(f), decode(f)) for f in read_frames(fh)]
    except OSError as exc:
        raise MeasureError(f"cannot read message file {path}: {exc.strerror}") from None
    except ProtocolError as exc:
        raise MeasureError(f"{path} is not a readable semcom message file: {exc}") from None
    hello = next((e.message for _, e in envelopes if isinstance(e.message, Hello)), None)
    data = [(n, e) for n, e in envelopes if e.seq != 0]
    if not data:
        raise MeasureError(f"{path} holds no data messages")
    camera = hello.cameras[0] if hello is not None and hello.cameras else None
    rate = fps or (camera.fps if camera is not None and camera.fps > 0 else 25.0)
    first = min(e.capture_ts_us for _, e in data)
    last = max(e.capture_ts_us for _, e in data)
    frames = max(1, round((last - first) / 1e6 * rate) + 1)
    rec = Recording(
        str(path),
        camera.width if camera is not None else 0,
        camera.height if camera is not None else 0,
        rate,
        frame_times=[i / rate for i in range(frames)],
        detector=hello.detector if hello is not None else "",
        encoder=hello.encoder if hello is not None else "",
        dim=hello.embedding_dim if hello is not None else 0,
        random_init=hello.random_init_encoder if hello is not None else False,
        t0_us=first,
    )
    codecs = _file_codecs(hello)
    for size, env in data:
        vector = None
        if isinstance(env.message, Embedding) and env.message.codec in codecs:
            vector = codecs[env.message.codec].decode(env.message.code)[0]
            rec.vectors.setdefault(env.message.track_id, vector)
            rec.codec_id = codecs[env.message.codec].codec_id
        rec.messages.append(
            Sent(
                (env.capture_ts_us - first) / 1e6,
                type(env.message).__name__,
                size,
                env.message,
                vector,
            )
        )
    rec.messages.sort(key=lambda s: s.t_s)
    return rec


def _file_codecs(hello: Message | None) -> dict[int, VectorCodec]:
    """The built-in codecs a file's Hello announced, by fingerprint (codebooks are not at hand)."""
    from shared.messages import Hello

    out: dict[int, VectorCodec] = {}
    if not isinstance(hello, Hello):
        return out
    for ref in hello.codecs:
        if ref.codec_id in builtin_codecs():
            codec = create_codec(ref.codec_id, hello.embedding_dim)
            out[fingerprint(codec)] = codec
    return out
