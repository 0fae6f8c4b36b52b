"""Re-link (edge/relink.py) through the emission policy, with hand-made tracks.

Boxes are 40x30 px (a side of 40 px) moving right at 10 px per frame (25 fps: 250 px/s) unless
a test says otherwise; a lost track's predicted centre moves on at that velocity.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import PolicyConfig
from edge.detect import FrameBoxes
from edge.policy import EmissionPolicy
from edge.relink import MATCH_DELAY_S, RENAMED_OFFSET
from shared.messages import Detections, EmitReason, TrackEnd, TrackSummary

FPS = 25
W, H = 640, 360


def frame_boxes(*tracks: tuple[int, float, float]) -> FrameBoxes:
    """(tracker id, x, y) per box of 40x30 px at (x, y)."""
    return FrameBoxes(
        np.asarray([[x, y, x + 40, y + 30] for _, x, y in tracks], np.float32).reshape(-1, 4),
        np.full(len(tracks), 2, np.int64),
        np.full(len(tracks), 0.9, np.float32),
        np.asarray([t for t, _, _ in tracks], np.int64),
    )


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values + (0.0,) * (8 - len(values)), np.float32)
    out: np.ndarray = v / np.linalg.norm(v)
    return out


A = unit(1)  # the object's look
A2 = unit(1, 0.2)  # the same object, a little different (cosine 0.98)
B = unit(0, 1)  # another object (cosine 0 with A)


class Script:
    """Frames at 25 fps through the policy; embedding requests answered by ``looks`` (per
    tracker id as the detector gave it: the vector of the crop)."""

    def __init__(self, **config: object) -> None:
        base: dict[str, object] = {
            "confirm_frames": 3,
            "lost_frames": 30,
            "relink_window_s": 2.0,
            "relink_min_cosine": 0.8,
            "relink_max_offset": 1.0,
            "check_interval_s": 100.0,
            "keyframe_interval_s": 100.0,
            "counts_every_frames": 0,
            "detections_every_frames": 1,
        }
        base.update(config)
        self.policy = EmissionPolicy(PolicyConfig.model_validate(base), "cam-01")
        self.index = 0
        self.first_sights: list[int] = []  # output track ids that sent a first sight
        self.messages: list[object] = []

    def frame(self, looks: dict[int, np.ndarray], *tracks: tuple[int, float, float]) -> None:
        ts = 1_000_000 + self.index * 1_000_000 // FPS
        fb = frame_boxes(*tracks)
        messages, requests = self.policy.observe(self.index, ts, W, H, fb)
        self.messages += messages
        self.index += 1
        raw_of = {int(o): int(r) for o, r in zip(self._last_ids(), fb.track_ids, strict=False)}
        for r in requests:
            vector = looks[raw_of.get(r.track_id, r.track_id)]
            if self.policy.on_embedding(r, vector) and r.reason is EmitReason.FIRST_SIGHT:
                self.first_sights.append(r.track_id)

    def _last_ids(self) -> list[int]:
        last = [m for m in self.messages if isinstance(m, Detections)]
        return list(last[-1].track_ids) if last else []

    def run(
        self, frames: range, looks: dict[int, np.ndarray], *tracks: tuple[int, float, float]
    ) -> None:
        """Each frame of ``frames``: the tracks (id, x at frame 0, y), moving 10 px/frame."""
        for i in frames:
            self.frame(looks, *((t, x + 10 * i, y) for t, x, y in tracks))

    def ends(self) -> list[TrackEnd | TrackSummary]:
        """Each track's final message (a TrackEnd, or a final TrackSummary)."""
        out = self.messages + self.policy.flush()
        return [
            m for m in out if isinstance(m, TrackEnd) or (isinstance(m, TrackSummary) and m.final)
        ]

    def ids_seen(self) -> set[int]:
        return {t for m in self.messages if isinstance(m, Detections) for t in m.track_ids}


def occluded(script: Script, new_look: np.ndarray, *, dx: float = 0.0, gap: int = 5) -> None:
    """Track 1 for frames 0-9, nothing for ``gap`` frames, then tracker id 2 where track 1
    would be (shifted ``dx`` px) for 10 frames."""
    script.run(range(10), {1: A}, (1, 20.0, 100.0))
    script.run(range(10, 10 + gap), {})
    script.run(range(10 + gap, 20 + gap), {2: new_look}, (2, 20.0 + dx, 100.0))


def test_agreeing_position_and_look_continue_the_lost_track() -> None:
    s = Script()
    occluded(s, A2)
    assert s.first_sights == [1]  # no first sight for tracker id 2
    assert s.policy.stats.relinked == 1
    link = s.policy.relinker.links[-1]
    assert (link.new_id, link.old_id) == (2, 1)
    assert link.cosine == pytest.approx(float(A @ A2))
    assert link.gap_s == pytest.approx(6 / FPS)
    ends = s.ends()
    assert [(e.track_id, e.frames) for e in ends] == [(1, 20)]  # one track, both spells
    assert s.ids_seen() == {1, 2}  # id 2 in the boxes before its first sight, then id 1
    last = [m for m in s.messages if isinstance(m, Detections)][-1]
    assert last.track_ids == (1,)


def test_far_from_the_predicted_position_is_a_new_track() -> None:
    s = Script()
    occluded(s, A2, dx=60.0)  # 1.5 box sides from where track 1 would be
    assert s.first_sights == [1, 2]
    assert s.policy.stats.relinked == 0
    assert sorted(e.track_id for e in s.ends()) == [1, 2]


def test_a_near_offset_within_tolerance_still_links() -> None:
    s = Script()
    occluded(s, A2, dx=30.0)  # 0.75 box sides
    assert s.first_sights == [1]


def test_a_different_look_is_a_new_track() -> None:
    s = Script()
    occluded(s, B)
    assert s.first_sights == [1, 2]
    assert s.policy.stats.relinked == 0


def test_lost_longer_than_the_window_is_a_new_track() -> None:
    s = Script(relink_window_s=0.5)
    occluded(s, A, gap=15)  # lost 16 frames = 0.64 s
    assert s.first_sights == [1, 2]
    s = Script(relink_window_s=0.5)
    occluded(s, A, gap=10)  # 0.44 s
    assert s.first_sights == [1]


def test_window_zero_never_relinks() -> None:
    s = Script(relink_window_s=0.0)
    occluded(s, A)
    assert s.first_sights == [1, 2]


def test_a_track_lost_longer_than_lost_frames_is_held_for_the_relink() -> None:
    """lost_frames shorter than the gap: track 1 is not ended while a re-link may continue it,
    so the object keeps one lifetime (a reopened, ended track is a second track at the cloud,
    with only the new lifetime's votes: tests/edge/test_relink_catalog.py)."""
    s = Script(lost_frames=3)
    occluded(s, A2, gap=8)
    assert s.first_sights == [1]
    ends = s.ends()
    assert [(e.track_id, e.frames) for e in ends] == [(1, 20)]
    assert isinstance(ends[0], TrackSummary)
    assert ends[0].class_votes == {2: 20}
    assert ends[0].first_seen_us == 1_000_000


def still(script: Script, frames: range, looks: dict[int, np.ndarray], *ids: int) -> None:
    """Frames of parked objects (one per id, 40x30 px at (300, 100 + 50 * k)): no velocity."""
    for _ in frames:
        script.frame(looks, *((t, 300.0, 100.0 + 50 * k) for k, t in enumerate(ids)))


def frame_of_end(script: Script, frames: range, track_id: int) -> int | None:
    """Run empty frames; the first whose observe() gave ``track_id``'s final summary."""
    for index in frames:
        n = len(script.messages)
        still(script, range(index, index + 1), {})
        if any(
            isinstance(m, TrackSummary) and m.final and m.track_id == track_id
            for m in script.messages[n:]
        ):
            return index
    return None


def test_a_held_track_ends_once_no_relink_can_come() -> None:
    """Seen frames 0-9, then nothing: ended once lost longer than the relink window (2 s, 50
    frames: at frame 60) instead of after lost_frames; at once when re-linking is off."""
    for window, ends_at in ((2.0, 60), (0.0, 13)):
        s = Script(lost_frames=3, relink_window_s=window)
        still(s, range(10), {1: A}, 1)
        assert frame_of_end(s, range(10, 70), 1) == ends_at
        assert s.policy.active_tracks == 0


def test_a_new_track_deciding_after_the_window_still_continues_the_lost_one() -> None:
    """Tracker id 2 starts 1.8 s after track 1 was last seen (inside the 2 s window) and sends
    its first sight 10 frames later, past the window: track 1 waits for that decision."""
    s = Script(lost_frames=3, confirm_frames=10)
    still(s, range(10), {1: A}, 1)
    still(s, range(10, 55), {})
    still(s, range(55, 70), {2: A2}, 2)
    assert s.first_sights == [1]
    assert s.policy.stats.relinked == 1
    ends = s.ends()
    assert [(e.track_id, e.frames) for e in ends] == [(1, 25)]


def test_an_undecided_new_track_holds_the_lost_one_only_as_long_as_the_relinker_keeps_it() -> None:
    """Tracker id 2's first-sight requests are never answered (the encoder skips them): track
    1 is ended when the relinker forgets it, relink_window_s + MATCH_DELAY_S after its last
    sighting (7 s, 175 frames: at frame 185)."""
    s = Script(lost_frames=3)
    still(s, range(10), {1: A}, 1)
    still(s, range(10, 55), {})
    for index in range(55, 200):
        ts = 1_000_000 + index * 1_000_000 // FPS
        messages, requests = s.policy.observe(index, ts, W, H, frame_boxes((2, 300.0, 100.0)))
        s.messages += messages
        for r in requests:
            s.policy.on_skipped(r)
        if any(isinstance(m, TrackSummary) and m.track_id == 1 for m in messages):
            assert index == 9 + round((2.0 + MATCH_DELAY_S) * FPS) + 1
            return
    raise AssertionError("track 1 was never ended")


def test_of_two_candidates_the_best_agreeing_one_wins() -> None:
    """Tracks 1 and 3 vanish together; the new track is where both would be (3 is 20 px
    lower), and looks like 3 more than like 1."""
    s = Script()
    looks = {1: A2, 3: A}
    s.run(range(10), looks, (1, 20.0, 100.0), (3, 20.0, 120.0))
    s.run(range(10, 15), {})
    s.run(range(15, 25), {2: unit(1, 0.05)}, (2, 20.0, 110.0))
    assert sorted(s.first_sights) == [1, 3]
    assert (s.policy.relinker.links[-1].new_id, s.policy.relinker.links[-1].old_id) == (2, 3)


def test_the_closer_candidate_wins_when_both_look_alike() -> None:
    s = Script()
    s.run(range(10), {1: A, 3: A}, (1, 20.0, 100.0), (3, 20.0, 130.0))
    s.run(range(10, 15), {})
    s.run(range(15, 25), {2: A}, (2, 20.0, 125.0))
    assert s.policy.relinker.links[-1].old_id == 3


def test_two_tracks_alive_at_the_same_time_are_never_linked() -> None:
    """Tracker id 2 starts while 1 is still seen (same place, same look): two objects."""
    s = Script()
    s.run(range(10), {1: A}, (1, 20.0, 100.0))
    s.run(range(10, 12), {1: A, 2: A}, (1, 20.0, 100.0), (2, 25.0, 100.0))
    s.run(range(12, 22), {2: A}, (2, 25.0, 100.0))
    assert s.first_sights == [1, 2]
    assert s.policy.stats.relinked == 0


def test_the_lost_id_coming_back_after_a_relink_is_another_object() -> None:
    """The tracker re-finds its id 1 while id 2 already continues track 1: renamed."""
    s = Script()
    occluded(s, A2)
    s.run(range(20, 25), {1: A, 2: A2}, (2, 20.0, 100.0), (1, 20.0, 200.0))
    assert s.first_sights == [1, 1 + RENAMED_OFFSET]
    ends = sorted(s.ends(), key=lambda e: e.track_id)
    assert [e.track_id for e in ends] == [1, 1 + RENAMED_OFFSET]
    assert ends[0].frames == 25


def test_unconfirmed_lost_tracks_are_no_candidates() -> None:
    """Track 1 never sent an embedding (seen 2 frames < confirm_frames): nothing to continue."""
    s = Script()
    s.run(range(2), {1: A}, (1, 20.0, 100.0))
    s.run(range(2, 4), {})
    s.run(range(4, 10), {2: A}, (2, 20.0, 100.0))
    assert s.first_sights == [2]
    assert s.policy.stats.relinked == 0


def test_the_offset_is_measured_in_sides_of_the_smaller_box() -> None:
    """A lost 200x150 px box and a new 40x30 px one 60 px from its predicted centre: 0.3 sides
    of the big box, but 1.5 of the small one, so no link (a big box would excuse anything
    near it); the same new box at the predicted centre links (same look)."""
    for dy, linked in ((60.0, False), (0.0, True)):
        policy = EmissionPolicy(
            PolicyConfig(confirm_frames=3, relink_min_cosine=0.8, detections_every_frames=0),
            "cam-01",
        )
        sent: list[int] = []
        for i in range(20):
            ts = 1_000_000 + i * 1_000_000 // FPS
            if i < 10:  # big, still: centre (200, 175)
                fb = FrameBoxes(
                    np.asarray([[100, 100, 300, 250]], np.float32),
                    np.asarray([2]),
                    np.asarray([0.9], np.float32),
                    np.asarray([1]),
                )
            elif i < 12:
                fb = FrameBoxes.empty()
            else:
                fb = frame_boxes((2, 180.0, 160.0 + dy))
            _, requests = policy.observe(i, ts, W, H, fb)
            for r in requests:
                if policy.on_embedding(r, A) and r.reason is EmitReason.FIRST_SIGHT:
                    sent.append(r.track_id)
        assert sent == ([1] if linked else [1, 2]), dy
