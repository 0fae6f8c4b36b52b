"""Search of crops by text in a CLIP space, with RANDOM-INIT open_clip towers (no CLIP weights
are reachable here: the scores rank nothing meaningful, the tests check the plumbing).

The edge side is the real pipeline (scripted boxes on a generated video, the real crop rule,
the edge's open_clip image tower, the f16 codec, the real wire); the cloud side is the real
service (``create_app``: SQLite catalog, faiss index, the API over HTTP) with both towers of the
same model.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from PIL import Image
from sqlalchemy import select

from cloud import schema
from cloud.app import create_app
from cloud.clip_encoder import ClipImageEncoder, open_clip_encoders
from cloud.config import CloudConfig, OpenClipEncoderConfig
from cloud.describe.context import Window
from cloud.describe.store import insert_description
from cloud.session import EdgeSession
from cloud.store import space_name
from cloud.text_encoder import ClipTextEncoder
from shared.framing import pack_batch, read_frames
from shared.vectors import CodecSet
from tests.cloud.api_fixtures import TOKEN, client, error_of, image_png
from tests.cloud.test_describe_search import described

MODEL = "ViT-S-32-alt"  # the smallest open_clip architecture (256-d)
SPACE = f"open_clip:{MODEL}-256-random-init"

EDGE_SCRIPT = """
import json, sys
import numpy as np
from edge.embed import build_encoder
from edge.encoder_config import OpenClipEncoderConfig
encoder = build_encoder(OpenClipEncoderConfig(model=sys.argv[1], random_init=True))
np.save(sys.argv[3], encoder.embed(np.load(sys.argv[2])))
print(json.dumps({"name": encoder.name, "dim": encoder.dim, "random_init": encoder.random_init}))
"""


@pytest.fixture(scope="module")
def towers() -> tuple[ClipImageEncoder, ClipTextEncoder]:
    config = OpenClipEncoderConfig(type="open_clip", model=MODEL, random_init=True)
    return open_clip_encoders(config)


def test_edge_and_cloud_random_init_towers_agree_across_processes(
    towers: tuple[ClipImageEncoder, ClipTextEncoder], tmp_path: Path
) -> None:
    """An edge process and this (cloud) process build the same seeded weights: the same crop
    gives the same vector, and both name the same space."""
    image, text = towers
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    np.save(tmp_path / "crops.npy", crops)
    run = subprocess.run(
        [sys.executable, "-c", EDGE_SCRIPT, MODEL, str(tmp_path / "crops.npy"),
         str(tmp_path / "vectors.npy")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    edge = json.loads(run.stdout.strip().splitlines()[-1])
    edge_vectors = np.load(tmp_path / "vectors.npy")
    cloud_vectors = image.embed([Image.fromarray(c) for c in crops])
    np.testing.assert_allclose(cloud_vectors, edge_vectors, atol=1e-5)
    assert edge == {"name": f"open_clip:{MODEL}", "dim": 256, "random_init": True}
    assert space_name(edge["name"], edge["dim"], edge["random_init"]) == SPACE
    assert image.space == text.space == SPACE
    words = text.embed_texts(["a red truck", "a person on a bicycle"])
    assert words.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(words, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(words[0], words[1], atol=1e-3)


def _edge_frames(video: Path, out: Path) -> list[bytes]:
    """The frames a random-init open_clip edge sends for ``video`` (scripted boxes), every
    frame's crops embedded before the next frame (as a paced camera lets the encoder keep up)."""
    from edge.capture import VideoFileSource
    from edge.clip_encoder import OpenClipEncoder
    from edge.config import PolicyConfig
    from edge.encoder_config import OpenClipEncoderConfig as EdgeClipConfig
    from edge.pipeline import EdgePipeline, Outbox
    from edge.policy import EmissionPolicy
    from edge.sink import FileSink
    from shared.vectors import create_codec
    from tests.scripted import GroundTruthDetector

    encoder = OpenClipEncoder(EdgeClipConfig(model=MODEL, random_init=True))
    policy = EmissionPolicy(
        PolicyConfig(confirm_frames=2, lost_frames=5, check_interval_s=1e-6, drift_threshold=1e-6),
        "cam-01",
    )
    pipeline = EdgePipeline(
        GroundTruthDetector(), encoder, create_codec("f16", encoder.dim), policy, 2.5
    )
    sink = FileSink(out)
    outbox = Outbox("edge-01", sink)
    source = VideoFileSource(video, loop=False, pace=False, sample_fps=None)
    for frame in source.frames(threading.Event()):  # inline: every drift check is made
        if frame.index == 0:
            outbox.put(0, pipeline.hello("test", frame, source.fps), control=True)
        outbox.put_all(pipeline.process(frame))
    outbox.put_all(pipeline.finish())
    sink.close()
    with open(out, "rb") as fh:
        return list(read_frames(fh))


@pytest.fixture(scope="module")
def cloud(
    towers: tuple[ClipImageEncoder, ClipTextEncoder],
    tiny_video: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Any]]:
    """The whole service with both towers, holding what the edge sent and one description."""
    data = tmp_path_factory.mktemp("cloud")
    config = CloudConfig.model_validate(
        {
            "port": 0,
            "data_dir": str(data),
            "api_tokens": {"dashboard": {"token": TOKEN}},
            "encoder": {"type": "open_clip", "model": MODEL, "random_init": True},
            "describer": {"enabled": False},
        }
    )
    app = create_app(config, *towers)
    services = app.state.services
    frames = _edge_frames(tiny_video, data / "edge.semcom")
    session = EdgeSession("edge-01", "s1", services.store)
    for i in range(0, len(frames), 16):
        session.receive(pack_batch(frames[i : i + 16]))
    with services.engine.begin() as conn:
        camera, first = conn.execute(
            select(
                schema.detections.c.camera_id,
                schema.detections.c.ts_us,
            ).limit(1)
        ).one()
        insert_description(
            conn,
            Window(camera, first - 60_000_000, first + 60_000_000),
            described(summary="A red truck stopped in the right lane."),
            first,
        )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert services.indexer.wait_idle(60)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield url, services
    finally:
        server.should_exit = True
        thread.join(15)


def _stored(services: Any) -> dict[int, tuple[int, np.ndarray]]:
    """detection id -> (track id, decoded unit vector) of every embedding in the CLIP space."""
    e, d, s, c = schema.embeddings, schema.detections, schema.spaces, schema.codecs
    codecs = CodecSet()
    out = {}
    with services.engine.connect() as conn:
        rows = conn.execute(
            select(e.c.detection_id, d.c.track_id, e.c.code, c.c.codec_id, c.c.content_hash,
                   c.c.dim)
            .join(d, d.c.id == e.c.detection_id)
            .join(s, s.c.id == e.c.space_id)
            .join(c, c.c.fingerprint == e.c.codec)
            .where(s.c.name == SPACE)
        ).all()  # fmt: skip
    for r in rows:
        vector = codecs.accept(r.codec_id, r.content_hash, r.dim).decode(r.code)[0]
        out[r.detection_id] = (r.track_id, vector / np.linalg.norm(vector))
    return out


def test_text_search_answers_descriptions_and_labelled_crops_of_the_clip_space(
    cloud: tuple[str, Any], towers: tuple[ClipImageEncoder, ClipTextEncoder]
) -> None:
    url, services = cloud
    stored = _stored(services)
    tracks = {track for track, _ in stored.values()}
    assert len(stored) > len(tracks) == 2  # several sightings of each of the two objects
    with client(url) as api:
        response = api.post("/v1/search", json={"text": "red truck", "k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == "red truck"
    [description] = body["hits"]  # the descriptions, where they always were
    assert description["description"]["summary"] == "A red truck stopped in the right lane."
    assert body["crops_unavailable"] is None
    crops = body["crops"]
    assert (crops["space"], crops["random_init_encoder"]) == (SPACE, True)
    hits = crops["hits"]
    assert {h["track_id"] for h in hits} == tracks  # one hit per track, every track
    query = towers[1].embed_texts(["red truck"])[0]
    for hit in hits:
        detection = hit["detection"]["id"]
        track, vector = stored[detection]  # a real stored detection of the CLIP space
        assert hit["track_id"] == track
        best = max(float(query @ v) for t, v in stored.values() if t == track)
        assert hit["score"] == pytest.approx(float(query @ vector), abs=1e-4)
        assert hit["score"] == pytest.approx(best, abs=1e-4)  # the track's best sighting
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_image_search_uses_the_clip_image_tower(
    cloud: tuple[str, Any], towers: tuple[ClipImageEncoder, ClipTextEncoder]
) -> None:
    url, services = cloud
    stored = _stored(services)
    png = image_png(4, (90, 70))
    with client(url) as api:
        body = api.post("/v1/search", json={"image": base64.b64encode(png).decode(), "k": 5}).json()
    assert (body["space"], body["random_init_encoder"]) == (SPACE, True)
    query = towers[0].embed([Image.open(io.BytesIO(png))])[0]
    assert body["hits"]
    for hit in body["hits"]:
        _track, vector = stored[hit["detection"]["id"]]
        assert hit["score"] == pytest.approx(float(query @ vector), abs=1e-4)


def test_a_text_encoder_of_another_width_than_its_space_is_a_precise_error(
    cloud: tuple[str, Any],
) -> None:
    """The catalog says the space holds 512-d vectors; the text tower gives 256-d ones."""
    url, services = cloud
    with services.engine.begin() as conn:
        conn.execute(schema.spaces.update().where(schema.spaces.c.name == SPACE).values(dim=512))
    try:
        with client(url) as api:
            response = api.post("/v1/search", json={"text": "truck"})
    finally:
        with services.engine.begin() as conn:
            conn.execute(
                schema.spaces.update().where(schema.spaces.c.name == SPACE).values(dim=256)
            )
    message = error_of(response, 409, "text_encoder_mismatch")
    assert f"gives 256-d vectors, but space {SPACE!r} holds 512-d ones" in message


def test_weights_from_a_file_are_named_by_their_digest_wherever_the_file_is(
    towers: tuple[ClipImageEncoder, ClipTextEncoder], tmp_path: Path
) -> None:
    """A checkpoint without a tag (here the seeded random weights, saved: still untrained)
    names the same space on the edge and in the cloud, whatever path each keeps it at."""
    import hashlib
    import shutil

    import torch

    from edge.clip_encoder import OpenClipEncoder
    from edge.encoder_config import OpenClipEncoderConfig as EdgeClipConfig
    from shared.open_clip_encoder import ClipSpec, build_clip

    edge_file, cloud_file = tmp_path / "edge" / "w.bin", tmp_path / "cloud" / "clip.bin"
    edge_file.parent.mkdir()
    cloud_file.parent.mkdir()
    torch.save(build_clip(ClipSpec(MODEL, random_init=True)).state_dict(), edge_file)
    shutil.copy(edge_file, cloud_file)
    digest = hashlib.sha256(edge_file.read_bytes()).hexdigest()[:16]
    edge = OpenClipEncoder(EdgeClipConfig(model=MODEL, weights=edge_file))
    image, text = open_clip_encoders(
        OpenClipEncoderConfig(type="open_clip", model=MODEL, weights=cloud_file)
    )
    assert edge.name == image.name == text.name == f"open_clip:{MODEL}:sha256-{digest}"
    assert image.space == text.space == f"open_clip:{MODEL}:sha256-{digest}-256"
    assert (edge.random_init, image.random_init, text.random_init) == (False, False, False)
    crops = np.random.default_rng(8).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    vectors = edge.embed(crops)
    np.testing.assert_allclose(image.embed([Image.fromarray(c) for c in crops]), vectors, atol=1e-5)
    np.testing.assert_allclose(
        towers[0].embed([Image.fromarray(c) for c in crops]), vectors, atol=1e-5
    )


def test_a_text_encoder_without_crops_of_its_space_still_answers_descriptions(
    towers: tuple[ClipImageEncoder, ClipTextEncoder], tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry

    from cloud.api.deps import ApiDeps
    from cloud.catalog import Catalog
    from cloud.db import open_database
    from tests.cloud.api_fixtures import DIGESTS, ExactSearcher, LiveServer, make_app
    from tests.cloud.describe_fixtures import T0, fill_scene

    engine = open_database(f"sqlite:///{tmp_path / 'c.db'}")
    fill_scene(engine)  # detections of another space, no CLIP crops
    with engine.begin() as conn:
        insert_description(
            conn, Window(1, T0, T0 + 60_000_000), described(summary="A truck waits."), T0
        )
    deps = ApiDeps(
        catalog=Catalog(engine),
        token_digests=DIGESTS,
        searcher=ExactSearcher(engine),
        codecs=CodecSet(),
        query_encoder=towers[0],
        metrics_registry=CollectorRegistry(),
        text_encoder=towers[1],
    )
    with LiveServer(make_app(deps)) as live, client(live.url) as api:
        body = api.post("/v1/search", json={"text": "truck"}).json()
    engine.dispose()
    assert [h["description"]["summary"] for h in body["hits"]] == ["A truck waits."]
    assert body["crops"] is None
    assert body["crops_unavailable"]["code"] == "unknown_space"
    assert SPACE in body["crops_unavailable"]["message"]
