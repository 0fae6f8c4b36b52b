"""The edge's local health listener: ``GET /metrics`` (Prometheus text) and ``GET /healthz``.

Off by default; ``health.listen`` (e.g. ``127.0.0.1:9108``) turns it on, on a loopback address
unless ``health.allow_remote`` (see :class:`edge.config.HealthConfig`): neither path has
authentication. ``/metrics`` is prometheus-client's own WSGI app over the agent's registry
(:class:`edge.metrics.EdgeMetrics`); ``/healthz`` answers 200 with a small JSON body while the
pipeline runs and its last frame is recent, 503 with the same body (and a ``reason``)
otherwise. A threaded stdlib WSGI server runs it in daemon threads; requests are not logged.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from edge.config import HealthConfig
from edge.errors import ListenFailed
from edge.metrics import EdgeMetrics

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds would flood the log


def health_app(metrics: EdgeMetrics) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app: ``/metrics``, ``/healthz``; 404 for any other path, 405 for other methods."""
    prometheus = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path not in ("/metrics", "/healthz"):
            return _json(start_response, "404 Not Found", {"error": "try /metrics or /healthz"})
        if method != "GET":
            return _json(start_response, "405 Method Not Allowed", {"error": "GET only"})
        if path == "/metrics":
            return prometheus(environ, start_response)  # type: ignore[no-any-return]
        ok, body = metrics.health()
        return _json(start_response, "200 OK" if ok else "503 Service Unavailable", body)

    return app


def _json(start_response: StartResponse, status: str, body: object) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
        ("Cache-Control", "no-store"),
    ]
    start_response(status, headers)
    return [data]


class HealthServer:
    """Serves :func:`health_app` on ``(host, port)`` (port 0: any free one, see :attr:`url`)
    until :meth:`close`; :class:`~edge.errors.ListenFailed` if the address cannot be used."""

    def __init__(self, metrics: EdgeMetrics, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(
                host, port, health_app(metrics), server_class, handler_class=_QuietHandler
            )
        except OSError as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise ListenFailed(
                f"cannot serve /metrics and /healthz on {where} (health.listen): {exc.strerror}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.name = "edge-health"
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def open_health(config: HealthConfig, metrics: EdgeMetrics) -> HealthServer | None:
    """The listener ``config`` asks for (None: off), serving; logs its URL."""
    address = config.address
    if address is None:
        return None
    server = HealthServer(metrics, *address)
    logger.info("edge health on %s (/metrics, /healthz)", server.url)
    return server
