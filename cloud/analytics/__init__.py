"""Traffic analytics: per-camera scenes and a pure engine from tracks to events.

- :mod:`.scene`: the scene file (lines, zones, ground calibration; ``deploy/scenes``) as
  validated pydantic models, with a content-hash version;
- :mod:`.calibration`: the image-to-ground homography (OpenCV) and its checks;
- :mod:`.engine`: :func:`~.engine.compile_scene` and :func:`~.engine.analyze_track`, built on
  :mod:`.geometry` (reference points, meeting points with shapely), :mod:`.crossings`,
  :mod:`.zones` and :mod:`.speed`;
- :mod:`.events`: the event dataclasses and their deterministic identities;
- :mod:`.congestion`: a zone's congestion level from occupancy and mean speed.

Those modules touch neither the database nor the network. The runner that applies them to
what the cloud ingests does:

- :mod:`.scenes`: scenes in the catalog (current per camera, history);
- :mod:`.samples`: the tracks' change feed and their samples;
- :mod:`.store`: events upserted by key, the per-camera watermark;
- :mod:`.runner`: :class:`~.runner.AnalyticsRunner`, the cloud's background task;
- :mod:`.congestion_windows`, :mod:`.congestion_store`: each zone's congestion per time
  window from the stored stays, its rows and its change events;
- :mod:`.queries`: events, count series, a window's figures and congestion windows for the
  API and describer;
- :mod:`.metrics`, :mod:`.config`, :mod:`.cli` (``semcom cloud scene``).
"""
