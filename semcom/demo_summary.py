"""The demo's summary: one JSON-ready dict (``--json``) and its readable rendering.

Bytes: ``semcom`` is what the edge put on the WebRTC data channel (its messages and their
batch framing, resends included; control messages, heartbeats and the DTLS/SCTP/UDP/IP headers
are not counted); ``raw`` is ``W * H * 3`` per frame the source delivered; ``h264`` those same
frames encoded with libx264 (:mod:`sim.media`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from semcom.demo_edge import EdgeOutcome

RANDOM_INIT_NOTE = (
    "RANDOM-INIT encoder (development only): embeddings, search scores and anything derived "
    "from them carry no meaning"
)
UNTRAINED_DETECTOR_NOTE = (
    "UNTRAINED detector (an ultralytics architecture file, random weights): it finds nothing "
    "meaningful; pass --detector with trained weights (.pt/.onnx/.engine)"
)
#: Descriptions shown in the text summary (all are in the JSON).
SHOWN_DESCRIPTIONS = 3


def _pct(saved: int, of: int | None) -> float | None:
    if not of:
        return None
    return round(100.0 * (1.0 - saved / of), 3)


def bytes_section(edge: EdgeOutcome) -> dict[str, Any]:
    sent, raw, h264 = edge.sent_bytes, edge.raw_bytes, edge.h264_bytes
    frames = max(edge.captured, 1)
    return {
        "semcom_sent": sent,
        "raw_frames": raw,
        "h264": h264,
        "h264_settings": edge.h264_note,
        "reduction_vs_raw_pct": _pct(sent, raw),
        "reduction_vs_h264_pct": _pct(sent, h264),
        "per_frame": {
            "semcom": round(sent / frames, 1),
            "raw": round(raw / frames, 1),
            "h264": None if h264 is None else round(h264 / frames, 1),
        },
        "what_is_counted": (
            "semcom: payload on the WebRTC data channel (messages + batch framing, resends "
            "included; no control messages, heartbeats or DTLS/SCTP/UDP/IP headers); raw: "
            "W*H*3 per frame the source delivered; h264: the same frames, libx264"
        ),
    }


def _notes(edge: EdgeOutcome) -> list[str]:
    notes = [RANDOM_INIT_NOTE] if edge.random_init else []
    if edge.detector.lower().endswith((".yaml", ".yml")):
        notes.append(UNTRAINED_DETECTOR_NOTE)
    return notes


def build_summary(
    *,
    source: dict[str, Any],
    edge: EdgeOutcome,
    cloud: dict[str, Any],
    descriptions: dict[str, Any],
    search: dict[str, Any],
    decoder: dict[str, Any],
    api: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    edge_dict = asdict(edge)
    for key in ("raw_bytes", "h264_bytes", "h264_note", "sent_bytes", "class_names"):
        edge_dict.pop(key)
    summary: dict[str, Any] = {
        "random_init_encoder": edge.random_init,
        "notes": _notes(edge),
        "source": source,
        "edge": edge_dict,
        "bytes": bytes_section(edge),
        "cloud": cloud,
        "descriptions": descriptions,
        "search": search,
        "decoder": decoder,
        "api": api,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    return summary


def _kb(n: int | float | None) -> str:
    if n is None:
        return "n/a"
    if n >= 10e6:
        return f"{n / 1e6:,.1f} MB"
    if n >= 10e3:
        return f"{n / 1e3:,.1f} kB"
    return f"{n:,.0f} B"


def render_text(s: dict[str, Any]) -> str:
    """The summary for people: short sections, numbers with units."""
    lines: list[str] = []
    add = lines.append
    for note in s["notes"]:
        add(f"NOTE: {note}.")
    if s["notes"]:
        add("")
    src, e, b = s["source"], s["edge"], s["bytes"]
    add("semcom demo")
    add(f"  source     {src['label']}")
    size = f"{src['width']}x{src['height']} px"
    if src.get("frame_sizes", 1) > 1:
        size = f"{src['frame_sizes']} frame sizes (the last {size})"
    add(
        f"             {size}, {src['frames']} frames"
        + (f" at {src['fps']:g} fps" if src.get("fps") else "")
    )
    add(
        f"  edge       {e['frames']} frames in {e['elapsed_s']:.1f} s "
        f"({e['frames'] / max(e['elapsed_s'], 1e-9):.1f} fps), {e['dropped']} dropped; "
        f"detector {e['detector']}, encoder {e['encoder']} ({e['dim']}-d, codec {e['codec']})"
    )
    add(
        f"             {e['objects']} objects detected, {e['tracks_confirmed']} tracks "
        f"confirmed ({e['flicker_tracks']} flickers not sent), "
        f"{sum(e['messages'].values())} messages: "
        + ", ".join(f"{n} {k}" for k, n in sorted(e["messages"].items()))
    )
    acked = "all acknowledged" if e["left_in_spool"] == 0 else f"{e['left_in_spool']} NOT acked"
    add(
        f"  link       WebRTC data channel on 127.0.0.1: {_kb(b['semcom_sent'])} sent, "
        f"{e['sent_frames']} messages, {e['acked_frames']} acknowledged ({acked}), "
        f"{e['connects']} connection(s)"
    )
    add("")
    add("bytes over the link")
    pf = b["per_frame"]
    add(f"  semcom     {_kb(b['semcom_sent']):>10}   {pf['semcom']:>12,.1f} B/frame")
    raw_note = f"   -{b['reduction_vs_raw_pct']:.2f} %" if b["reduction_vs_raw_pct"] else ""
    add(f"  raw        {_kb(b['raw_frames']):>10}   {pf['raw']:>12,.1f} B/frame{raw_note}")
    if b["h264"] is not None:
        h = b["reduction_vs_h264_pct"]
        h_note = f"   {'-' if h >= 0 else '+'}{abs(h):.2f} %" if h is not None else ""
        add(
            f"  H.264      {_kb(b['h264']):>10}   {pf['h264']:>12,.1f} B/frame{h_note}   "
            f"({b['h264_settings']})"
        )
    else:
        add(f"  H.264      not measured ({b['h264_settings']})")
    add("  (percentages: how much less semcom sent; semcom = data-channel payload)")
    add("")
    c = s["cloud"]
    add("cloud catalog")
    add(
        f"  {c['detections']} detections, {c['embeddings']} embeddings, {c['tracks']} tracks"
        + (
            ": " + ", ".join(f"{n} {k}" for k, n in c["tracks_by_class"].items())
            if c["tracks_by_class"]
            else ""
        )
    )
    add("")
    _render_descriptions(s["descriptions"], add)
    add("")
    render_search(s["search"], add)
    d = s["decoder"]
    add(f"decoder      {d['status']}")
    add("")
    a = s["api"]
    add("API")
    add(f"  {a['url']}  (OpenAPI schema: {a['url']}/openapi.json, with the token)")
    add(f"  token: {a['token']}")
    add(f"  dashboard: {a['dashboard']}  (open it and sign in with the token above)")
    for example in a["examples"]:
        add(f"  {example}")
    if a.get("note"):
        add(f"  {a['note']}")
    t = s["timings_s"]
    add("")
    add("time  " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in t.items()))
    return "\n".join(lines)


def _render_descriptions(d: dict[str, Any], add: Any) -> None:
    add(f"descriptions {d['status']}; describer: {d['describer']}")
    for item in d["items"][:SHOWN_DESCRIPTIONS]:
        label = item.get("describer") or ""
        add(f"  [{item.get('window') or ''}{'; ' + label if label else ''}]")
        add(f"    {item.get('summary') or '(no summary)'}")
    if len(d["items"]) > SHOWN_DESCRIPTIONS:
        add(f"  ... {len(d['items']) - SHOWN_DESCRIPTIONS} more (--json, or GET /v1/descriptions)")


def _track(track_id: int | None) -> str:
    return "untracked" if track_id is None else f"track {track_id}"


def render_search(sr: dict[str, Any], add: Callable[[str], object]) -> None:
    """The example search: which query, which encoder's vectors, one line per hit."""
    if "error" in sr:
        add(f"search       {sr['error']}")
        add("")
        return
    q = sr["query"]
    note = "  (RANDOM-INIT: scores mean nothing)" if sr.get("random_init_encoder") else ""
    add(f'search       POST /v1/search {{"detection_id": {q["id"]}, "k": {sr["k"]}}}')
    grouping = "one hit per track" if sr["group"] == "track" else "raw detections"
    if sr["excluded_track"] is not None:
        grouping += f", its own track {sr['excluded_track']} left out"
    add(f"  query      {q['class']}, {_track(q['track_id'])}, detection {q['id']} ({grouping})")
    add(f"  made by    encoder {sr['encoder'] or 'unknown'}, space {sr['space']}{note}")
    for hit in sr["hits"]:
        add(
            f"  {hit['score']:.3f}  {hit['class']:<12} {_track(hit['track_id']):<12} "
            f"{hit['sightings']:>3} sighting(s), best: detection {hit['id']} at "
            f"{str(hit['time'])[11:23]}"
        )
    if not sr["hits"]:
        add("  no other track in the index")
    add("")
