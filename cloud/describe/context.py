"""What a description is about: the catalog's facts for one camera and time window.

:func:`build_context` reads the window's detections, their tracks and the per-frame counts,
and derives per track its class, time span, apparent speed (image widths per second, see
:mod:`cloud.describe.motion`) and how long it has stood still. It also picks the detections
whose rebuilt crops are shown to a multimodal model: at most ``max_images``, one per track
first (its largest embedded box), longest tracks first. When the camera has an analytics
scene, the window's analytics figures come along (:mod:`cloud.describe.figures`). Everything
is plain data; the LLM gets :meth:`DescribeContext.prompt_data` as JSON, the rules describer
reads the fields.
Times are microseconds since the Unix epoch; the window is half-open, ``from <= t < to``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.engine import Engine

from cloud.analytics.queries import WindowFigures, window_figures
from cloud.describe.errors import ContextError
from cloud.describe.figures import prompt_figures, track_speed
from cloud.describe.motion import DEFAULT_ASPECT, Observation, apparent_speed, still_for_s
from cloud.describe.schema import VEHICLES, class_name
from cloud.schema import cameras, detections, frame_counts, tracks


@dataclass(frozen=True)
class Window:
    """A camera and half-open time window, and why it is described."""

    camera_id: int
    from_us: int
    to_us: int
    reason: str = "window"

    @property
    def duration_s(self) -> float:
        return (self.to_us - self.from_us) / 1e6


@dataclass(frozen=True)
class ContextSettings:
    max_detections: int = 5000
    max_images: int = 8
    stopped_after_s: float = 30.0
    stopped_max_move: float = 0.02  # image widths


@dataclass(frozen=True)
class TrackFacts:
    id: int
    class_id: int
    first_us: int  # first and last box in the window
    last_us: int
    boxes: int
    first_box: tuple[float, float, float, float]
    last_box: tuple[float, float, float, float]
    speed: float | None  # image widths per second
    still_s: float  # time stood still up to its last box (s)
    ended: bool  # the edge reported the track's end (it may be after the window)
    stopped: bool  # a vehicle that stood still for at least ``stopped_after_s``


@dataclass(frozen=True)
class ClassFrames:
    """Per-frame counts of one class in the window (the edge's ``FrameCounts``)."""

    peak: int
    mean: float  # over frames with a count row
    frames: int


@dataclass(frozen=True)
class DescribeContext:
    window: Window
    camera: str
    edge_id: str
    frame_size: tuple[int, int] | None  # width, height (px), when announced
    detections: int  # in the window (all of them)
    detections_read: int  # of which read (at most max_detections)
    tracks: tuple[TrackFacts, ...]
    untracked: dict[int, int]  # class id -> most boxes without a track in one frame
    frame_counts: dict[int, ClassFrames]
    image_ids: tuple[int, ...]  # detections whose rebuilt crops may be shown
    image_labels: dict[int, str]  # detection id -> what the crop is (track, class, time)
    settings: ContextSettings
    analytics: WindowFigures | None = None  # the scene's figures, when the camera has one

    def track_classes(self) -> dict[int, int]:
        return {t.id: t.class_id for t in self.tracks}

    def stopped(self) -> list[TrackFacts]:
        return [t for t in self.tracks if t.stopped]

    def classes(self) -> dict[int, int]:
        """Distinct objects per class id: its tracks, or a peak per-frame count when higher
        (untracked boxes in one frame, or the edge's frame counts)."""
        out: Counter[int] = Counter(t.class_id for t in self.tracks)
        for class_id, n in self.untracked.items():
            out[class_id] = max(out[class_id], n)
        for class_id, frames in self.frame_counts.items():
            out[class_id] = max(out[class_id], frames.peak)
        return dict(out)

    def prompt_data(self) -> dict[str, Any]:
        """The metadata sent to the LLM as JSON (times in seconds from the window start)."""
        t0 = self.window.from_us

        def rel(us: int) -> float:
            return round((us - t0) / 1e6, 2)

        def box(b: tuple[float, float, float, float]) -> list[float]:
            return [round(v, 3) for v in b]

        data: dict[str, Any] = {
            "camera": self.camera,
            "window": {
                "start_utc_us": self.window.from_us,
                "duration_s": round(self.window.duration_s, 1),
                "reason": self.window.reason,
            },
            "frame_size_px": list(self.frame_size) if self.frame_size else None,
            "detections": self.detections,
            "detections_read": self.detections_read,
            "tracks": [
                {
                    "track_id": t.id,
                    "class": class_name(t.class_id),
                    "first_s": rel(t.first_us),
                    "last_s": rel(t.last_us),
                    "boxes": t.boxes,
                    "first_box": box(t.first_box),
                    "last_box": box(t.last_box),
                    "apparent_speed_widths_per_s": None if t.speed is None else round(t.speed, 3),
                    "still_for_s": round(t.still_s, 1),
                    "stopped_vehicle": t.stopped,
                }
                for t in self.tracks
            ],
            "untracked_peak_per_frame": {
                class_name(c): n for c, n in sorted(self.untracked.items())
            },
            "per_frame_counts": {
                class_name(c): {"peak": f.peak, "mean": round(f.mean, 2), "frames": f.frames}
                for c, f in sorted(self.frame_counts.items())
            },
            "notes": [
                "boxes are [x1, y1, x2, y2] normalised to 0-1 of the frame",
                "apparent speed is in image widths per second (camera not calibrated)",
            ],
        }
        if self.analytics is not None:
            figures = self.analytics
            for entry in data["tracks"]:
                entry["measured_speed"] = track_speed(figures, entry["track_id"])
            data["analytics"] = prompt_figures(figures, self.track_classes(), rel)
            unit = "km/h" if figures.calibrated else "image widths per second"
            data["notes"].append(
                "analytics: counted line crossings, zone entries and incidents of the camera's "
                f"scene in this window; measured speeds are in {unit}"
            )
        return data


def build_context(engine: Engine, window: Window, s: ContextSettings) -> DescribeContext:
    """Read the catalog for ``window`` (blocking: run it in a worker thread)."""
    in_window = (
        detections.c.camera_id == window.camera_id,
        detections.c.ts_us >= window.from_us,
        detections.c.ts_us < window.to_us,
    )
    with engine.connect() as conn:
        cam = conn.execute(select(cameras).where(cameras.c.id == window.camera_id)).first()
        if cam is None:
            raise ContextError(f"no camera with id {window.camera_id} in the catalog")
        total = int(conn.execute(select(func.count()).where(*in_window)).scalar_one())
        rows = conn.execute(
            select(
                detections.c.id,
                detections.c.track_id,
                detections.c.ts_us,
                detections.c.class_id,
                detections.c.confidence,
                detections.c.x1,
                detections.c.y1,
                detections.c.x2,
                detections.c.y2,
                detections.c.has_embedding,
            )
            .where(*in_window)
            .order_by(detections.c.ts_us, detections.c.id)
            .limit(s.max_detections)
        ).all()
        track_ids = sorted({int(r.track_id) for r in rows if r.track_id is not None})
        track_rows = {}
        for start in range(0, len(track_ids), 500):
            chunk = track_ids[start : start + 500]
            for t in conn.execute(
                select(tracks.c.id, tracks.c.class_id, tracks.c.ended).where(tracks.c.id.in_(chunk))
            ):
                track_rows[int(t.id)] = t
        counts = conn.execute(
            select(
                frame_counts.c.class_id,
                func.max(frame_counts.c.count),
                func.sum(frame_counts.c.count),
                func.count(distinct(frame_counts.c.ts_us)),
            )
            .where(
                frame_counts.c.camera_id == window.camera_id,
                frame_counts.c.ts_us >= window.from_us,
                frame_counts.c.ts_us < window.to_us,
            )
            .group_by(frame_counts.c.class_id)
        ).all()
        figures = window_figures(conn, window.camera_id, window.from_us, window.to_us, track_ids)
    size = (int(cam.width), int(cam.height)) if cam.width and cam.height else None
    aspect = size[1] / size[0] if size else DEFAULT_ASPECT

    by_track: dict[int, list[Any]] = defaultdict(list)
    per_frame: Counter[tuple[int, int]] = Counter()  # (class, ts) -> untracked boxes
    for r in rows:
        if r.track_id is None:
            per_frame[int(r.class_id), int(r.ts_us)] += 1
        else:
            by_track[int(r.track_id)].append(r)
    untracked: dict[int, int] = {}
    for (class_id, _ts), n in per_frame.items():
        untracked[class_id] = max(untracked.get(class_id, 0), n)
    facts = []
    for track_id, mine in by_track.items():
        obs = [Observation(int(r.ts_us), (r.x1, r.y1, r.x2, r.y2)) for r in mine]
        row = track_rows.get(track_id)
        votes = Counter(int(r.class_id) for r in mine)
        class_id = (
            int(row.class_id) if row is not None and row.class_id is not None
            else votes.most_common(1)[0][0]
        )  # fmt: skip
        still = still_for_s(obs, s.stopped_max_move, aspect)
        fact = TrackFacts(
            id=track_id,
            class_id=class_id,
            first_us=obs[0].ts_us,
            last_us=obs[-1].ts_us,
            boxes=len(obs),
            first_box=obs[0].box,
            last_box=obs[-1].box,
            speed=apparent_speed(obs, aspect),
            still_s=still,
            ended=bool(row.ended) if row is not None else False,
            stopped=class_id in VEHICLES and still >= s.stopped_after_s,
        )
        facts.append(fact)
    facts.sort(key=lambda t: (-t.boxes, t.id))
    image_ids, labels = _pick_images(facts, by_track, rows, window, s.max_images)
    return DescribeContext(
        window=window,
        camera=str(cam.name),
        edge_id=str(cam.edge_id),
        frame_size=size,
        detections=total,
        detections_read=len(rows),
        tracks=tuple(facts),
        untracked=untracked,
        frame_counts={
            int(c[0]): ClassFrames(int(c[1]), float(c[2]) / max(int(c[3]), 1), int(c[3]))
            for c in counts
        },
        image_ids=image_ids,
        image_labels=labels,
        settings=s,
        analytics=figures,
    )


def _area(r: Any) -> float:
    return float((r.x2 - r.x1) * (r.y2 - r.y1))


def _pick_images(
    facts: list[TrackFacts],
    by_track: dict[int, list[Any]],
    rows: Sequence[Any],
    window: Window,
    limit: int,
) -> tuple[tuple[int, ...], dict[int, str]]:
    """One embedded detection per track (its largest box), longest tracks first, then
    untracked embedded detections by confidence; at most ``limit``."""
    picked: list[int] = []
    labels: dict[int, str] = {}

    def label(r: Any, track: int | None) -> str:
        who = f"track {track}" if track is not None else "untracked"
        t = (int(r.ts_us) - window.from_us) / 1e6
        return f"detection {int(r.id)}: {class_name(int(r.class_id))}, {who}, at {t:.1f} s"

    for fact in facts:
        if len(picked) >= limit:
            break
        embedded = [r for r in by_track[fact.id] if r.has_embedding]
        if embedded:
            best = max(embedded, key=_area)
            picked.append(int(best.id))
            labels[int(best.id)] = label(best, fact.id)
    loose = sorted(
        (r for r in rows if r.track_id is None and r.has_embedding),
        key=lambda r: -float(r.confidence),
    )
    for r in loose[: max(0, limit - len(picked))]:
        picked.append(int(r.id))
        labels[int(r.id)] = label(r, None)
    return tuple(picked), labels
