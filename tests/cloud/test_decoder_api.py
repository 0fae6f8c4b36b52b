"""``GET /v1/detections/{id}/image`` through a real HTTP server, and the batched service."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image

from cloud.api.decoded import build_decoded_router
from cloud.api.errors import install_error_handlers
from cloud.catalog import Catalog
from cloud.decoder.checkpoint import DecoderMeta, load_decoder, save_checkpoint
from cloud.decoder.model import CropDecoder, DecoderSpec
from cloud.decoder.service import DecodeService
from shared.vectors import CodecSet
from tests.cloud.api_fixtures import (
    DIGESTS,
    SPACE_A,
    SPACE_B,
    TOKEN,
    LiveServer,
    World,
    build_world,
    client,
    error_of,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run faster on one torch thread, and one thread never waits at an operator
    for a second one that another busy process holds (two shared cores: 10x in our runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_decoder(path: Path, encoder: str = "vit_tiny_patch16_224", dim: int = 192) -> Path:
    """An untrained decoder for the tests' random-init ViT-Ti space.

    Convolutions are scaled up so that different embeddings give visibly different crops
    (fresh weights give ~0.5 grey everywhere).
    """
    spec = DecoderSpec(dim, 64, width=4)
    torch.manual_seed(0)
    model = CropDecoder(spec)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(3.0)
    meta = DecoderMeta(
        encoder=encoder,
        embed_dim=dim,
        random_init=True,
        codec="f16",
        codec_hash="00",
        code_bytes=2 * dim,
        image_size=64,
        crop_scale=2.5,
        detector="synthetic",
        spec=spec.to_dict(),
    )
    save_checkpoint(path, meta, model.state_dict())
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = build_world(f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'c.db'}")
    yield world
    world.engine.dispose()


@pytest.fixture(scope="module")
def service(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DecodeService]:
    decoder = load_decoder(write_decoder(tmp_path_factory.mktemp("dec") / "d.pt"))
    svc = DecodeService(decoder, Catalog(world.engine), CodecSet(), batch_wait_ms=30, cache_size=4)
    yield svc
    svc.close()


def _app(decoder: DecodeService | None) -> FastAPI:
    app = FastAPI()
    app.include_router(build_decoded_router(decoder, DIGESTS))
    install_error_handlers(app)
    return app


@pytest.fixture(scope="module")
def server(service: DecodeService) -> Iterator[str]:
    with LiveServer(_app(service)) as live:
        yield live.url


def _embedded(world: World, space: str) -> list[int]:
    return sorted(i for i, s in world.embedded.items() if s == space)


def test_image_is_a_png_of_the_rebuilt_crop(server: str, world: World) -> None:
    detection = _embedded(world, SPACE_A)[0]
    with client(server) as api:
        first = api.get(f"/v1/detections/{detection}/image")
        again = api.get(f"/v1/detections/{detection}/image")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/png"
    assert first.headers["x-semcom-decoder"] == SPACE_A
    image = Image.open(io.BytesIO(first.content))
    assert image.format == "PNG"
    assert image.size == (64, 64)
    assert image.mode == "RGB"
    assert again.content == first.content


@pytest.mark.parametrize(
    ("which", "status", "code"),
    [
        ("unknown", 404, "not_found"),
        ("unembedded", 404, "no_embedding"),
        ("other_space", 503, "decoder_unavailable"),
    ],
)
def test_errors(server: str, world: World, which: str, status: int, code: str) -> None:
    detection = {
        "unknown": 999_999,
        "unembedded": world.unembedded,
        "other_space": _embedded(world, SPACE_B)[0],
    }[which]
    with client(server) as api:
        response = api.get(f"/v1/detections/{detection}/image")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_needs_a_token(server: str) -> None:
    assert httpx.get(f"{server}/v1/detections/1/image").status_code == 401
    bad = httpx.get(f"{server}/v1/detections/1/image", headers={"Authorization": "Bearer x"})
    assert bad.status_code == 403
    assert bad.json()["error"]["code"] == "forbidden"
    assert httpx.get(f"{server}/v1/detections/0/image", headers={
        "Authorization": f"Bearer {TOKEN}"}).status_code == 422  # fmt: skip


def test_no_decoder_configured_is_503() -> None:
    with LiveServer(_app(None)) as live, client(live.url) as api:
        response = api.get("/v1/detections/1/image")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "decoder_unavailable"


def test_concurrent_requests_share_forward_passes(
    server: str, service: DecodeService, world: World
) -> None:
    ids = _embedded(world, SPACE_A)[10:16]
    before = service.batches

    def fetch(i: int) -> bytes:
        with client(server) as api:
            r = api.get(f"/v1/detections/{i}/image")
            assert r.status_code == 200
            return r.content

    with ThreadPoolExecutor(len(ids)) as pool:
        pngs = list(pool.map(fetch, ids))
    assert len(set(pngs)) == len(ids)  # different codes, different crops
    assert service.batches - before < len(ids)


def test_png_for_batches_and_skips_what_cannot_be_rebuilt(
    service: DecodeService, world: World
) -> None:
    ids = _embedded(world, SPACE_A)[20:25]
    wanted = [*ids, world.unembedded, 999_999, _embedded(world, SPACE_B)[1], ids[0]]
    before = service.batches
    found = asyncio.run(service.png_for(wanted))
    assert sorted(found) == ids
    assert service.batches - before == 1
    assert service.largest_batch >= len(ids)
    crop = np.asarray(Image.open(io.BytesIO(found[ids[0]])))
    assert crop.shape == (64, 64, 3)
    hits = service.cache_hits
    asyncio.run(service.png_for(ids[-2:]))  # cache holds the 4 most recent
    assert service.cache_hits == hits + 2


def test_app_wires_the_decoder_from_config(tmp_path: Path) -> None:
    from cloud.app import create_app
    from cloud.config import load_config, with_tokens

    checkpoint = write_decoder(tmp_path / "dec.pt")
    (tmp_path / "cloud.yaml").write_text(
        f"data_dir: {tmp_path / 'data'}\ndecoder:\n  checkpoint: {checkpoint}\n"
        "  cache_size: 10\n  batch_wait_ms: 2\n"
    )
    config = load_config(tmp_path / "cloud.yaml")
    assert config.decoder is not None
    assert config.decoder.cache_size == 10
    config = with_tokens(config, {}, {"tests": TOKEN})
    app = create_app(config)
    assert app.state.decoder.space == SPACE_A
    assert "/v1/detections/{detection_id}/image" in app.openapi()["paths"]
    try:
        # The route sits behind the API's own token check and metrics, like every other one.
        with LiveServer(app) as live:
            with client(live.url, token=None) as anonymous:
                error_of(anonymous.get("/v1/detections/1/image"), 401)
            with client(live.url) as api:
                error_of(api.get("/v1/detections/1/image"), 404, "not_found")
                metrics = api.get("/metrics").text
        assert 'semcom_api_auth_failures_total{status="401"} 1.0' in metrics
        assert 'route="/v1/detections/{detection_id}/image",status="404"} 1.0' in metrics
    finally:
        app.state.decoder.close()
        app.state.services.engine.dispose()
