"""``semcom bench dashboard``: the dashboard's server time per page and the live feed's delay,
in a real browser, against a real cloud holding N detections.

On 127.0.0.1, in a temporary folder:

1. seed a SQLite catalog before the cloud starts (:mod:`semcom.bench.dashboard_seed`: the
   cloud's own migrations, bulk inserts; ``--detections`` rows, tracks of ~10, an embedding
   for ~1 in 5, rule-made descriptions);
2. start ``semcom cloud serve`` on it (:mod:`semcom.bench.procs`) with one API token, the
   describer off (no background descriptions compete with the pages) and, unless
   ``--no-decoder``, a crop decoder for the seeded space: untrained, seeded weights
   (:mod:`semcom.bench.dashboard_decoder`; the crops are noise, the crop route's time is
   real), its PNG cache ``--crop-cache`` (0 by default: every crop request decodes); wait
   until its vector index holds every seeded embedding (``/metrics``:
   ``semcom_index_vectors``);
3. in headless Chromium (Playwright, :mod:`semcom.bench.dashboard_browser`) sign in through
   the form, load each page ``--warmup`` times (not counted) and then ``--rounds`` times, the
   pages taken in turn each round, and read the server's time of the document and of each
   request it made (``Server-Timing: app``, set by the cloud on every response: the time from
   the request to the response's start, on the server): the data requests are the rebuilt
   crops (``/ui/detections/<id>/image``; the page is scrolled to its end so the lazy images
   load, and read once all have loaded); static files (CSS, the script) are
   reported apart, the live page's event stream is left out. Requests that would leave
   127.0.0.1 are aborted and counted (``offsite_requests``);
4. with ``/live`` open, insert ``--live-tracks`` new tracks, one every ``--live-every-s`` on
   average (jittered), each committed alone, and time each from its commit to its arrival in
   the page
   (:mod:`semcom.bench.dashboard_live`).

Percentiles are nearest-rank over every timed load or request. ``ok`` says whether every
target held (page p95 <= ``page_p95_ms`` for documents and data requests; live p95 <=
``live_p95_ms``) and the run was complete. As with the other performance benchmarks a missed
target still exits 0; the exit status is 1 when the run itself failed: a page answered with an
error, a live track never arrived, a request tried to leave 127.0.0.1, or the cloud died.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from semcom.bench.dashboard_browser import CHROMIUM, BrowserUnavailable, require_browser
from semcom.bench.dashboard_seed import Seeded, SeedSpec

TARGETS: Final = {"page_p95_ms": 300.0, "live_p95_ms": 2000.0}
INDEX_WAIT_S: Final = 300.0
READY_WAIT_S: Final = 180.0
HOW: Final = (
    "server time = the cloud's Server-Timing 'app' duration (request received to response "
    "start, measured in the cloud process) of each navigation (document) and each resource "
    "it requested, read in Chromium from PerformanceNavigationTiming / "
    "PerformanceResourceTiming.serverTiming; request interception (the host guard) disables "
    "Chromium's HTTP cache, so every load requests everything again; data requests are the "
    "pages' rebuilt crops (<img loading=lazy src=/ui/detections/<id>/image>): after the load "
    "event the page is scrolled to its end so every lazy image starts, and the timings are "
    "read once every image has loaded or failed (at most 10 s; a crop still loading then is a "
    "page error, never silently left out); crops_rebuilt counts crops that arrived as the "
    "decoder's PNG (not a placeholder); dom_ms is the browser's navigation start to "
    "DOMContentLoaded; all processes (cloud, browser, bench) share this machine's CPUs"
)


@dataclass(frozen=True)
class DashboardSettings:
    detections: int
    rounds: int
    live_tracks: int
    seed: int = 0
    descriptions: int = 500
    warmup: int = 1
    query: str = "traffic"
    live_every_s: float = 0.25
    chromium: Path = CHROMIUM
    decoder: bool = True
    crop_cache: int = 0


def summary(values: Sequence[float]) -> dict[str, float] | None:
    """p50, p95 (nearest rank) and max, in ms to 0.01; None without values."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: int) -> float:
        return ordered[max(1, -(-q * len(ordered) // 100)) - 1]

    return {"p50": round(rank(50), 2), "p95": round(rank(95), 2), "max": round(ordered[-1], 2)}


def page_paths(seeded: Seeded, query: str) -> dict[str, str]:
    """The pages measured: name -> path (and query)."""
    from urllib.parse import quote

    return {
        "overview": "/",
        "live": "/live",
        "explore": "/explore",
        "explore_text": f"/explore?q={quote(query)}",
        "explore_similar": f"/explore?similar={seeded.embedded_detection}",
        "track": f"/tracks/{seeded.longest_track}",
        "descriptions": "/descriptions",
        "link": "/link",
    }


def _say(text: str) -> None:
    click.echo(f"[dashboard] {text}", err=True)


class _Bars:
    """tqdm bars on stderr, one per seeding stage."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"seed {stage}", unit=" rows")
        bar.update(done - bar.n)
        if done >= total:
            bar.close()


def _wait_index(cloud: Any, space: str, want: int) -> tuple[int, float]:
    """Until the cloud's index of ``space`` holds ``want`` vectors; (held, seconds waited)."""
    started = time.monotonic()
    key = f'semcom_index_vectors{{space="{space}"}}'
    held = 0
    while time.monotonic() - started < INDEX_WAIT_S:
        held = int(cloud.metrics().get(key, 0))
        if held >= want:
            break
        time.sleep(0.25)
    return held, round(time.monotonic() - started, 2)


def _measure_pages(
    page: Any,
    base: str,
    paths: dict[str, str],
    s: DashboardSettings,
    crop_px: int | None,
    errors: list[str],
) -> dict[str, Any]:
    from urllib.parse import urlsplit

    from semcom.bench.dashboard_browser import PageLoad, load_page

    loads: dict[str, list[PageLoad]] = {name: [] for name in paths}
    for round_no in range(s.warmup + s.rounds):
        for name, path in paths.items():
            load = load_page(page, base + path)
            if load.status != 200 or urlsplit(load.url).path != urlsplit(path).path:
                errors.append(f"{name}: HTTP {load.status} at {load.url}")
            if round_no >= s.warmup:
                loads[name].append(load)
        _say(f"round {round_no + 1 - s.warmup}/{s.rounds}" if round_no >= s.warmup else "warm-up")
    out: dict[str, Any] = {}
    for name, got in loads.items():
        data = [ms for x in got for ms in x.data_ms]
        static = [ms for x in got for ms in x.static_ms]
        widths = [w for x in got for w in x.crop_widths]
        pending = sum(x.crops_pending for x in got)
        rebuilt = sum(w == crop_px for w in widths)
        if pending:
            errors.append(f"{name}: {pending} crop(s) still loading after the wait (not timed)")
        if crop_px is not None and rebuilt < len(widths) - pending:
            errors.append(f"{name}: {len(widths) - pending - rebuilt} crop(s) not rebuilt")
        out[name] = {
            "url": paths[name],
            "loads": len(got),
            "document_ms": summary([x.document_ms for x in got if x.document_ms is not None]),
            "dom_ms": summary([x.dom_ms for x in got]),
            "data_requests": len(data),
            "data_ms": summary(data),
            "static_requests": len(static),
            "static_ms": summary(static),
            "untimed_requests": sorted({p for x in got for p in x.untimed}),
            "crop_images": len(widths),
            "crops_rebuilt": rebuilt,
        }
    return out


def _browse(
    s: DashboardSettings,
    base: str,
    token: str,
    seeded: Seeded,
    db_url: str,
    crop_px: int | None,
) -> dict[str, Any]:
    """Sign in, time every page, then the live feed; what the browser measured."""
    from playwright.sync_api import sync_playwright

    from semcom.bench.dashboard_browser import OffsiteGuard, launch, new_context, sign_in
    from semcom.bench.dashboard_live import LiveInserter, measure_live

    errors: list[str] = []
    guard = OffsiteGuard()
    with sync_playwright() as driver:
        browser = launch(driver, s.chromium)
        try:
            context = new_context(browser, guard)
            page = context.new_page()
            sign_in(page, base, token)
            _say("signed in")
            paths = page_paths(seeded, s.query)
            pages = _measure_pages(page, base, paths, s, crop_px, errors)
            inserter = LiveInserter(db_url, seeded, s.seed)
            try:
                _say(f"live: {s.live_tracks} tracks, one every {s.live_every_s:g} s")
                live = measure_live(page, base, inserter, s.live_tracks, s.live_every_s)
            finally:
                inserter.close()
            version = f"{browser.browser_type.name} {browser.version}"
            context.close()
        finally:
            browser.close()
    return {
        "browser": version,
        "pages": pages,
        "live": {
            "tracks": live.inserted,
            "arrived": len(live.delay_ms),
            "every_s": s.live_every_s,
            "delay_ms": summary(live.delay_ms),
            "seen_ms": summary(live.seen_ms),
            "push_ms": summary(live.push_ms),
            "missing": live.missing,
            "what": "delay = browser receipt (data-received-ms) - commit time; seen = the "
            "cloud's poller saw it (data-stored-us) - commit; push = receipt - seen; gaps "
            "between inserts uniform in 0.5-1.5 x every_s (not locked to the cloud's poll)",
        },
        "offsite_requests": len(guard.blocked),
        "offsite_urls": sorted(set(guard.blocked))[:20],
        "page_errors": sorted(set(errors)),
    }


def run_dashboard(s: DashboardSettings, workdir: Path) -> dict[str, Any]:
    from cloud.store import space_name
    from semcom.bench.dashboard_decoder import BenchDecoder, write_bench_decoder
    from semcom.bench.dashboard_seed import CODEC, ENCODER, seed_catalog
    from semcom.bench.procs import Children, CloudChild, CloudSpec, free_port

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    token = secrets.token_urlsafe(24)
    seed_spec = SeedSpec(detections=s.detections, descriptions=s.descriptions, seed=s.seed)
    settings: dict[str, Any] = {"describer": {"enabled": False}}
    decoder: BenchDecoder | None = None
    if s.decoder:
        decoder = write_bench_decoder(workdir / "decoder.pt", ENCODER, seed_spec.dim, CODEC, s.seed)
        settings["decoder"] = {"checkpoint": str(decoder.path), "cache_size": s.crop_cache}
        _say(f"crop decoder: {decoder.describe()}")
    spec = CloudSpec(
        workdir / "cloud", free_port(), {}, api_tokens={"bench": token}, settings=settings
    )
    db_url = f"sqlite:///{spec.db_path}"
    _say(f"seeding {s.detections:,} detections into {spec.db_path}")
    seeded = seed_catalog(db_url, seed_spec, _Bars())
    _say(f"seeded in {seeded.seconds:.1f} s")
    space = space_name(ENCODER, seeded.dim, False)
    with Children() as kids:
        cloud = CloudChild(spec)
        kids.add(cloud)
        cloud.start()
        ready_s = round(cloud.wait_ready(READY_WAIT_S), 2)
        indexed, index_wait_s = _wait_index(cloud, space, seeded.embeddings)
        _say(f"cloud ready in {ready_s:.1f} s; index holds {indexed:,} vectors")
        crop_px = decoder.image_size if decoder is not None else None
        measured = _browse(s, spec.url, token, seeded, db_url, crop_px)
        alive = cloud.alive
        cloud.terminate()
    if not alive:
        measured["page_errors"].append("the cloud exited during the run")
    live = measured["live"]
    worst_page = max(
        (
            v[key]["p95"]
            for v in measured["pages"].values()
            for key in ("document_ms", "data_ms")
            if v[key] is not None
        ),
        default=0.0,
    )
    complete = (
        not measured["page_errors"]
        and live["arrived"] == live["tracks"]
        and measured["offsite_requests"] == 0
    )
    live_p95 = live["delay_ms"]["p95"] if live["delay_ms"] else None
    return {
        "benchmark": "dashboard",
        "detections": seeded.detections,
        "tracks": seeded.tracks,
        "embeddings": seeded.embeddings,
        "descriptions": seeded.descriptions,
        "rounds": s.rounds,
        "warmup": s.warmup,
        "browser": measured["browser"],
        "catalog": {
            "database": "SQLite (WAL), the cloud's migrations",
            "seeded": seed_spec.describe(),
            "codec": CODEC,
            "seed": s.seed,
            "seed_s": seeded.seconds,
        },
        "cloud": {
            "ready_s": ready_s,
            "index_vectors": indexed,
            "index_wait_s": index_wait_s,
            "describer": "off (seeded descriptions only)",
            "decoder": decoder.describe()
            if decoder is not None
            else "none (--no-decoder): crops are placeholders in the HTML (no image requests)",
            "decoder_settings": None
            if decoder is None
            else {
                **decoder.to_dict(),
                "device": "cpu",
                "cache_size": s.crop_cache,
                "cache": "no PNG kept: every crop request of every load decodes"
                if s.crop_cache == 0
                else f"the {s.crop_cache} most recently used PNGs kept: repeated loads hit",
            },
            "text_encoder": "none: text search finds descriptions only",
        },
        "how": HOW,
        "machine": {
            "cpus": os.cpu_count(),
            "load_1min_before": round(load_before, 2),
            "load_1min_after": round(os.getloadavg()[0], 2),
        },
        "pages": measured["pages"],
        "live": live,
        "offsite_requests": measured["offsite_requests"],
        "offsite_urls": measured["offsite_urls"],
        "page_errors": measured["page_errors"],
        "targets": TARGETS,
        "worst_page_p95_ms": worst_page,
        "complete": complete,
        "ok": complete
        and worst_page <= TARGETS["page_p95_ms"]
        and live_p95 is not None
        and live_p95 <= TARGETS["live_p95_ms"],
        "seconds": round(time.monotonic() - started, 1),
    }


def _ms(v: dict[str, float] | None) -> str:
    return "-" if v is None else f"{v['p50']:>7.1f} {v['p95']:>7.1f} {v['max']:>7.1f}"


def table(doc: dict[str, Any]) -> str:
    """The result as a readable table."""
    lines = [
        f"{doc['detections']:,} detections, {doc['tracks']:,} tracks, {doc['embeddings']:,} "
        f"embeddings, {doc['descriptions']} descriptions; {doc['browser']}; "
        f"{doc['rounds']} loads per page",
        "",
        f"{'page':16} {'document p50/p95/max ms':>24} {'data n':>7} "
        f"{'data p50/p95/max ms':>24}  url",
    ]
    for name, p in doc["pages"].items():
        lines.append(
            f"{name:16} {_ms(p['document_ms']):>24} {p['data_requests']:>7} "
            f"{_ms(p['data_ms']):>24}  {p['url']}"
        )
    live = doc["live"]
    cache = (doc["cloud"]["decoder_settings"] or {}).get("cache")
    lines += [
        "",
        f"crops: {doc['cloud']['decoder']}" + (f" (cache: {cache})" if cache else ""),
        f"live: {live['arrived']}/{live['tracks']} arrived; delay p50/p95/max "
        f"{_ms(live['delay_ms'])} ms (seen by the cloud {_ms(live['seen_ms'])}, pushed "
        f"{_ms(live['push_ms'])})",
        f"offsite requests: {doc['offsite_requests']}; errors: {doc['page_errors'] or 'none'}",
        f"targets: page p95 <= {doc['targets']['page_p95_ms']:g} ms (worst "
        f"{doc['worst_page_p95_ms']:.1f}), live p95 <= {doc['targets']['live_p95_ms']:g} ms: "
        f"{'ok' if doc['ok'] else 'MISSED'} ({doc['seconds']:.0f} s)",
    ]
    return "\n".join(lines)


@click.command("dashboard")
@click.option("--detections", type=click.IntRange(100), default=100_000, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=20, show_default=True, help="Per page.")
@click.option("--live-tracks", type=click.IntRange(1), default=40, show_default=True)
@click.option("--live-every-s", type=click.FloatRange(0.01), default=0.25, show_default=True)
@click.option("--descriptions", type=click.IntRange(0), default=500, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True)
@click.option(
    "--query", default="traffic", show_default=True, help="The text search's words (/explore?q=)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--decoder/--no-decoder",
    default=True,
    show_default=True,
    help="Serve rebuilt crops with an untrained decoder for the seeded space (the crops are "
    "noise; it times the crop route); without it crops are HTML placeholders, no requests.",
)
@click.option(
    "--crop-cache",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="The decoder's PNG cache (decoder.cache_size); 0: every crop request decodes (the "
    "cold case; the cloud's own default is 1024).",
)
@click.option(
    "--chromium",
    type=click.Path(dir_okay=False, path_type=Path),
    default=CHROMIUM,
    show_default=True,
    help="The system Chromium Playwright drives (never downloaded).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the run's files here."
)
@click.pass_context
def command(
    ctx: click.Context,
    detections: int,
    rounds: int,
    live_tracks: int,
    live_every_s: float,
    descriptions: int,
    warmup: int,
    query: str,
    seed: int,
    decoder: bool,
    crop_cache: int,
    chromium: Path,
    as_json: bool,
    keep: Path | None,
) -> None:
    """The dashboard's server time per page and the live feed's delay, in headless Chromium
    against a real cloud holding N detections (loopback)."""
    s = DashboardSettings(
        detections,
        rounds,
        live_tracks,
        seed,
        descriptions,
        warmup,
        query,
        live_every_s,
        chromium,
        decoder,
        crop_cache,
    )
    try:
        require_browser(chromium)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            doc = run_dashboard(s, keep)
        else:
            with tempfile.TemporaryDirectory(prefix="semcom-dashboard-") as tmp:
                doc = run_dashboard(s, Path(tmp))
    except BrowserUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(doc) if as_json else table(doc))
    if not doc["complete"]:
        ctx.exit(1)
