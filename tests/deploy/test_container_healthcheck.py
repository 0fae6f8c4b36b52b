"""deploy/healthcheck.py, the images' HEALTHCHECK: which URL it asks, and its exit status
against a real HTTP server on 127.0.0.1 (200, 503, nothing listening)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("semcom_deploy_healthcheck", SCRIPT)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else 503
        body = b'{"status":"ok"}' if status == 200 else b'{"status":"down"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "http://127.0.0.1:9108/healthz"),
        ({"SEMCOM_EDGE__HEALTH__LISTEN": "127.0.0.1:9200"}, "http://127.0.0.1:9200/healthz"),
        ({"SEMCOM_EDGE__HEALTH__LISTEN": "0.0.0.0:9108"}, "http://127.0.0.1:9108/healthz"),
        ({"SEMCOM_EDGE__HEALTH__LISTEN": "[::]:9108"}, "http://[::1]:9108/healthz"),
    ],
)
def test_edge_url(env: dict[str, str], url: str) -> None:
    assert healthcheck.edge_url(env) == url


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "http://127.0.0.1:8443/healthz"),
        ({"SEMCOM_CLOUD__PORT": "9000"}, "http://127.0.0.1:9000/healthz"),
        ({"SEMCOM_CLOUD__TLS__CERTFILE": "/etc/semcom/c.pem"}, "https://127.0.0.1:8443/healthz"),
    ],
)
def test_cloud_url(env: dict[str, str], url: str) -> None:
    assert healthcheck.cloud_url(env) == url


def test_bad_listen_value_is_unhealthy_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert healthcheck.main(["--edge"], env={"SEMCOM_EDGE__HEALTH__LISTEN": "9108"}) == 1
    assert "not host:port" in capsys.readouterr().err


def test_healthy_unhealthy_and_down(server: str) -> None:
    assert healthcheck.main(["--edge"], env={"SEMCOM_EDGE__HEALTH__LISTEN": server}) == 0
    assert healthcheck.main(["--url", f"http://{server}/other"], env={}) == 1  # 503
    down = f"http://127.0.0.1:{_free_port()}/healthz"
    assert healthcheck.main(["--url", down, "--timeout", "2"], env={}) == 1
    # SEMCOM_HEALTHCHECK_URL wins over --cloud/--edge (a port set only in the config file)
    env = {"SEMCOM_HEALTHCHECK_URL": f"http://{server}/healthz"}
    assert healthcheck.main(["--cloud"], env=env) == 0


def test_runs_as_a_script(server: str) -> None:
    """As HEALTHCHECK runs it: the venv's python, the script's path, stdlib only."""
    done = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), "--url", f"http://{server}/healthz"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"healthcheck: http://{server}/healthz: 200"
