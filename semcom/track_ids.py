"""How many track ids the edge makes per real object on a clip (``semcom eval tracks``).

The edge's own detector, tracker, emission policy (with its re-link, edge/relink.py), crop rule
and encoder run on every frame of the clip, inline (no threads, nothing dropped), as
``semcom edge run`` would build them from the same configuration keys. Counted:

- **tracker ids**: distinct ids the tracker handed out (before any re-link);
- **confirmed tracks**: tracks that sent a first-sight embedding, i.e. what the cloud sees as
  objects (tracks shorter than ``policy.confirm_frames`` end silently as flicker);
- **re-linked**: new tracks that continued a just-lost one instead (no first sight sent);
- with a ground truth (the number of real objects in the clip, counted by eye), **ids per real
  object** = confirmed tracks / real objects (1.0 is the ideal; above it, id switches and
  false tracks; below it, missed or merged objects).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge.config import EdgeConfig
from edge.detect import FrameBoxes, TrackingDetector
from shared.messages import Embedding, EmitReason


class TruthError(ValueError):
    """A ground-truth file that cannot be used (the message says why)."""


@dataclass(frozen=True, slots=True)
class Truth:
    """Real objects of a clip, counted by eye (``real_objects``), and what was counted."""

    clip: str
    real_objects: int
    counted: str

    @classmethod
    def load(cls, path: Path) -> Truth:
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise TruthError(f"ground truth {path}: {exc}") from None
        if not isinstance(data, dict):
            raise TruthError(f"ground truth {path}: expected a mapping, got {type(data).__name__}")
        missing = [k for k in ("clip", "real_objects", "counted") if k not in data]
        if missing:
            raise TruthError(f"ground truth {path}: missing key(s) {', '.join(missing)}")
        n = data["real_objects"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise TruthError(
                f"ground truth {path}: real_objects must be an integer >= 1, got {n!r}"
            )
        return cls(str(data["clip"]), n, str(data["counted"]))


class CountingDetector:
    """A :class:`~edge.detect.TrackingDetector` that records the distinct tracker ids."""

    def __init__(self, inner: TrackingDetector) -> None:
        self.inner = inner
        self.name = inner.name
        self.ids: set[int] = set()

    def track(self, image: NDArray[np.uint8]) -> FrameBoxes:
        boxes = self.inner.track(image)
        self.ids.update(int(v) for v in boxes.track_ids if v > 0)
        return boxes

    def reset(self) -> None:
        self.inner.reset()


@dataclass(frozen=True)
class TrackCount:
    """What the edge did on the clip (see the module docstring)."""

    source: str
    frames: int
    video_s: float
    tracker_ids: int
    confirmed_tracks: int
    confirmed_by_class: dict[str, int]
    relinked: int
    flicker_tracks: int
    first_sight_embeddings: int
    embeddings_sent: int
    settings: dict[str, Any]

    def to_dict(self, truth: Truth | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "frames": self.frames,
            "video_s": round(self.video_s, 2),
            "tracker_ids": self.tracker_ids,
            "confirmed_tracks": self.confirmed_tracks,
            "confirmed_by_class": self.confirmed_by_class,
            "relinked": self.relinked,
            "flicker_tracks": self.flicker_tracks,
            "first_sight_embeddings": self.first_sight_embeddings,
            "embeddings_sent": self.embeddings_sent,
            "settings": self.settings,
        }
        if truth is not None:
            out["real_objects"] = truth.real_objects
            out["real_objects_counted"] = truth.counted
            out["ids_per_real_object"] = round(self.confirmed_tracks / truth.real_objects, 3)
            out["tracker_ids_per_real_object"] = round(self.tracker_ids / truth.real_objects, 3)
        return out


def count_tracks(
    config: EdgeConfig,
    on_frame: Callable[[int], object] | None = None,
    max_frames: int | None = None,
) -> TrackCount:
    """Run the edge's pipeline on ``config.source`` (every frame, unpaced; the first
    ``max_frames`` only if given) and count."""
    import threading

    from edge.capture import open_source
    from edge.detect import Detector
    from edge.embed import build_encoder
    from edge.pipeline import EdgePipeline
    from edge.policy import EmissionPolicy
    from shared.vectors import create_codec

    source = open_source(config.source.model_copy(update={"pace": False, "loop": False}))
    detector = CountingDetector(Detector(config.detector))
    encoder = build_encoder(config.encoder)
    policy = EmissionPolicy(config.policy, config.source.camera_id)
    pipeline = EdgePipeline(
        detector, encoder, create_codec("f32", encoder.dim), policy, config.crop.scale
    )
    frames, first_us, last_us = 0, None, 0
    embeddings: list[Embedding] = []
    for frame in source.frames(threading.Event()):
        first_us = frame.capture_ts_us if first_us is None else first_us
        last_us = frame.capture_ts_us
        frames += 1
        out = pipeline.process(frame)
        embeddings += [m for _, m in out if isinstance(m, Embedding)]
        if on_frame is not None:
            on_frame(frames)
        if max_frames is not None and frames >= max_frames:
            break
    pipeline.finish()
    firsts = [e for e in embeddings if e.reason is EmitReason.FIRST_SIGHT]
    names: dict[int, str] = getattr(detector.inner, "class_names", {})
    by_class = Counter(names.get(e.class_id, str(e.class_id)) for e in firsts)
    stats = policy.stats
    c = config
    return TrackCount(
        source=c.source.uri,
        frames=frames,
        video_s=(last_us - (first_us or 0)) / 1e6,
        tracker_ids=len(detector.ids),
        confirmed_tracks=len({e.track_id for e in firsts}),
        confirmed_by_class=dict(sorted(by_class.items())),
        relinked=stats.relinked,
        flicker_tracks=stats.flicker_tracks,
        first_sight_embeddings=len(firsts),
        embeddings_sent=len(embeddings),
        settings={
            "detector": detector.name,
            "conf": c.detector.conf,
            "tracker": c.detector.tracker,
            "tracking": c.detector.tracking.model_dump(),
            "confirm_frames": c.policy.confirm_frames,
            "lost_frames": c.policy.lost_frames,
            "relink_window_s": c.policy.relink_window_s,
            "relink_min_cosine": c.policy.relink_min_cosine,
            "relink_max_offset": c.policy.relink_max_offset,
            "encoder": encoder.name,
            "random_init_encoder": encoder.random_init,
        },
    )
