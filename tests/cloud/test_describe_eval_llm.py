"""``semcom eval llm`` end to end: crops, a decoder checkpoint, a local "vision" endpoint.

The endpoint (uvicorn on port 0, spoken to by the real ``openai`` client) answers from the
image it receives: textured images are cars, flat ones trucks; the colour is the strongest
channel; the position always the centre. A random-init decoder rebuilds flat grey crops, so
the rebuilt crops lose the type question and keep the position: the report must say so.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi import FastAPI, Request
from PIL import Image

from cloud.decoder.checkpoint import DecoderMeta, save_checkpoint
from semcom.cli import cli
from semcom.llm_questions import EvalError, load_questions, parse_answers, table
from tests.cloud.api_fixtures import LiveServer
from tests.cloud.decoder_fixtures import synthetic_dataset

QUESTIONS = Path(__file__).resolve().parents[2] / "deploy" / "eval-llm-questions.yaml"


def vision_app(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> dict[str, Any]:
        body = await request.json()
        seen.append(body)
        schema = body["response_format"]["json_schema"]
        assert schema["strict"] is True
        props = schema["schema"]["properties"]
        assert props["type"]["enum"] == ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
        parts = body["messages"][1]["content"]
        [url] = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
        assert url.startswith("data:image/png;base64,")
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
        answers = {
            "type": "car" if pixels.std() > 10 else "truck",
            "colour": ("red", "green", "blue")[int(pixels.reshape(-1, 3).mean(0).argmax())],
            "count": "1",
            "position": "centre",
        }
        return {
            "id": "x", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps(answers)}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 20, "total_tokens": 140},
        }  # fmt: skip

    return app


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with LiveServer(vision_app(seen)) as live:
        yield f"{live.url}/v1", seen


def checkpoint(path: Path, dataset: Any) -> Path:
    from cloud.decoder.model import CropDecoder, DecoderSpec

    spec = DecoderSpec(dataset.meta.embed_dim, 64, width=4)
    m = dataset.meta
    meta = DecoderMeta(
        encoder=m.encoder, embed_dim=m.embed_dim, random_init=m.random_init, codec=m.codec,
        codec_hash=m.codec_hash, code_bytes=m.code_bytes, image_size=64, crop_scale=2.5,
        detector="synthetic", spec=spec.to_dict(), dataset_key="another-dataset",
    )  # fmt: skip
    save_checkpoint(path, meta, CropDecoder(spec).state_dict())
    return path


def test_eval_llm_reports_both_accuracies_and_their_ratio(
    tmp_path: Path, endpoint: tuple[str, list[dict[str, Any]]]
) -> None:
    url, seen = endpoint
    dataset = synthetic_dataset(n=16, dim=48, objects=8)
    dataset.save(tmp_path / "crops.npz")
    ckpt = checkpoint(tmp_path / "best.pt", dataset)
    args = [
        "eval", "llm", "--questions", str(QUESTIONS), "--decoder", str(ckpt),
        "--crops", str(tmp_path / "crops.npz"), "--base-url", url, "--model", "fake-vision",
        "--api-key", "sk-test", "--samples", "6", "--json", "--no-progress",
        "--out", str(tmp_path / "answers.json"),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert len(seen) == 12  # 6 crops, original and rebuilt
    assert report["crops"] == 6
    assert report["failed_crops"] == 0
    by_id = {q["id"]: q for q in report["questions"]}
    assert by_id["type"]["original_accuracy"] == 1.0  # class 2 is a car; textured originals
    assert by_id["type"]["rebuilt_accuracy"] == 0.0  # flat rebuilt crops look like trucks
    assert by_id["position"]["rebuilt_accuracy"] == 1.0
    assert by_id["colour"]["original_accuracy"] is None  # no ground truth: agreement only
    assert report["original_accuracy"] == 1.0
    assert report["rebuilt_accuracy"] == 0.5
    assert report["ratio"] == 0.5
    assert report["random_init_encoder"] is True
    assert "RANDOM-INIT" in report["note"]
    assert report["prompt_tokens"] == 12 * 120
    assert report["evaluated"] == "crops sampled from every object"
    saved = json.loads((tmp_path / "answers.json").read_text())
    assert len(saved["answers"]) == 6
    assert {a["class"] for a in saved["answers"]} == {"car"}

    assert "ratio 0.500" in table({**report, "prompt_tokens": 1, "completion_tokens": 1})


def test_questions_and_answers_are_checked() -> None:
    questions = load_questions(QUESTIONS).questions
    good = {"type": "car", "colour": "red", "count": "1", "position": "centre"}
    assert parse_answers(json.dumps(good), questions) == good
    with pytest.raises(EvalError, match="not one of its choices"):
        parse_answers(json.dumps({**good, "type": "spaceship"}), questions)
    with pytest.raises(EvalError, match="not JSON"):
        parse_answers("car, red", questions)
    bad = QUESTIONS.with_name("nope.yaml")
    with pytest.raises(EvalError, match="cannot read"):
        load_questions(bad)
