"""Scenarios: which links, which payload strategies, how many cameras, what latency target.

A scenario is named (built-in: ``paper``, ``iot``, ``quick``) or a YAML file with the same
fields (unknown keys are errors); ``profiles`` lists preset names (:mod:`sim.profiles`) and/or
inline profiles. ``semcom sim run --scenario NAME|FILE`` runs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from shared import settings
from sim.errors import ProfileError, ScenarioError
from sim.profiles import NAME_PATTERN, LinkProfile, parse_profile, preset, read_yaml_any


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _profile(value: object) -> object:
    try:
        if isinstance(value, str):
            return preset(value)
        if isinstance(value, Mapping):
            return parse_profile(value)
    except ProfileError as exc:
        raise ValueError(str(exc)) from None
    return value


Profile = Annotated[LinkProfile, BeforeValidator(_profile)]


class StrategySettings(_Model):
    jpeg_quality: int = Field(75, ge=1, le=95, description="JPEG quality of whole frames.")
    h264_crf: int = Field(28, ge=0, le=51, description="libx264 constant rate factor.")
    crop_jpeg_quality: int = Field(75, ge=1, le=95, description="JPEG quality of RoI crops.")
    codecs: tuple[str, ...] = Field(
        ("f32", "f16", "int8"),
        description="Codecs of the semcom-<codec> variants (built-in ids or codebook .npz).",
    )
    ladder: tuple[str, ...] = Field(
        ("f16", "int8"),
        description="Codec ladder of semcom-ladder, richest first (fewer than 2: no ladder).",
    )
    all_rois: bool = Field(True, description="Also simulate every-RoI (non track-aware) variants.")


class Scenario(_Model):
    name: str = Field(pattern=NAME_PATTERN, description="Scenario id.")
    description: str = Field("", description="What question this scenario answers.")
    profiles: tuple[Profile, ...] = Field(min_length=1, description="Links to simulate.")
    strategies: StrategySettings = StrategySettings()
    encoder: str = Field(
        "vit_base_patch16_224",
        description="timm encoder of the edge (the paper: ViT-B, 768-d); --encoder overrides.",
    )
    codec: str = Field("f16", description="The edge's embedding codec (semcom's default).")
    imgsz: int | None = Field(None, ge=32, le=4096, description="Detector input size (px).")
    max_frames: int | None = Field(None, ge=1, description="Use at most this many frames.")
    cameras: tuple[int, ...] = Field(
        (1, 10), min_length=1, description="Camera counts simulated for latency distributions."
    )
    duration_s: float = Field(30.0, gt=0, le=3_600, description="Simulated time per run (s).")
    drain_s: float = Field(5.0, ge=0, description="Time after the run to deliver its last (s).")
    search_duration_s: float = Field(
        10.0, gt=0, le=3_600, description="Simulated time of each capacity-search run (s)."
    )
    latency_target_ms: float = Field(
        1_000.0, gt=0, description="End-to-end latency a cell must keep (ms)."
    )
    percentile: float = Field(95.0, gt=0, le=100, description="Latency percentile checked.")
    min_delivered: float = Field(
        0.99, gt=0, le=1, description="Share of the offered bytes that must arrive."
    )
    max_utilisation: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Largest share of the link's mean capacity the cameras may offer (a "
        "queue loaded to 100 % grows without bound; short runs cannot show it).",
    )
    max_cameras: int = Field(1_000, ge=1, le=100_000, description="Capacity search limit.")
    capacity_strategies: tuple[str, ...] = Field(
        ("raw", "jpeg", "h264", "jpeg_crops", "paper", "semcom", "semcom-ladder"),
        description="Strategies whose cameras-per-cell is searched (others: fixed N only).",
    )
    seed: int = Field(0, ge=0, description="Seed of every random draw (reproducible runs).")


BUILTIN: Final[dict[str, dict[str, Any]]] = {
    "paper": {
        "name": "paper",
        "description": "The paper's comparison (99.9 % less data than the raw frame) beside "
        "JPEG, H.264 and semcom on the same frames, over mobile uplinks.",
        "profiles": ["constrained-256k", "3g", "lte-congested", "lte", "5g"],
    },
    "iot": {
        "name": "iot",
        "description": "Narrow and long links: NB-IoT, LTE-M, GEO and LEO satellite.",
        "profiles": ["nb-iot", "lte-m", "satellite-geo", "satellite-leo"],
        "latency_target_ms": 5_000.0,
    },
    "quick": {
        "name": "quick",
        "description": "A short smoke run: 100 frames, two links, small searches.",
        "profiles": ["constrained-256k", "lte"],
        "max_frames": 100,
        "duration_s": 10.0,
        "search_duration_s": 5.0,
        "max_cameras": 200,
        "strategies": {"codecs": ["f16", "int8"]},
    },
}


def _validate(data: Mapping[str, Any], where: str) -> Scenario:
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as exc:
        raise ScenarioError(
            f"invalid scenario {where}: {settings.describe_errors(exc.errors())}"
        ) from None


def load_scenario(spec: str) -> Scenario:
    """A built-in scenario by name, or a YAML file by path."""
    if spec in BUILTIN:
        return _validate(BUILTIN[spec], repr(spec))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ScenarioError(
            f"no scenario {spec!r}: not a built-in ({', '.join(BUILTIN)}) nor a YAML file"
        )
    try:
        data = read_yaml_any(path, "scenario file")
    except ProfileError as exc:
        raise ScenarioError(str(exc)) from None
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario file {path} must hold a mapping at the top level")
    data.setdefault("name", path.stem.lower())
    return _validate(_resolve_trace_files(data, path), str(path))


def _resolve_trace_files(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Inline profiles' ``trace_file`` paths are relative to the scenario file."""
    profiles = data.get("profiles")
    if not isinstance(profiles, list):
        return data
    out = []
    for item in profiles:
        if isinstance(item, dict) and "trace_file" in item:
            try:
                item = parse_profile(item, str(path))
            except ProfileError as exc:
                raise ScenarioError(str(exc)) from None
        out.append(item)
    return {**data, "profiles": out}
