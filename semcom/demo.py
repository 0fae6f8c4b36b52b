"""``semcom demo``: the whole system in one command, on this machine.

1. a cloud (``semcom cloud serve`` in a child process: SQLite catalog + faiss index in the data
   directory, the describer when this build has one) with an edge token and an API token
   made for the run;
2. an edge agent on the source (default: ultralytics' ``bus.jpg`` as a still camera) sending
   over a real WebRTC data channel to that cloud, with progress lines on stderr;
3. once the source is exhausted and every message acknowledged (the spool is empty), the
   descriptions (bounded wait), an example search and the catalog's tracks, read through the
   public API, and the bytes sent compared with raw frames and H.264 of the same frames;
4. the summary on stdout (``--json``: one JSON object), then everything is stopped and the
   temporary data directory removed, unless ``--keep-serving``.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import signal
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from edge.encoder_options import encoder_model_options
from semcom.demo_errors import DemoError
from semcom.demo_models import (
    DEFAULT_ENCODER,
    PULLED_DETECTOR,
    PULLED_ENCODER,
    check_detector,
    pulled_models,
)

logger = logging.getLogger(__name__)

API_CLIENT = "demo"
#: Seconds to wait for the last window's description once it closed (an LLM gets longer).
DESCRIBE_WAIT_RULES_S = 20.0
DESCRIBE_WAIT_LLM_S = 180.0


@dataclass(frozen=True)
class DemoOptions:
    source: str | None
    detector: str | None
    encoder: str
    encoder_weights: Path | None
    random_init_encoder: bool
    data_dir: Path | None
    port: int
    keep_serving: bool
    describer_base_url: str | None
    describer_model: str | None
    describer_api_key: str | None
    decoder: Path | None
    seconds: float | None
    as_json: bool
    describe_window_s: float = 10.0
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    encoder_preprocess: dict[str, Any] = field(default_factory=dict)


def _echo(text: str) -> None:
    click.echo(text, err=True)


class _QuietRootLogger(logging.Filter):
    """Drops what libraries log on the root logger below ERROR (onnxruntime's quantiser
    prints hundreds of lines while the encoder is exported)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno >= logging.ERROR


@contextmanager
def _quiet_libraries() -> Any:
    root = logging.getLogger()
    if root.getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    quiet = _QuietRootLogger()
    for handler in root.handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.removeFilter(quiet)


@contextmanager
def _stop_on_signals(stop: threading.Event, interrupted: threading.Event) -> Any:
    """SIGINT/SIGTERM set ``stop`` (the agent then flushes and returns) and ``interrupted``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        _echo(f"\n{signal.Signals(signum).name}: stopping the edge...")
        interrupted.set()
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _sigterm_interrupts() -> Any:
    """SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so the cloud process and the
    temporary folder are cleaned up on either."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _data_dir(stack: ExitStack, given: Path | None) -> Path:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        return given.resolve()
    path = Path(tempfile.mkdtemp(prefix="semcom-demo-"))
    stack.callback(shutil.rmtree, path, ignore_errors=True)
    return path


def run_demo(opts: DemoOptions) -> dict[str, Any]:
    """Run the demo and print its summary (which is returned); with ``keep_serving`` the
    cloud then stays up until Ctrl-C or SIGTERM."""
    from edge.daemon import build_agent, run_agent
    from semcom import software_version
    from semcom.demo_cloud import CloudProcess, DescriberOptions, free_port, plan_cloud
    from semcom.demo_edge import (
        EDGE_ID,
        H264Feed,
        Progress,
        attach_tap,
        edge_overrides,
        load_edge_config,
        outcome,
        progress_line,
    )
    from semcom.demo_query import query_cloud
    from semcom.demo_source import resolve_source

    t0 = time.monotonic()
    with ExitStack() as stack:
        stack.enter_context(_sigterm_interrupts())
        stack.enter_context(_quiet_libraries())
        data_dir = _data_dir(stack, opts.data_dir)
        source = resolve_source(opts.source, data_dir, opts.seconds)
        check_detector(opts.detector)
        edge_token, api_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        plan = plan_cloud(
            data_dir,
            opts.port or free_port(),
            {EDGE_ID: edge_token},
            {API_CLIENT: api_token},
            DescriberOptions(
                opts.describer_base_url,
                opts.describer_model,
                opts.describer_api_key,
                opts.describe_window_s,
            ),
            opts.decoder,
        )
        cloud = CloudProcess(plan, data_dir)
        cloud.start()
        stack.callback(cloud.stop)
        _echo(f"demo: cloud starting at {cloud.url} (log: {cloud.log_path})")
        _echo(f"demo: loading the edge's detector and encoder for {source.label}")
        config = load_edge_config(
            edge_overrides(
                source,
                detector=opts.detector,
                encoder=opts.encoder,
                encoder_weights=opts.encoder_weights,
                model_kwargs=opts.model_kwargs,
                encoder_preprocess=opts.encoder_preprocess,
                random_init=opts.random_init_encoder,
                cloud_url=cloud.url,
                token=edge_token,
                spool=data_dir / "edge-spool.db",
            )
        )
        agent = build_agent(config, software_version())
        feed = H264Feed()
        tap = attach_tap(agent, source, feed)
        cloud.wait_ready()
        t_ready = time.monotonic()
        _echo("demo: edge running; progress every 2 s (Ctrl-C stops)")
        stop, interrupted = threading.Event(), threading.Event()
        failure: list[DemoError] = []

        def check() -> None:
            if not cloud.alive and not failure:
                try:
                    cloud.check()
                except DemoError as exc:
                    failure.append(exc)
                    stop.set()

        with (
            _stop_on_signals(stop, interrupted),
            Progress(lambda: progress_line(agent, tap, t_ready), check, echo=_echo),
        ):
            stats = run_agent(agent, stop, status=False)
        t_edge = time.monotonic()
        if failure:
            raise failure[0]
        if interrupted.is_set():
            raise click.Abort()
        if stop.is_set():  # the uplink gave up (its error was logged)
            error = agent.uplink.error if agent.uplink is not None else None
            raise DemoError(f"the edge's uplink stopped: {error}")
        edge = outcome(agent, tap, feed, stats)
        _echo(
            f"demo: edge done: {edge.frames} frames, {edge.sent_bytes / 1e3:.1f} kB sent, "
            f"{edge.left_in_spool} messages left unacknowledged; asking the cloud"
        )
        wait_s = DESCRIBE_WAIT_LLM_S if opts.describer_base_url else DESCRIBE_WAIT_RULES_S
        summary = query_cloud(
            cloud,
            plan,
            api_token,
            edge,
            source,
            describe_wait_s=wait_s,
            echo=_echo,
            timings={"startup": t_ready - t0, "edge": t_edge - t_ready},
            kept=opts.keep_serving,
            save_dir=data_dir if opts.data_dir else None,
        )
        summary["data_dir"] = str(data_dir) if opts.data_dir else None
        _print(summary, opts.as_json)
        if opts.keep_serving:
            _serve(cloud)
        return summary
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack re-raises


def _print(summary: dict[str, Any], as_json: bool) -> None:
    import json

    from semcom.demo_summary import render_text

    click.echo(json.dumps(summary, indent=2, default=str) if as_json else render_text(summary))


def _serve(cloud: Any) -> None:
    _echo(f"demo: serving at {cloud.url} until Ctrl-C; dashboard: {cloud.url}/")
    try:
        while cloud.alive:
            time.sleep(0.5)
    except KeyboardInterrupt:
        _echo("\ndemo: stopping the cloud")
        return
    _echo(f"demo: the cloud stopped:\n{cloud.log_tail()}")


@click.command("demo")
@click.option(
    "--source",
    "-s",
    help="Video file, image, image folder, rtsp/http URL or camera index "
    "[default: ultralytics' bus.jpg as a still camera].",
)
@click.option(
    "--detector",
    "-d",
    help="Detector: a models-manifest name (yolo11n) or a .pt/.onnx/.engine file "
    "[default: yolo11n.pt; with --pull-models: yolo11n].",
)
@click.option(
    "--encoder",
    "-e",
    help="Encoder: a models-manifest name (mobilenetv2), a timm model name, or an exported "
    ".onnx encoder [default: vit_small_patch16_224; with --pull-models: mobilenetv2].",
)
@click.option(
    "--pull-models",
    is_flag=True,
    help="Download the detector and the encoder first (`semcom models pull`, once: they are "
    "kept in the models directory). Without a network, run on untrained models instead, "
    "and say so.",
)
@encoder_model_options
@click.option(
    "--random-init-encoder",
    is_flag=True,
    help="DEVELOPMENT ONLY: untrained encoder weights (the summary says so).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the cloud's catalog, index and log here [default: a temporary folder, removed].",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Cloud port."
)
@click.option("--keep-serving", is_flag=True, help="Keep the cloud's API up until Ctrl-C.")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    help="Source time to run: a video's first seconds [default: all of it], a still image "
    "(default 4) or a live stream (default 10).",
)
@click.option("--describer-base-url", help="OpenAI-compatible endpoint [default: rules].")
@click.option("--describer-model", help="Model at that endpoint (must accept images).")
@click.option(
    "--describer-api-key",
    envvar="SEMCOM_DEMO_DESCRIBER_API_KEY",
    help="API key of that endpoint [env: SEMCOM_DEMO_DESCRIBER_API_KEY].",
)
@click.option(
    "--describe-window",
    "describe_window_s",
    type=click.FloatRange(min=1.0),
    default=10.0,
    show_default=True,
    help="Length (s) of the time windows the describer summarises in the demo.",
)
@click.option(
    "--decoder",
    type=click.Path(path_type=Path),
    help="Crop decoder checkpoint (semcom cloud train-decoder): rebuilt crops for the API.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def command(
    source: str | None,
    detector: str | None,
    encoder: str | None,
    pull_models: bool,
    encoder_weights: Path | None,
    model_kwargs: dict[str, Any],
    encoder_preprocess: dict[str, Any],
    random_init_encoder: bool,
    data_dir: Path | None,
    port: int,
    keep_serving: bool,
    seconds: float | None,
    describer_base_url: str | None,
    describer_model: str | None,
    describer_api_key: str | None,
    describe_window_s: float,
    decoder: Path | None,
    as_json: bool,
) -> None:
    """Run a cloud and an edge on this machine, linked over WebRTC, and summarise.

    The edge detects, tracks and embeds the road users of the source and sends vectors to
    the cloud; the summary compares the bytes sent with raw frames and H.264 of the same
    frames, and shows tracks, descriptions, an example search and where the API is.
    """
    from edge.errors import EdgeError
    from shared.errors import ProtocolError

    if pull_models:
        detector, encoder, untrained = pulled_models(
            detector or PULLED_DETECTOR, encoder or PULLED_ENCODER, encoder_weights
        )
        random_init_encoder = random_init_encoder or untrained
    options = DemoOptions(
        source=source,
        detector=detector,
        encoder=encoder or DEFAULT_ENCODER,
        encoder_weights=encoder_weights,
        model_kwargs=model_kwargs,
        encoder_preprocess=encoder_preprocess,
        random_init_encoder=random_init_encoder,
        data_dir=data_dir,
        port=port,
        keep_serving=keep_serving,
        describer_base_url=describer_base_url,
        describer_model=describer_model,
        describer_api_key=describer_api_key,
        decoder=decoder,
        seconds=seconds,
        as_json=as_json,
        describe_window_s=describe_window_s,
    )
    try:
        run_demo(options)
    except (DemoError, EdgeError, ProtocolError) as exc:
        raise click.ClickException(str(exc)) from None
    except ImportError as exc:  # an extra that is not installed
        raise click.ClickException(
            f"semcom demo runs the edge and the cloud: it needs {exc.name or exc!s}; install "
            "pip install 'semcom[all]'"
        ) from None
