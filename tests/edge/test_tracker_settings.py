"""detector.tracking reaches ultralytics: the tracker YAML the detector hands to ``track``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.config import DetectorConfig, load_config
from edge.detect import tracker_file
from edge.errors import ConfigError


@pytest.mark.parametrize("tracker", ["bytetrack", "botsort"])
def test_the_settings_are_written_over_the_trackers_own(tmp_path: Path, tracker: str) -> None:
    config = DetectorConfig.model_validate(
        {
            "tracker": tracker,
            "settings_dir": tmp_path,
            "tracking": {"track_buffer": 90, "match_thresh": 0.9},
        }
    )
    path = tracker_file(config)
    assert path.parent == tmp_path
    data = yaml.safe_load(path.read_text())
    assert data["tracker_type"] == tracker
    assert (data["track_buffer"], data["match_thresh"]) == (90, 0.9)
    assert (data["new_track_thresh"], data["track_low_thresh"]) == (0.25, 0.1)
    if tracker == "botsort":
        assert "gmc_method" in data  # the tracker's own other keys are kept
    assert tracker_file(config) == path  # the same settings, the same file
    other = config.model_copy(
        update={"tracking": config.tracking.model_copy(update={"track_buffer": 30})}
    )
    assert tracker_file(other) != path


def test_the_defaults_are_the_measured_ones() -> None:
    c = DetectorConfig()
    assert c.conf == 0.1
    assert (c.tracking.track_buffer, c.tracking.match_thresh) == (60, 0.95)


def test_a_bad_tracking_value_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"detector\.tracking\.match_thresh"):
        load_config(
            None, {"source.uri": "x.mp4", "detector.tracking.match_thresh": 1.5}, environ={}
        )


def test_the_policy_holds_a_track_as_long_as_the_tracker_can_refind_it() -> None:
    config = load_config(None, {"source.uri": "x.mp4"}, environ={})
    assert config.policy.lost_frames >= config.detector.tracking.track_buffer
    raised = load_config(
        None,
        {"source.uri": "x.mp4", "detector.tracking.track_buffer": 90, "policy.lost_frames": 90},
        environ={},
    )
    assert raised.policy.lost_frames == 90


def test_a_policy_that_ends_tracks_the_tracker_still_holds_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"policy\.lost_frames \(30\) is below detector\.tracking\.track_buffer \(60\)",
    ):
        load_config(None, {"source.uri": "x.mp4", "policy.lost_frames": 30}, environ={})
