"""Run a scenario: measure the clip once, build every payload, simulate it on every link.

The edge pipeline is built from an :class:`edge.config.EdgeConfig` exactly as the agent builds
it (detector, encoder, codec, emission policy, crop scale), so the sizes are the agent's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from sim.bundling import BundleSettings
from sim.des import Capacity, SimResult, SimSettings, max_cameras, simulate
from sim.errors import MeasureError
from sim.measure import MediaSettings, Recording, measure_video
from sim.scenarios import Scenario
from sim.strategies import Headline, Payload, build_payloads, headline
from sim.warmup import WARMUP_VECTORS

logger = logging.getLogger(__name__)

Tick = Callable[[int], None]  # units of work done (frames, then simulation runs)


@dataclass
class ScenarioRun:
    scenario: Scenario
    recording: Recording
    payloads: list[Payload]
    headlines: list[Headline]
    runs: list[SimResult] = field(default_factory=list)
    capacities: list[Capacity] = field(default_factory=list)

    def payload(self, name: str) -> Payload | None:
        return next((p for p in self.payloads if p.name == name), None)


def edge_overrides(
    scenario: Scenario,
    source: Path,
    detector: str,
    *,
    encoder: str | None = None,
    encoder_weights: Path | None = None,
    random_init: bool = False,
    encoder_runtime: str | None = None,
    codec: str | None = None,
    imgsz: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    encoder_preprocess: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Dotted overrides of the edge config (the keys ``semcom edge run`` uses)."""
    name = encoder or scenario.encoder
    out: dict[str, Any] = {
        "source.uri": str(source),
        "source.pace": False,
        "detector.model": detector,
        "codec": codec or scenario.codec,
    }
    if imgsz or scenario.imgsz:
        out["detector.imgsz"] = imgsz or scenario.imgsz
    if name.endswith(".onnx"):
        out.update({"encoder.type": "onnx", "encoder.path": name})
    else:
        out["encoder.name"] = name
        if encoder_weights is not None:
            out["encoder.weights"] = str(encoder_weights)
        if random_init:
            out["encoder.random_init"] = True
        if encoder_runtime is not None:
            out["encoder.runtime"] = encoder_runtime
        if model_kwargs:
            out["encoder.model_kwargs"] = dict(model_kwargs)
        if encoder_preprocess:
            out["encoder.preprocess"] = dict(encoder_preprocess)
    return out


LEAN_STRATEGY: Final = "semcom-lean"


def _dotted(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (a YAML preset as command-line overrides)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def preset_overrides(overrides: Mapping[str, Any], preset: Path) -> dict[str, Any]:
    """``overrides`` with a preset file's keys layered over them (the preset wins)."""
    from shared.settings import SettingsError, read_yaml

    try:
        data = read_yaml(preset)
    except SettingsError as exc:
        raise MeasureError(f"preset {preset}: {exc}") from None
    return {**overrides, **_dotted(data)}


def max_code_bytes(value: Any) -> int:
    """A preset's ``uplink.codebook_max_bytes`` (the edge's default when it sets none)."""
    from edge.config import UplinkConfig

    if value is None:
        return int(UplinkConfig.model_fields["codebook_max_bytes"].default)
    return int(value)


def pick_codebook(books: Sequence[tuple[Path, int]], max_bytes: int, preset: str) -> Path:
    """The codebook with the largest code of at most ``max_bytes``, as the edge installs the
    largest the cloud offers within its ``uplink.codebook_max_bytes``."""
    fitting = [(size, path) for path, size in books if size <= max_bytes]
    if not fitting:
        sizes = ", ".join(f"{path.name} {size} B" for path, size in books)
        raise MeasureError(
            f"no --codebook fits {preset}'s uplink.codebook_max_bytes {max_bytes} ({sizes})"
        )
    return max(fitting, key=lambda item: item[0])[1]


def record_clip(
    scenario: Scenario,
    overrides: dict[str, Any],
    config_path: Path | None = None,
    tick: Tick | None = None,
    *,
    lean_preset: Path | None = None,
    codebooks: Sequence[Path] = (),
) -> Recording:
    """Build the agent's pipeline from its config and measure the clip with it.

    ``lean_preset``: also run the emission policy and codec of this preset (layered over the
    same config) on the same frames, as the ``semcom-lean`` stream; ``codebooks``: codebook
    files (``semcom codec fit``); each preset codes with the one of the largest code within its
    ``uplink.codebook_max_bytes``, as an edge takes from the codebooks its cloud offers.
    """
    from edge.config import load_config
    from edge.detect import Detector
    from edge.embed import build_encoder
    from edge.pipeline import EdgePipeline
    from edge.policy import EmissionPolicy
    from shared.errors import CodecError
    from shared.pq import load_codebook
    from shared.vectors import create_codec

    books: list[tuple[Path, int]] = []
    for path in codebooks:
        try:
            books.append((path, load_codebook(path).code_bytes))
        except CodecError as exc:
            raise MeasureError(f"codebook {path}: {exc}") from None
    config = load_config(config_path, overrides, environ={})
    if books:
        limit = max_code_bytes(config.uplink.codebook_max_bytes if config.uplink else None)
        overrides = {**overrides, "codec": str(pick_codebook(books, limit, "semcom"))}
        config = load_config(config_path, overrides, environ={})
    encoder = build_encoder(config.encoder)
    detector = Detector(config.detector)
    pipeline = EdgePipeline(
        detector,
        encoder,
        create_codec(config.codec, encoder.dim),
        EmissionPolicy(config.policy, config.source.camera_id),
        config.crop.scale,
    )
    extra: dict[str, EdgePipeline] = {}
    if lean_preset is not None:
        lean_keys = preset_overrides(overrides, lean_preset)
        # Without an uplink to complete (cloud, token), the preset's uplink keys set only the
        # bundling and the code size the lean stream is measured with.
        lean_uplink = {}
        if config.uplink is None:
            lean_uplink = {k: lean_keys.pop(k) for k in list(lean_keys) if k.startswith("uplink.")}
        lean = load_config(config_path, lean_keys, {})
        if books:
            limit = max_code_bytes(
                lean.uplink.codebook_max_bytes
                if lean.uplink is not None
                else lean_uplink.get("uplink.codebook_max_bytes")
            )
            lean_keys["codec"] = str(pick_codebook(books, limit, LEAN_STRATEGY))
            lean = load_config(config_path, lean_keys, {})
        extra[LEAN_STRATEGY] = EdgePipeline(
            detector,  # replaced by the first pipeline's detections
            encoder,  # shared through one embedding cache
            create_codec(lean.codec, encoder.dim),
            EmissionPolicy(lean.policy, lean.source.camera_id),
            lean.crop.scale,
        )
    s = scenario.strategies
    media = MediaSettings(s.jpeg_quality, s.h264_crf, s.crop_jpeg_quality)
    rec = measure_video(
        Path(config.source.uri),
        pipeline,
        media=media,
        max_frames=scenario.max_frames,
        progress=tick,
        extra=extra,
    )
    rec.min_track_frames = config.policy.confirm_frames
    rec.bundling = BundleSettings.of(config.uplink)
    for stream in rec.streams:
        if stream.name == LEAN_STRATEGY and lean_preset is not None:
            stream.description = f"the lean preset ({lean_preset.name})"
            stream.bundling = (
                BundleSettings.of_keys(lean_uplink)
                if lean_uplink
                else BundleSettings.of(lean.uplink)
            )
    return rec


def make_payloads(
    scenario: Scenario, rec: Recording, warmup_vectors: int | None = WARMUP_VECTORS
) -> tuple[list[Payload], list[Headline]]:
    s = scenario.strategies
    payloads = build_payloads(
        rec, s.codecs, s.ladder, seed=scenario.seed, warmup_vectors=warmup_vectors
    )
    if not s.all_rois:
        payloads = [p for p in payloads if not p.name.endswith("-all-rois")]
    raw = next((p for p in payloads if p.name == "raw"), None)
    h264 = next((p for p in payloads if p.name == "h264"), None)
    return payloads, [headline(p, raw, h264) for p in payloads]


def planned_runs(scenario: Scenario, payloads: list[Payload]) -> int:
    """Fixed-N runs exactly, plus a guess of 3 runs per capacity search (for progress bars)."""
    fixed = len(scenario.profiles) * len(payloads) * len(scenario.cameras)
    searched = sum(1 for p in payloads if p.name in scenario.capacity_strategies)
    return fixed + 3 * searched * len(scenario.profiles)


def simulate_scenario(
    scenario: Scenario,
    rec: Recording,
    tick: Tick | None = None,
    warmup_vectors: int | None = WARMUP_VECTORS,
) -> ScenarioRun:
    """Every payload on every link: at each of ``scenario.cameras``, and the capacity search."""
    payloads, heads = make_payloads(scenario, rec, warmup_vectors)
    out = ScenarioRun(scenario, rec, payloads, heads)
    settings = SimSettings(
        duration_s=scenario.duration_s, drain_s=scenario.drain_s, seed=scenario.seed
    )
    search = SimSettings(
        duration_s=scenario.search_duration_s, drain_s=scenario.drain_s, seed=scenario.seed
    )
    for profile in scenario.profiles:
        for payload in payloads:
            if not len(payload.sizes):
                continue
            for n in scenario.cameras:
                run = simulate(payload, profile, replace(settings, cameras=n))
                out.runs.append(run)
                if tick is not None:
                    tick(1)
            if payload.name in scenario.capacity_strategies:
                out.capacities.append(
                    max_cameras(
                        payload,
                        profile,
                        search,
                        target_ms=scenario.latency_target_ms,
                        percentile=scenario.percentile,
                        min_delivered=scenario.min_delivered,
                        limit=scenario.max_cameras,
                        max_utilisation=scenario.max_utilisation,
                        on_run=(lambda _n: tick(1)) if tick is not None else None,
                    )
                )
    return out
