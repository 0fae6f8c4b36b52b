"""The analytics evaluation's report: events of every track summed up per line, zone and class.

:func:`build_report` turns the rebuilt tracks and the engine's events into one JSON-ready
object (``semcom eval analytics --json`` prints it); :func:`report_text` renders it as
tables. Times are seconds of video (from the clip's first frame, ``--start`` included);
classes are COCO names.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from cloud.analytics.events import (
    Event,
    LineCrossing,
    Speed,
    StoppedVehicle,
    WrongWay,
    ZoneEntry,
    ZoneExit,
)
from cloud.analytics.scene import Scene
from cloud.describe.schema import class_name
from semcom.analytics_tracks import Collected, CollectedTrack

IN_OUT_NOTE = {
    "left_to_right": "in = crossing from its left side to its right",
    "right_to_left": "in = crossing from its right side to its left",
}


def _cls(track: CollectedTrack) -> str:
    cid = track.track.class_id
    return class_name(cid) if cid is not None else "unknown"


def _seconds(at_us: int, start_us: int | None) -> float:
    return round((at_us - (start_us or 0)) / 1e6, 2)


def _stats(values: Sequence[float], digits: int = 2) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "mean": None, "min": None, "max": None}
    return {
        "n": len(values),
        "median": round(statistics.median(values), digits),
        "mean": round(statistics.fmean(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def _lines(
    scene: Scene, events: Sequence[tuple[CollectedTrack, Event]], start_us: int | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines: dict[str, Any] = {}
    for name, spec in scene.lines.items():
        lines[name] = {
            "description": spec.description,
            "direction": spec.direction,
            "meaning": IN_OUT_NOTE[spec.direction],
            "in": 0,
            "out": 0,
            "by_class": {},
        }
    crossings = []
    for track, event in events:
        if not isinstance(event, LineCrossing):
            continue
        line = lines[event.line]
        line[event.direction] += 1
        per = line["by_class"].setdefault(_cls(track), {"in": 0, "out": 0})
        per[event.direction] += 1
        crossings.append(
            {
                "t_s": _seconds(event.at_us, start_us),
                "line": event.line,
                "direction": event.direction,
                "track": track.track.key,
                "class": _cls(track),
            }
        )
    for line in lines.values():
        line["by_class"] = dict(sorted(line["by_class"].items()))
    return lines, crossings


def _zones(scene: Scene, events: Sequence[tuple[CollectedTrack, Event]]) -> dict[str, Any]:
    entries: dict[str, Counter[str]] = defaultdict(Counter)
    exits: dict[str, Counter[str]] = defaultdict(Counter)
    dwell: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for track, event in events:
        if isinstance(event, ZoneEntry):
            entries[event.zone][_cls(track)] += 1
        elif isinstance(event, ZoneExit):
            exits[event.zone][_cls(track)] += 1
            dwell[event.zone][_cls(track)].append(event.dwell_us / 1e6)
    out: dict[str, Any] = {}
    for name, spec in scene.zones.items():
        classes = sorted(set(entries[name]) | set(exits[name]))
        every = [d for values in dwell[name].values() for d in values]
        out[name] = {
            "description": spec.description,
            "entries": sum(entries[name].values()),
            "exits": sum(exits[name].values()),
            "dwell_s": _stats(every),
            "by_class": {
                c: {
                    "entries": entries[name][c],
                    "exits": exits[name][c],
                    "dwell_s": _stats(dwell[name][c]),
                }
                for c in classes
            },
        }
    return out


def _speeds(scene: Scene, events: Sequence[tuple[CollectedTrack, Event]]) -> dict[str, Any]:
    values: dict[str, list[float]] = defaultdict(list)
    for track, event in events:
        if isinstance(event, Speed):
            values[_cls(track)].append(event.value)
    unit = scene.speed_unit
    digits = 1 if unit == "km/h" else 3
    every = [v for vs in values.values() for v in vs]
    return {
        "unit": unit,
        "calibrated": scene.calibration is not None,
        "all": _stats(every, digits),
        "by_class": {c: _stats(values[c], digits) for c in sorted(values)},
    }


def _incidents(
    events: Sequence[tuple[CollectedTrack, Event]], start_us: int | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for track, event in events:
        if isinstance(event, StoppedVehicle):
            detail = f"in the zone since {_seconds(event.since_us, start_us)} s"
        elif isinstance(event, WrongWay):
            detail = f"moved back {event.distance:g} {event.unit} against the zone's direction"
        else:
            continue
        out.append(
            {
                "t_s": _seconds(event.at_us, start_us),
                "kind": event.key.kind,
                "zone": event.zone,
                "track": track.track.key,
                "class": _cls(track),
                "detail": detail,
            }
        )
    return out


def build_report(
    *,
    scene: Scene,
    scene_path: str,
    collected: Collected,
    events: Mapping[str, Sequence[Event]],
    edge: Mapping[str, Any],
    source: str,
    offset_s: float = 0.0,
) -> dict[str, Any]:
    """The report object; ``events`` maps a track's key to the engine's events for it;
    ``offset_s``: the video time of the stream's first message (the analysis' start)."""
    pairs = [(t, e) for t in collected.tracks for e in events.get(t.track.key, ())]
    pairs.sort(key=lambda p: (p[1].at_us, str(p[1].key)))
    start = None if collected.start_us is None else collected.start_us - round(offset_s * 1e6)
    lines, crossings = _lines(scene, pairs, start)
    by_class = Counter(_cls(t) for t in collected.tracks)
    notes = []
    for camera, (w, h) in sorted(collected.frame_sizes.items()):
        if abs(w / h - scene.frame.width / scene.frame.height) > 0.01:
            notes.append(
                f"camera {camera} sends {w}x{h} frames, the scene is drawn on "
                f"{scene.frame.width}x{scene.frame.height}: another aspect, the lines and "
                "zones will be off"
            )
    return {
        "source": source,
        "scene": {
            "path": scene_path,
            "version": scene.version,
            "description": scene.description,
            "frame": [scene.frame.width, scene.frame.height],
        },
        "edge": dict(edge),
        "tracks": {
            "total": len(collected.tracks),
            "by_class": dict(sorted(by_class.items(), key=lambda kv: (-kv[1], kv[0]))),
            "timed_from_path": sum(1 for t in collected.tracks if t.path_timed),
        },
        "lines": lines,
        "zones": _zones(scene, pairs),
        "speeds": _speeds(scene, pairs),
        "incidents": _incidents(pairs, start),
        "crossings": crossings,
        "notes": notes,
    }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def report_text(r: Mapping[str, Any]) -> str:
    """The report as plain tables (the crossings' list only with ``--json``)."""
    e, t = r["edge"], r["tracks"]
    fps = f"sampled at {e['sample_fps']:g} fps" if e.get("sample_fps") else "every frame"
    start = f" from {e['start_s']:g} s" if e.get("start_s") else ""
    out = [
        f"clip: {r['source']}: {e['frames']} frames ({fps}), {e['video_s']:.1f} s of video"
        f"{start}, analysed in {e['elapsed_s']:.1f} s",
        f"edge: detector {e['detector']} at {e['imgsz']} px, tracker {e['tracker']}; "
        f"messages: {', '.join(f'{k} {v}' for k, v in sorted(e['messages'].items()))}",
        f"scene: {r['scene']['path']} (version {r['scene']['version']})",
        f"tracks: {t['total']}"
        + (
            " (" + ", ".join(f"{c} {n}" for c, n in t["by_class"].items()) + ")"
            if t["total"]
            else ""
        )
        + (
            f"; {t['timed_from_path']} timed from their TrackEnd path"
            if t["timed_from_path"]
            else ""
        ),
    ]
    for note in r["notes"]:
        out.append(f"NOTE: {note}")
    for name, line in r["lines"].items():
        out += ["", f"line {name}: {line['description'] or line['meaning']}"]
        out.append(f"  {'class':<12} {'in':>5} {'out':>5} {'total':>6}")
        for cls, c in line["by_class"].items():
            out.append(f"  {cls:<12} {c['in']:>5} {c['out']:>5} {c['in'] + c['out']:>6}")
        out.append(f"  {'all':<12} {line['in']:>5} {line['out']:>5} {line['in'] + line['out']:>6}")
    for name, zone in r["zones"].items():
        d = zone["dwell_s"]
        out += [
            "",
            f"zone {name}: {zone['entries']} entries, {zone['exits']} exits; dwell (s) "
            f"median {_fmt(d['median'], '.1f')}, mean {_fmt(d['mean'], '.1f')}, "
            f"max {_fmt(d['max'], '.1f')}",
        ]
        if zone["by_class"]:
            out.append(f"  {'class':<12} {'entries':>7} {'exits':>6} {'median dwell (s)':>17}")
            for cls, c in zone["by_class"].items():
                med = _fmt(c["dwell_s"]["median"], ".1f")
                out.append(f"  {cls:<12} {c['entries']:>7} {c['exits']:>6} {med:>17}")
    s = r["speeds"]
    unit = s["unit"] + ("" if s["calibrated"] else ", the scene has no calibration")
    out += ["", f"speeds ({unit}): median per track"]
    if s["by_class"]:
        out.append(f"  {'class':<12} {'tracks':>6} {'median':>8} {'min':>8} {'max':>8}")
        for cls, c in [*s["by_class"].items(), ("all", s["all"])]:
            out.append(
                f"  {cls:<12} {c['n']:>6} {_fmt(c['median'], '.3g'):>8} "
                f"{_fmt(c['min'], '.3g'):>8} {_fmt(c['max'], '.3g'):>8}"
            )
    else:
        out.append("  none measured")
    out += ["", f"incidents: {len(r['incidents']) or 'none'}"]
    for i in r["incidents"]:
        out.append(
            f"  {i['t_s']:>7.2f} s  {i['kind']:<16} {i['zone']}  {i['track']} "
            f"({i['class']}): {i['detail']}"
        )
    return "\n".join(out)
