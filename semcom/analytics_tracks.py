"""Tracks for the analytics engine, rebuilt from an edge's messages (a recorded message file).

What the cloud learns of a track's motion comes in two kinds of message:

- :class:`~shared.messages.Detections`: every kept box of a frame, every
  ``policy.detections_every_frames`` frames, each with its track id and the frame's capture
  time (the envelope's): exact (time, box) samples;
- :class:`~shared.messages.TrackEnd`: the track's class votes, first and last capture times,
  and a path of at most ``policy.path_points`` boxes thinned evenly over the frames it was
  seen in. Only the path's first box (at ``first_seen_us``) and last box (at
  ``last_seen_us``) have known times.

- :class:`~shared.messages.TrackSummary` (the default policy's, since protocol 4): the
  points of the track's simplified path, each at its own time: exact (time, box) samples
  (the engine interpolates between them), class votes, and (``final``) the track's end.

A track's samples are its Detections boxes and TrackSummary points plus the TrackEnd path's
two ends. A track that
has fewer than two Detections boxes (an edge sending no boxes, or a short track) takes its
whole path instead, with times spread evenly from first to last sight (an approximation:
exact when the track was seen in every frame). Its class is the TrackEnd's majority vote,
else the majority of its Detections class ids. A track id that reappears after its TrackEnd
is a new track (key ``camera/id.2``).

The cloud's runner (:mod:`cloud.analytics.samples`) reads the catalog instead and prefers the
path whenever it holds more boxes than the detections; on cars_kraten.mp4 both rules give the
same line counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cloud.analytics.geometry import Track
from shared.codec import decode
from shared.framing import read_frames
from shared.geometry import Box
from shared.messages import Detections, Envelope, Hello, TrackEnd, TrackSummary


class MessageFileError(ValueError):
    """A message file that cannot be read to its end."""


@dataclass
class _Building:
    camera: str
    track_id: int
    generation: int
    samples: dict[int, Box] = field(default_factory=dict)
    votes: Counter[int] = field(default_factory=Counter)
    end: TrackEnd | None = None
    summary_votes: dict[int, int] | None = None  # the latest TrackSummary's
    final: bool = False  # a final TrackSummary came

    @property
    def key(self) -> str:
        suffix = f".{self.generation}" if self.generation > 1 else ""
        return f"{self.camera}/{self.track_id}{suffix}"


@dataclass(frozen=True)
class CollectedTrack:
    """One rebuilt track: the engine's :class:`Track` and where its samples came from."""

    track: Track
    camera: str
    track_id: int
    detections_samples: int
    """Samples taken from Detections boxes and TrackSummary points (exact times; the rest
    come from the TrackEnd path)."""
    path_timed: bool
    """True when the samples are the TrackEnd path with interpolated times."""


@dataclass(frozen=True)
class Collected:
    """Every track of a message stream, in order of first sight, and what the stream said."""

    tracks: tuple[CollectedTrack, ...]
    start_us: int | None
    """Capture time of the stream's first Hello (the edge's first frame), else of its first
    message. Not the earliest capture time: the TrackEnds an edge sends when its source ends
    carry the wall clock, which a file read faster than real time runs behind."""
    frame_sizes: dict[str, tuple[int, int]]
    """Frame (width, height) of each camera, from the Hello messages."""
    messages: Counter[str]


def _as_tuple(box: Box) -> tuple[float, float, float, float]:
    return (box.x1, box.y1, box.x2, box.y2)


def _path_samples(end: TrackEnd) -> dict[int, Box]:
    """The path's boxes at evenly spread times from first to last sight (distinct times)."""
    path = end.path
    if not path:
        return {}
    if len(path) == 1:
        return {end.first_seen_us: path[0]}
    span = end.last_seen_us - end.first_seen_us
    out: dict[int, Box] = {}
    for i, box in enumerate(path):
        out.setdefault(end.first_seen_us + round(span * i / (len(path) - 1)), box)
    return out


def _finish(b: _Building, ended: bool) -> CollectedTrack | None:
    samples = dict(b.samples)
    from_detections = len(samples)
    path_timed = False
    if b.end is not None and b.end.path:
        if from_detections < 2:
            samples = {**_path_samples(b.end), **samples}
            path_timed = True
        else:
            samples.setdefault(b.end.first_seen_us, b.end.path[0])
            samples.setdefault(b.end.last_seen_us, b.end.path[-1])
    if not samples:
        return None
    votes = Counter(b.end.class_votes) if b.end is not None and b.end.class_votes else b.votes
    if (b.end is None or not b.end.class_votes) and b.summary_votes:
        votes = Counter(b.summary_votes)
    class_id = votes.most_common(1)[0][0] if votes else None
    track = Track(
        b.key,
        [(t, _as_tuple(samples[t])) for t in sorted(samples)],
        class_id,
        ended=ended or b.end is not None or b.final,
    )
    return CollectedTrack(track, b.camera, b.track_id, from_detections, path_timed)


def collect_tracks(envelopes: Iterable[Envelope], *, complete: bool = True) -> Collected:
    """Rebuild every track of a message stream (see the module's description).

    ``complete``: the stream is over (a recorded clip), so every track counts as ended, even
    one whose TrackEnd never came (tracks too short to confirm end without one).
    """
    open_: dict[tuple[str, int], _Building] = {}
    generations: Counter[tuple[str, int]] = Counter()
    done: list[_Building] = []
    order: dict[int, int] = {}  # id(building) -> first sight, for a stable order
    start_us: int | None = None
    sizes: dict[str, tuple[int, int]] = {}
    counts: Counter[str] = Counter()

    def building(camera: str, track_id: int) -> _Building:
        k = (camera, track_id)
        b = open_.get(k)
        if b is None:
            generations[k] += 1
            b = open_[k] = _Building(camera, track_id, generations[k])
            order[id(b)] = len(order)
        return b

    for env in envelopes:
        message = env.message
        counts[type(message).__name__] += 1
        if start_us is None or (isinstance(message, Hello) and counts["Hello"] == 1):
            start_us = env.capture_ts_us
        if isinstance(message, Hello):
            for cam in message.cameras:
                sizes[cam.camera] = (cam.width, cam.height)
        elif isinstance(message, Detections):
            for box, cls, tid in zip(
                message.boxes, message.class_ids, message.track_ids, strict=True
            ):
                if tid <= 0:
                    continue  # not (yet) tracked
                b = building(message.camera, tid)
                b.samples[env.capture_ts_us] = box
                b.votes[cls] += 1
        elif isinstance(message, TrackEnd):
            b = building(message.camera, message.track_id)
            b.end = message
            done.append(open_.pop((message.camera, message.track_id)))
        elif isinstance(message, TrackSummary):
            b = building(message.camera, message.track_id)
            for ts, point in zip(message.point_times_us(), message.path.points, strict=True):
                b.samples.setdefault(ts, point.box)
            b.summary_votes = dict(message.class_votes)
            if message.final:
                b.final = True
                done.append(open_.pop((message.camera, message.track_id)))
    everything = sorted([*done, *open_.values()], key=lambda b: order[id(b)])
    tracks = [t for b in everything if (t := _finish(b, complete)) is not None]
    return Collected(tuple(tracks), start_us, sizes, counts)


def read_messages(path: Path) -> Iterator[Envelope]:
    """Every envelope of a message file (``semcom edge run --out``), control messages too."""
    from shared.errors import ProtocolError

    with open(path, "rb") as fh:
        try:
            for frame in read_frames(fh):
                yield decode(frame)
        except ProtocolError as exc:
            raise MessageFileError(f"{path}: damaged message record: {exc}") from None
