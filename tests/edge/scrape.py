"""Reading an edge's health listener over HTTP, as Prometheus and a container check would."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def scrape(base_url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """``/metrics`` as {``name{label="v",...}``: value} (labels sorted; bare name without)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=timeout_s) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
    return out


def healthz(base_url: str, timeout_s: float = 5.0) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of ``/healthz``; a 503 is an answer, not an error."""
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=timeout_s) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def labelled(figures: dict[str, float], name: str) -> dict[str, float]:
    """``name``'s samples by their one label's value: {"Embedding": 12.0, ...}."""
    out = {}
    for key, value in figures.items():
        if key.startswith(name + "{"):
            out[key[len(name) + 1 : -1].split('"')[1]] = value
    return out
