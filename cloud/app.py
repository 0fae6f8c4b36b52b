"""Composition root of the cloud service: build every part from a :class:`CloudConfig`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cloud.config import CloudConfig
from cloud.ingest import Ingest
from cloud.journal import Journal
from cloud.metrics import CloudMetrics
from cloud.peers import PeerRegistry
from cloud.signaling import build_router
from shared.pq import load_codebook
from shared.vectors import CodecSet
from shared.version import software_version


def create_app(config: CloudConfig) -> FastAPI:
    journal = Journal(config.database)
    codecs = CodecSet(load_codebook(path) for path in config.codebooks)
    metrics = CloudMetrics()
    ingest = Ingest(journal, codecs, metrics)
    peers = PeerRegistry(config, ingest, metrics)
    digests = {edge: cred.digest() for edge, cred in config.edges.items()}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await peers.close_all()
        journal.engine.dispose()

    app = FastAPI(title="semcom cloud", version=software_version(), lifespan=lifespan)
    app.include_router(build_router(digests, peers, ingest, metrics, config.max_sessions))

    @app.get("/v1/health")
    async def health() -> dict[str, object]:
        return {"status": "ok", "version": software_version(), "sessions": len(peers)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.journal = journal
    app.state.peers = peers
    app.state.metrics = metrics
    return app
