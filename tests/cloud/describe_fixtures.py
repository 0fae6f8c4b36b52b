"""Test material for the describer: a small traffic scene in a catalog, and a fake LLM server.

- :func:`fill_scene` writes one camera's minute as the ingest would: a car driving across,
  a car standing still for 40 s (a stopped vehicle), a person walking, an untracked bus box,
  and per-frame counts.
- :class:`FakeOpenAI` is an OpenAI-compatible ``POST /v1/chat/completions`` served by uvicorn
  on port 0 (real HTTP for the real ``openai`` client). It *checks* every request (model,
  metadata text, PNG ``image_url`` data URLs, the strict JSON schema of the output) and
  answers from a script of canned replies: valid JSON, malformed text, schema violations,
  HTTP errors, or a delay past the client's timeout.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image
from sqlalchemy.engine import Engine

from cloud import schema
from cloud.describe.schema import llm_json_schema

T0 = 1_795_514_400_000_000  # 2026-11-24T10:00:00Z, a multiple of 60 s (us)
S = 1_000_000
CAMERA = 1
MOVING, STOPPED, WALKER = 1, 2, 3  # track ids


def fill_scene(engine: Engine, t0: int = T0, camera_name: str = "north-gate") -> None:
    """One minute of camera 1 from ``t0`` (boxes every 0.5 s); detection ids from 1."""
    with engine.begin() as conn:
        conn.execute(
            schema.edges.insert().values(
                id="edge-a", software_version="0.1.0", detector="yolo11n", encoder="vit",
                embedding_dim=192, random_init_encoder=True, first_seen_us=t0, last_seen_us=t0,
            )
        )  # fmt: skip
        conn.execute(
            schema.cameras.insert().values(
                id=CAMERA, edge_id="edge-a", name=camera_name, width=1280, height=720,
                fps=2.0, first_seen_us=t0,
            )
        )  # fmt: skip
        conn.execute(
            schema.tracks.insert(),
            [
                {"id": MOVING, "camera_id": CAMERA, "local_id": 11, "class_id": 2,
                 "first_seen_us": t0, "last_seen_us": t0 + 20 * S, "ended": True},
                {"id": STOPPED, "camera_id": CAMERA, "local_id": 12, "class_id": 7,
                 "first_seen_us": t0 + 10 * S, "last_seen_us": t0 + 50 * S, "ended": False},
                {"id": WALKER, "camera_id": CAMERA, "local_id": 13, "class_id": 0,
                 "first_seen_us": t0, "last_seen_us": t0 + 30 * S, "ended": True},
            ],
        )  # fmt: skip
        rows: list[dict[str, Any]] = []

        def box(track: int | None, cls: int, ts: int, x: float, y: float, w: float = 0.1) -> None:
            rows.append(
                {"camera_id": CAMERA, "track_id": track, "ts_us": ts, "class_id": cls,
                 "confidence": 0.8, "x1": x, "y1": y, "x2": x + w, "y2": y + w,
                 "edge_id": "edge-a", "seq": len(rows) + 1, "has_embedding": len(rows) % 4 == 0}
            )  # fmt: skip

        for i in range(41):  # 0..20 s: left to right
            box(MOVING, 2, t0 + i * S // 2, 0.05 + i * 0.02, 0.5)
        for i in range(81):  # 10..50 s: still
            box(STOPPED, 7, t0 + 10 * S + i * S // 2, 0.6, 0.3, 0.2)
        for i in range(61):  # 0..30 s: slowly
            box(WALKER, 0, t0 + i * S // 2, 0.2, 0.8 - i * 0.005, 0.05)
        box(None, 5, t0 + 40 * S, 0.3, 0.3, 0.3)
        conn.execute(schema.detections.insert(), rows)
        conn.execute(
            schema.frame_counts.insert(),
            [{"camera_id": CAMERA, "ts_us": t0 + i * S, "class_id": 2, "count": 2}
             for i in range(60)],
        )  # fmt: skip


def png(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


class PngCrops:
    """A :class:`~cloud.describe.base.CropSource` of generated PNGs (the decoder's stand-in)."""

    def __init__(self) -> None:
        self.asked: list[list[int]] = []

    async def png_for(self, detection_ids: Any) -> dict[int, bytes]:
        ids = list(detection_ids)
        self.asked.append(ids)
        return {i: png(i) for i in ids}


def reply(
    summary: str = "Two cars and a pedestrian; a truck is stopped near the right lane.",
    **changes: Any,
) -> dict[str, Any]:
    """A valid structured description (as the LLM would send it)."""
    body: dict[str, Any] = {
        "counts": {"person": 1, "bicycle": 0, "car": 1, "motorcycle": 0, "bus": 1, "truck": 1,
                   "other": 0},
        "congestion": "light",
        "incidents": [{"kind": "stopped_vehicle", "description": "A truck stands still.",
                       "track_ids": [STOPPED]}],
        "summary": summary,
    }  # fmt: skip
    body.update(changes)
    return body


@dataclass
class Step:
    """One scripted answer: ``content`` (a str is sent verbatim, a dict as JSON) or an
    HTTP ``status`` error, after ``delay_s``."""

    content: str | dict[str, Any] | None = None
    status: int = 200
    delay_s: float = 0.0
    finish_reason: str = "stop"


@dataclass
class FakeOpenAI:
    model: str = "fake-vlm"
    script: list[Step] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what a request got wrong

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append(body)
            self._check(body)
            step = self.script.pop(0) if self.script else Step(reply())
            if step.delay_s:
                await asyncio.sleep(step.delay_s)
            if step.status != 200:
                return JSONResponse(
                    {"error": {"message": f"scripted {step.status}", "type": "server_error"}},
                    status_code=step.status,
                )
            content = step.content if isinstance(step.content, str) else json.dumps(step.content)
            return JSONResponse(
                {
                    "id": f"chatcmpl-{len(self.requests)}",
                    "object": "chat.completion",
                    "created": 1,
                    "model": self.model,
                    "choices": [
                        {"index": 0, "finish_reason": step.finish_reason,
                         "message": {"role": "assistant", "content": content}}
                    ],
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 100,
                              "total_tokens": 1100},
                }
            )  # fmt: skip

        return app

    def _check(self, body: dict[str, Any]) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                self.problems.append(what)

        need(body.get("model") == self.model, f"model {body.get('model')!r}")
        fmt = body.get("response_format", {})
        need(fmt.get("type") == "json_schema", "response_format is not json_schema")
        js = fmt.get("json_schema", {})
        need(js.get("strict") is True, "schema not strict")
        need(js.get("schema") == llm_json_schema(), "not the description schema")
        user = [m for m in body.get("messages", []) if m.get("role") == "user"]
        parts = user[0]["content"] if user else []
        texts = [p["text"] for p in parts if p.get("type") == "text"]
        need(any('"tracks"' in t for t in texts), "no metadata text")
        for p in parts:
            if p.get("type") == "image_url":
                url = p["image_url"]["url"]
                need(url.startswith("data:image/png;base64,"), "image is not a PNG data URL")
                data = base64.b64decode(url.split(",", 1)[1])
                need(data.startswith(b"\x89PNG\r\n\x1a\n"), "image bytes are not PNG")

    @staticmethod
    def images(body: dict[str, Any]) -> int:
        user = next(m for m in body["messages"] if m["role"] == "user")
        return sum(1 for p in user["content"] if p.get("type") == "image_url")
