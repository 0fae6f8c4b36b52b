"""Tracks rebuilt from a recorded message stream (``semcom.analytics_tracks``), then analysed.

The stream is written the way ``semcom edge run --out`` writes it (the edge's Outbox into a
FileSink), with messages built from :mod:`shared.messages`: Detections every 5 frames, a
TrackEnd with a path, a track whose TrackEnd never came, one known only from its TrackEnd,
a track id reused after its TrackEnd, and untracked boxes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cloud.analytics.engine import analyze_track, compile_scene
from cloud.analytics.scene import parse_scene
from edge.capture import Frame, SourceStats
from edge.pipeline import Outbox
from edge.sink import FileSink
from semcom.analytics_edge import ClipSource, ConstantEncoder
from semcom.analytics_report import build_report, report_text
from semcom.analytics_tracks import (
    Collected,
    MessageFileError,
    collect_tracks,
    read_messages,
)
from shared.geometry import Box
from shared.messages import (
    CameraInfo,
    CodecRef,
    Detections,
    FrameCounts,
    Hello,
    Message,
    TrackEnd,
    TrackSummary,
)
from shared.pathwire import PathPoint, TrackPath
from shared.vectors import create_codec

T0 = 1_700_000_000_000_000
FRAME_US = 40_000  # 25 fps
EVERY = 5  # Detections every 5 frames, the edge's default
CAM = "cam-01"
CAR, PERSON, BICYCLE, TRUCK = 2, 0, 1, 7


def _hello() -> Hello:
    codec = create_codec("f16", 8)
    return Hello(
        "test",
        "detector.onnx",
        "constant",
        8,
        (CodecRef(codec.codec_id, codec.content_hash),),
        (CameraInfo(CAM, 640, 360, 25.0),),
        True,
    )


def _box(x: float, y: float, w: float = 0.1, h: float = 0.1) -> Box:
    """A box whose bottom centre (the analytics' reference point) is (x, y)."""
    return Box(x - w / 2, y - h, x + w / 2, y)


def _t(frame: int) -> int:
    return T0 + frame * FRAME_US


def _car_y(frame: int) -> float:
    return 0.9 - 0.01 * frame  # drives up the image, crossing y = 0.6 at frame 30


def _person_y(frame: int) -> float:
    return 0.3 + 0.01 * frame  # walks down the image, crossing y = 0.6 at frame 30


def _stream() -> list[tuple[int, Message]]:
    """(capture time, message) in the order an edge would send them."""
    out: list[tuple[int, Message]] = []
    for f in range(0, 60, EVERY):
        boxes, classes, ids = [_box(0.8, 0.95, 0.05, 0.05)], [CAR], [0]  # untracked
        if f <= 40:  # car, track 1, frames 0..40 (a TrackEnd follows at frame 44)
            boxes.append(_box(0.55, _car_y(f)))
            classes.append(TRUCK if f == 10 else CAR)  # a stray vote
            ids.append(1)
        boxes.append(_box(0.2, _person_y(f)))  # person, track 2, to the stream's end
        classes.append(BICYCLE if f == 5 else PERSON)
        ids.append(2)
        if f >= 50:  # track id 1 again, after its TrackEnd: a new track
            boxes.append(_box(0.7, 0.3))
            classes.append(CAR)
            ids.append(1)
        out.append(
            (
                _t(f),
                Detections(CAM, tuple(boxes), tuple(classes), (0.9,) * len(ids), tuple(ids)),
            )
        )
        out.append((_t(f), FrameCounts(CAM, {CAR: 2, PERSON: 1})))
        if f == 40:
            # last seen at frame 43 (between two Detections), ended 30 frames later in
            # reality; the path's ends are exact, its middle thinned
            thinned = (_box(0.55, _car_y(0)), _box(0.55, _car_y(20)), _box(0.55, _car_y(43)))
            end = TrackEnd(CAM, 1, _t(0), _t(43), 44, {CAR: 40, TRUCK: 4}, thinned)
            out.append((_t(44), end))
        if f == 45:
            # track 3: only a TrackEnd (an edge that sends no boxes), moving right across
            # x = 0.5 at y = 0.4, seen in frames 20..45
            path = tuple(_box(x, 0.4, 0.04, 0.04) for x in (0.3, 0.4, 0.5, 0.6, 0.7))
            out.append((_t(45), TrackEnd(CAM, 3, _t(20), _t(45), 26, {BICYCLE: 26}, path)))
    return out


def _record(path: Path, stream: list[tuple[int, Message]]) -> None:
    """Write like ``edge run --out``: the Hello as a control message, then the data."""
    sink = FileSink(path)
    outbox = Outbox("edge-test", sink)
    outbox.put(_t(0), _hello(), control=True)
    for ts, message in stream:
        outbox.put(ts, message)
    sink.close()


@pytest.fixture
def collected(tmp_path: Path) -> Collected:
    path = tmp_path / "clip.semcom"
    _record(path, _stream())
    return collect_tracks(read_messages(path))


def _tuple(box: Box) -> tuple[float, float, float, float]:
    return (box.x1, box.y1, box.x2, box.y2)


def test_tracks_are_rebuilt_with_their_timed_boxes(collected: Collected) -> None:
    by_key = {t.track.key: t for t in collected.tracks}
    assert list(by_key) == ["cam-01/1", "cam-01/2", "cam-01/3", "cam-01/1.2"]
    assert collected.start_us == _t(0)
    assert collected.frame_sizes == {CAM: (640, 360)}
    assert collected.messages["Hello"] == 1
    assert collected.messages["Detections"] == 12
    assert collected.messages["TrackEnd"] == 2

    car = by_key["cam-01/1"]
    expected = [(_t(f), _tuple(_box(0.55, _car_y(f)))) for f in range(0, 41, EVERY)]
    expected.append((_t(43), _tuple(_box(0.55, _car_y(43)))))  # the path's last box
    assert list(car.track.samples) == expected
    assert car.track.class_id == CAR  # the TrackEnd's votes
    assert car.track.ended
    assert (car.detections_samples, car.path_timed) == (9, False)

    person = by_key["cam-01/2"]
    assert [t for t, _ in person.track.samples] == [_t(f) for f in range(0, 60, EVERY)]
    assert person.track.class_id == PERSON  # majority of its Detections
    assert person.track.ended  # the recording is complete


def test_a_track_known_only_from_its_track_end_is_timed_along_its_path(
    collected: Collected,
) -> None:
    only_end = next(t for t in collected.tracks if t.track.key == "cam-01/3")
    assert only_end.path_timed
    assert only_end.detections_samples == 0
    assert [t for t, _ in only_end.track.samples] == [
        _t(20),
        _t(20) + 250_000,
        _t(20) + 500_000,
        _t(20) + 750_000,
        _t(45),
    ]
    assert only_end.track.class_id == BICYCLE


def test_a_reused_track_id_after_its_end_is_a_new_track(collected: Collected) -> None:
    again = next(t for t in collected.tracks if t.track.key == "cam-01/1.2")
    assert again.track_id == 1
    assert [t for t, _ in again.track.samples] == [_t(50), _t(55)]
    assert again.track.class_id == CAR


def test_times_count_from_the_hello_not_from_wall_clock_track_ends(tmp_path: Path) -> None:
    """The TrackEnds an edge sends when its source ends carry the wall clock, which a file
    read faster than real time runs behind: the clip's start is its Hello's frame."""
    path = tmp_path / "clip.semcom"
    behind = T0 - 20_000_000
    last = TrackEnd(CAM, 2, _t(0), _t(55), 56, {PERSON: 56}, (_box(0.2, 0.3), _box(0.2, 0.85)))
    _record(path, [*_stream(), (behind, last)])
    collected = collect_tracks(read_messages(path))
    assert collected.start_us == _t(0)
    person = next(t for t in collected.tracks if t.track.key == "cam-01/2")
    assert person.track.samples[-1][0] == _t(55)


def test_an_unfinished_stream_leaves_open_tracks_open(tmp_path: Path) -> None:
    path = tmp_path / "clip.semcom"
    _record(path, _stream())
    tracks = collect_tracks(read_messages(path), complete=False).tracks
    assert {t.track.key: t.track.ended for t in tracks} == {
        "cam-01/1": True,
        "cam-01/2": False,
        "cam-01/3": True,
        "cam-01/1.2": False,
    }


def test_the_rebuilt_tracks_through_the_engine_and_the_report(collected: Collected) -> None:
    scene = parse_scene(
        {
            "frame": {"width": 640, "height": 360},
            "lines": {
                "across": {"points": [[0.0, 0.6], [1.0, 0.6]], "direction": "left_to_right"},
                "upright": {"points": [[0.5, 0.0], [0.5, 0.5]]},
            },
            "zones": {"top": {"polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5]]}},
        }
    )
    compiled = compile_scene(scene)
    events = {t.track.key: analyze_track(compiled, t.track) for t in collected.tracks}
    report = build_report(
        scene=scene,
        scene_path="scene.yaml",
        collected=collected,
        events=events,
        edge={"frames": 60},
        source="clip.mp4",
    )
    across = report["lines"]["across"]
    # the car drives up (right to left of the line: out), the person walks down (in)
    assert across["by_class"] == {"car": {"in": 0, "out": 1}, "person": {"in": 1, "out": 0}}
    assert (across["in"], across["out"]) == (1, 1)
    # the bicycle known from its TrackEnd crosses x = 0.5 left to right (moving right is
    # from the upright line's right to its left, drawn top to bottom): out
    assert report["lines"]["upright"]["by_class"] == {"bicycle": {"in": 0, "out": 1}}
    crossings = {(c["track"], c["line"]): c for c in report["crossings"]}
    assert crossings[("cam-01/1", "across")]["t_s"] == pytest.approx(1.2, abs=0.01)
    assert crossings[("cam-01/2", "across")]["t_s"] == pytest.approx(1.2, abs=0.01)
    top = report["zones"]["top"]
    assert top["by_class"]["car"]["entries"] == 2  # track 1 drove in, track 1.2 began there
    assert report["tracks"]["total"] == 4
    assert report["tracks"]["timed_from_path"] == 1
    assert report["speeds"]["unit"] == "image_widths/s"
    assert report["notes"] == []
    text = report_text({**report, "edge": _edge_figures()})
    assert "line across:" in text
    assert "  person " in text


def _edge_figures() -> dict[str, object]:
    return {
        "frames": 60,
        "start_s": 0.0,
        "video_s": 2.4,
        "elapsed_s": 1.0,
        "sample_fps": None,
        "detector": "d.onnx",
        "imgsz": 320,
        "tracker": "bytetrack",
        "messages": {"Detections": 12},
    }


def test_a_damaged_message_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.semcom"
    path.write_bytes(b"not a message file")
    with pytest.raises(MessageFileError, match="damaged message record: not a semcom message"):
        list(read_messages(path))


class _Frames:
    """A file-like frame source: 50 frames at 25 fps."""

    live = False
    fps: float | None = 25.0

    def __init__(self) -> None:
        self.stats = SourceStats()

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for i in range(50):
            yield Frame(np.zeros((4, 4, 3), np.uint8), i, T0 + i * FRAME_US)


def test_the_clip_source_skips_and_cuts_by_video_time() -> None:
    seen: list[int] = []
    source = ClipSource(_Frames(), start=0.4, seconds=1.0, on_frame=lambda f: seen.append(f.index))
    indices = [f.index for f in source.frames(threading.Event())]
    assert indices == list(range(10, 35)) == seen


def test_the_constant_encoder_gives_unit_vectors() -> None:
    encoder = ConstantEncoder()
    vectors = encoder.embed(np.zeros((3, 16, 16, 3), np.uint8))
    assert vectors.shape == (3, encoder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_a_summary_only_stream_gives_timed_tracks(tmp_path: Path) -> None:
    """The default (track-level) policy sends no boxes: a keyframe TrackSummary and the final
    one, whose path points carry their own times."""
    path = tmp_path / "summaries.semcom"
    keyframe = TrackSummary(
        CAM,
        4,
        _t(0),
        _t(20),
        21,
        {CAR: 21},
        False,
        TrackPath(
            16, (PathPoint(0, _box(0.55, _car_y(0))), PathPoint(800, _box(0.55, _car_y(20))))
        ),
    )
    final = TrackSummary(
        CAM, 4, _t(0), _t(43), 44, {CAR: 40, TRUCK: 4}, True,
        TrackPath(16, (PathPoint(1720, _box(0.55, _car_y(43))),)),
    )  # fmt: skip
    _record(path, [(_t(20), keyframe), (_t(44), final)])
    collected = collect_tracks(read_messages(path), complete=False)
    (car,) = collected.tracks
    assert [t for t, _ in car.track.samples] == [_t(0), _t(20), _t(43)]
    assert car.track.samples[1][1] == pytest.approx(_tuple(_box(0.55, _car_y(20))), abs=2e-4)
    assert car.track.class_id == CAR
    assert car.track.ended  # the final summary ended it
    assert not car.path_timed
