"""Edge configuration: one validated object built from a YAML file, environment and flags.

Precedence (last wins): defaults < YAML file < ``SEMCOM_EDGE__SECTION__FIELD`` environment
variables < command-line flags. Unknown keys are errors, and every error names where its value
came from (the file, the environment variable, the command line). Pluggable backends pick their
implementation with a ``type`` field. Whatever ``edge run`` would refuse about a value on its
own (a codec that does not exist) is refused here, so ``show-config`` refuses it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from edge.config_health import HealthConfig as HealthConfig  # the health section
from edge.config_policy import PolicyConfig as PolicyConfig  # the policy section
from edge.config_tracking import TrackingConfig as TrackingConfig  # detector.tracking
from edge.encoder_config import EncoderConfig as EncoderConfig  # the encoder section
from edge.encoder_config import OnnxEncoderConfig as OnnxEncoderConfig
from edge.encoder_config import PreprocessConfig as PreprocessConfig
from edge.encoder_config import TimmEncoderConfig as TimmEncoderConfig
from edge.errors import ConfigError
from shared import settings
from shared.messages import ID_PATTERN
from shared.vectors import builtin_codecs

ENV_PREFIX = "SEMCOM_EDGE__"
#: COCO ids of road users: person, bicycle, car, motorcycle, bus, truck.
ROAD_USERS = (0, 1, 2, 3, 5, 7)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    uri: str = Field(
        description="Video file (mp4/avi/mkv), image folder, rtsp:// or http(s):// stream, or a "
        "USB camera index such as '0'."
    )
    camera_id: str = Field(
        "cam-01",
        pattern=f"^{ID_PATTERN}$",
        max_length=64,
        description="Camera id sent with every message.",
    )
    fps: float | None = Field(
        None, gt=0, le=240, description="Sample frames at this rate (default: every frame)."
    )
    loop: bool = Field(False, description="Restart a video file or image folder at its end.")
    pace: bool = Field(
        True,
        description="Deliver file frames at the file's own rate, like a "
        "live camera (off: as fast as the pipeline takes them).",
    )
    reconnect_initial_s: float = Field(1.0, gt=0, description="First reconnect delay (s).")
    reconnect_max_s: float = Field(30.0, gt=0, description="Largest reconnect delay (s).")


class DetectorConfig(_Model):
    model: str = Field(
        "yolo11n.pt",
        description="A detector name of `semcom models list` (yolo11n, yolo11n-int8-320, ...: "
        "its file in the models directory, hash-checked) or an ultralytics model file: .pt, "
        ".onnx, .engine or .yaml (a .yaml builds an untrained model: development only).",
    )
    imgsz: int = Field(640, ge=32, le=4096, description="Inference size (px).")
    conf: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Confidence threshold. Low, as ultralytics' own tracking default: ByteTrack "
        "matches boxes down to detector.tracking.track_low_thresh to tracks it holds (a new "
        "track needs new_track_thresh), so a vehicle's weak frames do not break its track.",
    )
    iou: float = Field(0.7, gt=0.0, le=1.0, description="NMS IoU threshold.")
    classes: tuple[int, ...] = Field(ROAD_USERS, description="Class ids kept (COCO ids).")
    tracker: Literal["bytetrack", "botsort"] = Field(
        "bytetrack", description="Ultralytics tracker."
    )
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="The tracker's association settings."
    )
    device: str | None = Field(None, description="'cpu', '0' (GPU 0), ... (default: automatic).")
    ort_spinning: bool = Field(
        False,
        description="Let ONNX Runtime worker threads spin-wait between operators. Off leaves the "
        "CPU to the decoding and embedding threads: on 2 cores it raised pipeline fps by about "
        "half in our measurements (ONNX models only).",
    )
    ort_threads: int | None = Field(
        None, ge=1, le=64, description="ONNX Runtime threads for the detector (default: all cores)."
    )
    settings_dir: Path | None = Field(
        None,
        description="Writable folder for ultralytics "
        "settings (default: ~/.cache/semcom/ultralytics).",
    )


class CropConfig(_Model):
    scale: float = Field(
        2.5, gt=0, le=10, description="Box scale S of the square RoI crop (paper: 2.5)."
    )


class FileSinkConfig(_Model):
    type: Literal["file"] = "file"
    path: Path = Field(description="Message file to append to (replayable by cloud and sim).")


SinkConfig = Annotated[FileSinkConfig, Field(discriminator="type")]

_RATE_UNITS = {"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 1}
_RATE_UNITS |= {"kbps": 1e3, "mbps": 1e6, "gbps": 1e9, "k": 1e3, "m": 1e6}


def parse_rate(value: object) -> float:
    """``200kbit``, ``1.5mbit``, ``256000`` -> bit/s (``kbps``/``mbps`` also accepted)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz/")
    unit = text[len(number) :].replace("/s", "")
    if unit not in _RATE_UNITS or not number:
        raise ValueError(f"{value!r} is not a rate such as 200kbit, 1.5mbit or 256000 (bit/s)")
    return float(number) * _RATE_UNITS[unit]


Rate = Annotated[float, BeforeValidator(parse_rate), Field(gt=0)]


def check_codec(spec: str) -> str:
    """A codec the edge can build (``shared.vectors.create_codec``): a built-in id, or a
    codebook .npz that exists. Checked when the config is validated, so that ``show-config``
    refuses what ``run`` would refuse once its models are loaded."""
    if spec in builtin_codecs():
        return spec
    if spec.endswith(".npz"):
        if not Path(spec).expanduser().is_file():
            raise ValueError(f"codebook {spec} does not exist")
        return spec
    raise ValueError(
        f"unknown embedding codec {spec!r} (built-in: {', '.join(builtin_codecs())}; "
        "or a codebook .npz path)"
    )


CodecSpec = Annotated[str, AfterValidator(check_codec)]


class IceServerConfig(_Model):
    urls: tuple[str, ...] = Field(description="stun:/turn: URLs of one ICE server.")
    username: str | None = None
    credential: str | None = None


class UplinkConfig(_Model):
    cloud: str = Field(
        description="Cloud base URL, e.g. https://cloud.example:8443 (signaling goes to "
        "POST {cloud}/v1/edges/{edge_id}/session).",
        pattern=r"^https?://",
    )
    token: SecretStr = Field(
        description="This edge's token (set it with SEMCOM_EDGE__UPLINK__TOKEN or --token "
        "rather than in a shared file)."
    )
    transport: Literal["webrtc", "websocket"] = Field(
        "webrtc",
        description="webrtc: data channels over DTLS/SCTP/UDP; websocket: one TCP connection "
        "to {cloud}/v1/edges/{edge_id}/ws, for networks that block UDP.",
    )
    ca_file: Path | None = Field(
        None, description="CA bundle that signs the cloud's TLS certificate (https URLs)."
    )
    ice_servers: tuple[IceServerConfig, ...] = Field(
        (), description="STUN/TURN servers; none needed on a LAN or loopback."
    )
    ice_host_addresses: tuple[str, ...] | None = Field(
        None,
        description="Offer ICE host candidates only on these local addresses (e.g. "
        "[127.0.0.1] for loopback tests); default: every interface but loopback.",
    )
    spool_path: Path = Field(
        Path("semcom-spool.db"), description="Durable spool (SQLite) of unacknowledged messages."
    )
    spool_max_bytes: ByteSize = Field(
        ByteSize(256 * 1024 * 1024),
        description="Spool bound (e.g. 256MiB); when full, the lowest-priority oldest messages "
        "go first (counts, then boxes, then embedding updates, then track ends).",
    )
    accept_codebooks: bool = Field(
        True,
        description="Take the codebook the cloud fits for this encoder and pushes: it is kept "
        "in codebook_dir and every embedding uses it from then on (also after a restart).",
    )
    codebook_dir: Path | None = Field(
        None,
        description="Where pushed codebooks are kept (default: next to the spool, "
        "<spool name>-codebooks/).",
    )
    codebook_max_bytes: int = Field(
        64,
        ge=1,
        description="Largest code (bytes per embedding) of a pushed codebook this edge takes; "
        "a larger one is refused and the cloud offers its next smaller one. 64-byte codes keep "
        "more recall (~0.98 of f32's same-track recall, 32-byte ~0.94) and fit the default "
        "preset's byte budget; a lean budget (deploy/edge.lean.yaml) needs 32.",
    )
    max_rate: Rate | None = Field(
        None, description="Uplink budget, e.g. 200kbit (token bucket; default: unlimited)."
    )
    burst_bytes: int | None = Field(
        None,
        ge=1024,
        description="Token bucket depth (bytes): how far sending may run ahead of max_rate "
        "after a lull (default: 1 s of max_rate, at least 1 KiB). The bucket starts empty on "
        "every connection, so from a connection's start the bytes sent stay within max_rate.",
    )
    ladder: tuple[CodecSpec, ...] = Field(
        (),
        description="Codec ladder, richest first, e.g. [f16, int8, pq.npz]; the controller "
        "steps down it when the backlog grows (default: just `codec`).",
    )
    target_delay_s: float = Field(
        0.3,
        gt=0,
        description="Queue delay (spool backlog / delivered rate) the codec ladder aims at: "
        "longer moves embeddings to cheaper codecs, shorter to richer ones.",
    )
    batch_bytes: int = Field(
        60_000, ge=1024, le=65_000, description="Largest data-channel message (batch of frames)."
    )
    window_bytes: int = Field(
        262_144, ge=4096, description="Unacknowledged bytes allowed in flight."
    )
    bundles: bool = Field(
        True,
        description="Send the spooled messages of one data-channel message as one bundle frame "
        "(protocol 4: one header, varint/delta coded; docs/wire.md) when that is smaller than "
        "a batch of single frames; false: always batches.",
    )
    bundle_linger_ms: float = Field(
        500.0,
        ge=0,
        le=60_000,
        description="Wait up to this long (ms) for more messages before sending a bundle that "
        "is not full: a latency/bytes trade-off. Every message waits up to this much longer for "
        "its ack, and a bundle's header and deltas are shared by more messages (500 ms: a "
        "track's boxes at 2 Hz and its summary share one header; the lean preset waits 5 s). "
        "Never waited on a backlog (a full bundle) or while draining.",
    )
    bundle_box_step: int = Field(
        64,
        ge=1,
        le=65_535,
        description="Grid of the boxes in a bundle, in 1/65,535 of the frame (64: 1/1,024 of "
        "the frame, 0.6 px at 640 px); 1 keeps boxes exact. A coarser grid makes box deltas "
        "smaller.",
    )
    heartbeat_s: float = Field(2.0, gt=0, description="Heartbeat period (s).")
    timeout_s: float = Field(
        10.0, gt=0, description="Reconnect when nothing was heard from the cloud this long (s)."
    )
    connect_timeout_s: float = Field(15.0, gt=0, description="Signaling + ICE + Hello limit.")
    reconnect_initial_s: float = Field(0.5, gt=0, description="First reconnect delay (s).")
    reconnect_max_s: float = Field(30.0, gt=0, description="Largest reconnect delay (s).")
    drain_timeout_s: float = Field(
        30.0,
        ge=0,
        description="When the source ends, keep sending this long for the spool to empty "
        "(what is left stays spooled for the next start).",
    )


class EdgeConfig(_Model):
    edge_id: str = Field(
        "edge-01",
        pattern=f"^{ID_PATTERN}$",
        max_length=64,
        description="This agent's id, unique per deployment.",
    )
    source: SourceConfig
    detector: DetectorConfig = DetectorConfig()
    encoder: EncoderConfig = TimmEncoderConfig()
    crop: CropConfig = CropConfig()
    policy: PolicyConfig = PolicyConfig()
    codec: CodecSpec = Field(
        "f16",
        description="Embedding codec: f32, f16, int8, or a codebook .npz "
        "fitted with `semcom codec fit`.",
    )
    sink: SinkConfig | None = None
    uplink: UplinkConfig | None = None
    health: HealthConfig = HealthConfig()
    status_interval_s: float = Field(1.0, gt=0, description="Live status refresh period (s).")

    @model_validator(mode="after")
    def _policy_outlives_tracker(self) -> EdgeConfig:
        """The policy must hold a track at least as long as the tracker can re-find it."""
        buffer = self.detector.tracking.track_buffer
        if self.policy.lost_frames < buffer:
            raise ValueError(
                f"policy.lost_frames ({self.policy.lost_frames}) is below "
                f"detector.tracking.track_buffer ({buffer}): the policy would end tracks the "
                "tracker still re-finds under the same id"
            )
        return self


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> EdgeConfig:
    """Build the config; ``overrides`` uses dotted keys (``{"detector.imgsz": 320}``)."""
    try:
        data, origins = settings.layered_origins(path, ENV_PREFIX, environ, overrides)
    except settings.SettingsError as exc:
        raise ConfigError(str(exc)) from None
    for section, default_type in (("encoder", "timm"), ("sink", "file")):
        if isinstance(data.get(section), dict):
            data[section] = {"type": default_type, **data[section]}
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    hint = ""
    uplink = data.get("uplink")
    if isinstance(uplink, dict) and uplink.get("cloud") is None:
        if data.get("sink") is not None:
            # A run that records to a file has no uplink: a section that names no cloud only
            # tunes sending (a preset such as deploy/edge.lean.yaml). Checked, then left out.
            errors = [e for e in errors if not _no_link(e)]
            if not errors:
                try:
                    return EdgeConfig.model_validate({**data, "uplink": None})
                except ValidationError as exc:
                    errors = exc.errors()
        elif any(_no_link(e) for e in errors):
            hint = f"; {_NO_CLOUD}"
    raise ConfigError(
        f"invalid edge configuration: {settings.describe_errors(errors, origins)}{hint}"
    ) from None


#: What is said after ``uplink.cloud: Field required`` for a run that would connect.
_NO_CLOUD = (
    "the uplink section names no cloud: to send, give uplink.cloud and uplink.token (edge run: "
    "--cloud URL --token T); to record to a file instead, --out FILE"
)


def _no_link(error: Mapping[str, Any]) -> bool:
    """A validation error that only says the uplink's cloud or token is not given."""
    return error["type"] == "missing" and tuple(error["loc"]) in (
        ("uplink", "cloud"),
        ("uplink", "token"),
    )


def load_uplink_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, UplinkConfig]:
    """Only ``edge_id`` and the ``uplink`` section (for tools that send without a camera)."""
    try:
        data, origins = settings.layered_origins(path, ENV_PREFIX, environ, overrides)
    except settings.SettingsError as exc:
        raise ConfigError(str(exc)) from None
    edge_id = data.get("edge_id", EdgeConfig.model_fields["edge_id"].default)
    if "uplink" not in data:
        raise ConfigError("no uplink configured: give --cloud URL and --token (or a config file)")
    try:
        partial = EdgeConfig.model_validate(
            {"edge_id": edge_id, "source": {"uri": "-"}, "uplink": data["uplink"]}
        )
    except ValidationError as exc:
        raise ConfigError(
            f"invalid uplink configuration: {settings.describe_errors(exc.errors(), origins)}"
        ) from None
    assert partial.uplink is not None
    return partial.edge_id, partial.uplink


def load_health_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> HealthConfig:
    """Only the ``health`` section (for tools that send without a camera)."""
    try:
        data, origins = settings.layered_origins(path, ENV_PREFIX, environ, overrides)
    except settings.SettingsError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return HealthConfig.model_validate(data.get("health") or {})
    except ValidationError as exc:
        errors = [{**e, "loc": ("health", *e["loc"])} for e in exc.errors()]
        raise ConfigError(
            f"invalid health configuration: {settings.describe_errors(errors, origins)}"
        ) from None
