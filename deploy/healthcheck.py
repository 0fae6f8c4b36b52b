#!/usr/bin/env python3
"""Container health check: GET a /healthz on this host; exit 0 on a 2xx answer, else 1.

Standard library only (the images have no curl). The images' HEALTHCHECK runs it:

  healthcheck.py --cloud   http://127.0.0.1:$SEMCOM_CLOUD__PORT/healthz (default port 8443;
                           https, certificate unchecked, when SEMCOM_CLOUD__TLS__CERTFILE is set)
  healthcheck.py --edge    http://$SEMCOM_EDGE__HEALTH__LISTEN/healthz (default 127.0.0.1:9108;
                           a wildcard host such as 0.0.0.0 is asked on the loopback address)
  healthcheck.py --url URL that URL

SEMCOM_HEALTHCHECK_URL, when set, wins over --cloud and --edge: set it when the mounted config file
(not the environment) moves the port or turns on TLS. ASSUMPTION to check: the edge's health
listener is configured by ``health.listen`` (SEMCOM_EDGE__HEALTH__LISTEN=host:port) and
serves GET /healthz, as planned for `semcom edge run`'s metrics/health listener.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

EDGE_DEFAULT_LISTEN = "127.0.0.1:9108"
CLOUD_DEFAULT_PORT = "8443"
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}


def edge_url(env: Mapping[str, str]) -> str:
    listen = env.get("SEMCOM_EDGE__HEALTH__LISTEN") or EDGE_DEFAULT_LISTEN
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"SEMCOM_EDGE__HEALTH__LISTEN={listen!r} is not host:port")
    return f"http://{_WILDCARDS.get(host, host)}:{port}/healthz"


def cloud_url(env: Mapping[str, str]) -> str:
    port = env.get("SEMCOM_CLOUD__PORT") or CLOUD_DEFAULT_PORT
    if not port.isdigit():
        raise ValueError(f"SEMCOM_CLOUD__PORT={port!r} is not a port number")
    scheme = "https" if env.get("SEMCOM_CLOUD__TLS__CERTFILE") else "http"
    return f"{scheme}://127.0.0.1:{port}/healthz"


def check(url: str, timeout: float) -> tuple[bool, str]:
    """(healthy, one line saying why)."""
    context = None
    if url.startswith("https:"):
        # The loopback address of this very container: the certificate names the public host.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:
            return 200 <= answer.status < 300, f"{url}: {answer.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url}: {reason}"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--url", help="the URL to GET")
    which.add_argument("--edge", action="store_true", help="the edge agent's /healthz")
    which.add_argument("--cloud", action="store_true", help="the cloud service's /healthz")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds (default 4)")
    args = parser.parse_args(argv)
    try:
        url = (
            args.url
            or env.get("SEMCOM_HEALTHCHECK_URL")
            or (edge_url(env) if args.edge else cloud_url(env))
        )
    except ValueError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    healthy, line = check(url, args.timeout)
    print(f"healthcheck: {line}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
