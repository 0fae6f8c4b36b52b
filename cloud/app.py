"""Composition root of the cloud service: build every part from a :class:`CloudConfig`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.engine import Engine

from cloud.alerts.dispatcher import AlertDispatcher, build_sinks
from cloud.analytics.metrics import AnalyticsMetrics
from cloud.analytics.runner import AnalyticsRunner
from cloud.api.alerts import build_alerts_router
from cloud.api.analytics import AnalyticsService, build_analytics_router
from cloud.api.decoded import build_decoded_router
from cloud.api.deps import ApiDeps, ImageEncoder, TextEncoder
from cloud.api.descriptions import DescriptionService
from cloud.api.docs import APP_DOCS_OFF
from cloud.api.edges import build_edges_router
from cloud.api.errors import install_error_handlers
from cloud.api.routes import build_api_router
from cloud.api.service import QueryService
from cloud.api.text_search import TextSearchService
from cloud.catalog import Catalog
from cloud.codebooks import CodebookLibrary
from cloud.codebooks_auto import CodebookFitter
from cloud.config import CloudConfig, parse_age
from cloud.dashboard.deps import DashboardDeps
from cloud.dashboard.router import install_dashboard
from cloud.dashboard.sessions import UiSessions
from cloud.db import open_database
from cloud.decoder.service import DecodeService, open_decode_service
from cloud.describe.runner import DescribeWorker
from cloud.describe.store import DescriptionStore
from cloud.heap import trim_when_idle
from cloud.index import IndexSettings
from cloud.indexer import Indexer
from cloud.ingest import Ingest
from cloud.leases import Leases
from cloud.linkmon import LinkMonitor
from cloud.metrics import CloudMetrics
from cloud.peers import PeerRegistry
from cloud.retention import Retention
from cloud.signaling import build_router
from cloud.store import Store
from cloud.writer import Writer
from shared.models.codebooks import shipped_codebooks
from shared.pq import load_codebook
from shared.vectors import CodecSet
from shared.version import software_version

logger = logging.getLogger(__name__)


def index_settings(config: CloudConfig) -> IndexSettings:
    idx = config.index
    return IndexSettings(
        backend=idx.backend,
        path=config.data_dir / ("qdrant" if idx.backend == "qdrant" else "index"),
        qdrant_url=idx.qdrant_url,
        qdrant_api_key=idx.qdrant_api_key.get_secret_value() if idx.qdrant_api_key else None,
        qdrant_timeout_s=idx.qdrant_timeout_s,
        qdrant_prefer_grpc=idx.qdrant_prefer_grpc,
        qdrant_grpc_port=idx.qdrant_grpc_port,
        qdrant_shards=idx.qdrant_shards,
        qdrant_replicas=idx.qdrant_replicas,
        qdrant_write_consistency=idx.qdrant_write_consistency,
        flat_max=idx.flat_max,
        kind=idx.kind,
    )


@dataclass
class Services:
    """Everything the app runs, for the lifespan, the API and tests."""

    engine: Engine
    codecs: CodecSet
    metrics: CloudMetrics
    store: Store
    indexer: Indexer
    writer: Writer
    ingest: Ingest
    retention: Retention | None
    link: LinkMonitor  # each edge's link health, fed by ingest (dashboard, GET /v1/edges)
    codebooks: CodebookLibrary  # fitted codebooks, by content hash (cloud/codebooks.py)
    fitter: CodebookFitter | None  # fits a codebook per encoder space (codebooks.auto_fit)


def build_services(config: CloudConfig) -> Services:
    assert config.database is not None  # filled in by the config's validator
    engine = open_database(config.database)
    codecs = CodecSet(load_codebook(path) for path in config.codebooks.files)
    for book in shipped_codebooks():  # the models manifest's encoders' codebooks, provisioned
        codecs.add(book)
    metrics = CloudMetrics()
    store = Store(engine, codecs)
    indexer = Indexer(
        engine,
        codecs,
        index_settings(config),
        metrics,
        config.index.save_every_s,
        follow_s=config.index.follow_period_s(config.database),
        follow_grace_s=config.index.follow_grace_s,
    )
    writer = Writer(store, metrics, indexer.put, config.writer_max_pending)
    retention = None
    if config.retention:

        def cut(ts_us: int) -> int:
            store.set_horizon(ts_us)
            return indexer.remove_before(ts_us)

        retention = Retention(engine, parse_age(config.retention), metrics, cut)
    link = LinkMonitor()
    # every codebook the cloud fitted decodes (journal, index, decoder) before any session
    library = CodebookLibrary(engine, codecs)
    library.load_all()
    offer = config.codebooks.offer == "fitted"
    ingest = Ingest(store, writer, metrics, link, library, offer)
    fitter = (
        CodebookFitter(engine, library, config.codebooks, metrics.registry)
        if config.codebooks.auto_fit
        else None
    )
    return Services(
        engine, codecs, metrics, store, indexer, writer, ingest, retention, link, library, fitter
    )


def _alerts_term(alerts: AlertDispatcher) -> Coroutine[Any, Any, None]:
    """A new term of the led alert dispatcher: it starts from the cursor the last leader
    saved, not from the one it kept in memory when this replica last led."""
    alerts._cursor = None  # the dispatcher reads the saved cursor (and quiet periods) again
    return alerts.run()


def _health_router(sessions: Callable[[], int], route_class: type[APIRoute]) -> APIRouter:
    """``GET /v1/health``: version and connected edges. Like every route but ``/healthz``, it
    needs the API token (it is mounted with the API's token-protected routes)."""
    router = APIRouter(route_class=route_class)

    @router.get("/v1/health", include_in_schema=False)
    async def health() -> dict[str, object]:
        return {"status": "ok", "version": software_version(), "sessions": sessions()}

    return router


def dashboard_deps(
    config: CloudConfig,
    api: ApiDeps,
    s: Services,
    decoder: DecodeService | None,
    peers: PeerRegistry,
) -> DashboardDeps:
    query = QueryService(api)
    descriptions = DescriptionService(DescriptionStore(s.engine))
    return DashboardDeps(
        catalog=api.catalog,
        query=query,
        descriptions=descriptions,
        text_search=TextSearchService(descriptions, query, api.catalog, api.text_encoder),
        token_digests=api.token_digests,
        sessions=UiSessions(s.engine, config.dashboard.session_hours * 3600.0),
        decoder=decoder,
        link=s.link,
        connected=lambda: sorted(
            {link.edge_id for link in s.link.overview() if link.connected} | set(peers.peers)
        ),
        image_search=api.query_encoder is not None,
        text_crops=api.text_encoder is not None,
        secure_cookies=config.dashboard.secure_cookies,
        analytics=AnalyticsService(s.engine) if config.analytics.enabled else None,
    )


def create_app(
    config: CloudConfig,
    query_encoder: ImageEncoder | None = None,
    text_encoder: TextEncoder | None = None,
) -> FastAPI:
    """The whole service; ``query_encoder`` and ``text_encoder`` (built from ``config.encoder``
    by the caller, which takes seconds: ``cloud.clip_encoder.query_encoders``) enable search by
    image, and search of crops by text."""
    # the alerts' targets first: a secret missing from the environment fails before any file
    sinks = build_sinks(config.alerts) if config.alerts else None
    s = build_services(config)
    peers = PeerRegistry(config, s.ingest, s.metrics)
    digests = {edge: cred.digest() for edge, cred in config.edges.items()}
    decoder = (
        open_decode_service(config.decoder, Catalog(s.engine), s.codecs) if config.decoder else None
    )
    describer = (
        DescribeWorker.build(config.describer, s.engine, s.metrics.registry, crops=decoder)
        if config.describer.enabled
        else None
    )
    analytics = (
        AnalyticsRunner(s.engine, config.analytics, AnalyticsMetrics(s.metrics.registry))
        if config.analytics.enabled
        else None
    )
    # retention, analytics and alerts run on one replica at a time (cloud/leases.py)
    leases = Leases(s.engine, s.metrics.registry)
    # alerts on analytics events: only with an `alerts` section
    alerts = (
        AlertDispatcher(config.alerts, s.engine, s.metrics.registry, sinks=sinks)
        if config.alerts
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        s.indexer.start()
        s.writer.start()
        tasks = [asyncio.create_task(trim_when_idle(lambda: s.writer.commits), name="heap-trim")]
        if s.retention:  # deletes on one replica; each replica cuts its own index
            retain = leases.led("retention", s.retention.run)
            tasks.append(asyncio.create_task(retain, name="retention"))
            follow = s.retention.follow(partial(leases.leads, "retention"))
            tasks.append(asyncio.create_task(follow, name="retention-follow"))
        if describer is not None:  # every replica: jobs are claimed with SKIP LOCKED
            tasks.append(asyncio.create_task(describer.run(), name="describer"))
        if analytics is not None:
            led = leases.led("analytics", analytics.run)
            tasks.append(asyncio.create_task(led, name="analytics"))
        if alerts is not None:
            led = leases.led("alerts", partial(_alerts_term, alerts))
            tasks.append(asyncio.create_task(led, name="alerts"))
        if s.fitter is not None:
            led = leases.led("codebooks", s.fitter.run)
            tasks.append(asyncio.create_task(led, name="codebook-fit"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if analytics is not None:  # its pass may still run in a worker thread
                await asyncio.to_thread(analytics.stop)
            await live_feed.close()
            await peers.close_all()
            if describer is not None:
                await describer.aclose()
            if alerts is not None:
                await alerts.aclose()
            if decoder is not None:
                await asyncio.to_thread(decoder.close)
            await asyncio.to_thread(s.writer.stop)
            await asyncio.to_thread(s.indexer.stop)
            leases.close()
            s.engine.dispose()

    app = FastAPI(
        title="semcom cloud", version=software_version(), lifespan=lifespan, **APP_DOCS_OFF
    )
    app.include_router(build_router(digests, peers, s.ingest, s.metrics, config.max_sessions))

    api = ApiDeps(
        catalog=Catalog(s.engine),
        token_digests={name: t.digest() for name, t in config.api_tokens.items()},
        searcher=s.indexer,
        codecs=s.codecs,
        query_encoder=query_encoder,
        text_encoder=text_encoder,
        metrics_registry=s.metrics.registry,
        metrics_public=config.metrics_public,
        docs_public=config.docs_public,
        health=s.indexer.describe,
        extra_routes=[
            partial(build_decoded_router, decoder, None),
            partial(_health_router, peers.__len__),
            partial(build_edges_router, s.link),
            partial(build_analytics_router, AnalyticsService(s.engine)),
            *([partial(build_alerts_router, alerts.store, alerts.replay)] if alerts else []),
        ],
    )
    app.include_router(build_api_router(api))
    live_feed = install_dashboard(app, dashboard_deps(config, api, s, decoder, peers))
    install_error_handlers(app)
    app.state.services = s
    app.state.peers = peers
    app.state.metrics = s.metrics
    app.state.decoder = decoder  # DecodeService | None: png_for(ids) for the describer
    app.state.describer = describer  # DescribeWorker | None (drain() runs due jobs now)
    app.state.analytics = analytics  # AnalyticsRunner | None (run_once() makes a pass now)
    app.state.alerts = alerts  # AlertDispatcher | None (step() dispatches new events now)
    app.state.leases = leases  # Leases: which of the led tasks this replica runs
    return app
