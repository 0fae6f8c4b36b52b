"""Traffic analytics: per-camera scenes and a pure engine from tracks to events.

- :mod:`.scene`: the scene file (lines, zones, ground calibration; ``deploy/scenes``) as
  validated pydantic models, with a content-hash version;
- :mod:`.calibration`: the image-to-ground homography (OpenCV) and its checks;
- :mod:`.engine`: :func:`~.engine.compile_scene` and :func:`~.engine.analyze_track`, built on
  :mod:`.geometry` (reference points, meeting points with shapely), :mod:`.crossings`,
  :mod:`.zones` and :mod:`.speed`;
- :mod:`.events`: the event dataclasses and their deterministic identities;
- :mod:`.congestion`: a zone's congestion level from occupancy and mean speed.

Nothing here touches the database or the network: a runner feeds it tracks and stores events.
"""
