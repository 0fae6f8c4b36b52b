"""Cloud configuration: one validated object from a YAML file, environment and flags.

Precedence (last wins): defaults < YAML file < ``SEMCOM_CLOUD__SECTION__FIELD`` environment
variables < command-line flags. Unknown keys are errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    model_validator,
)

from cloud.alerts.config import AlertsConfig
from cloud.analytics.config import AnalyticsConfig
from cloud.codebooks_config import CodebooksConfig
from cloud.decoder.config import DecoderConfig
from cloud.describe.config import DescriberConfig
from shared import limits, settings
from shared.framing import BATCH_MAGIC
from shared.messages import ID_PATTERN
from shared.timm_encoder import check_model_kwargs

ENV_PREFIX = "SEMCOM_CLOUD__"
#: One frame of the largest size in a batch (magic and a 3-byte length), in bytes.
WS_MAX_MESSAGE_BYTES = limits.MAX_FRAME_BYTES + len(BATCH_MAGIC) + 3


class ConfigError(Exception):
    """Configuration that does not validate; the message lists every problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EdgeCredential(_Model):
    token: SecretStr | None = Field(None, description="The edge's token, in clear.")
    token_sha256: str | None = Field(
        None,
        pattern="^[0-9a-f]{64}$",
        description="SHA-256 (hex) of the token, so the file need not hold the token itself.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> EdgeCredential:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of token and token_sha256")
        return self

    def digest(self) -> bytes:
        if self.token is not None:
            return hashlib.sha256(self.token.get_secret_value().encode()).digest()
        assert self.token_sha256 is not None
        return bytes.fromhex(self.token_sha256)


class TlsConfig(_Model):
    certfile: Path = Field(description="PEM certificate (chain) of the signaling endpoint.")
    keyfile: Path = Field(description="PEM private key of that certificate.")


class IceServerConfig(_Model):
    urls: tuple[str, ...] = Field(description="stun:/turn: URLs of one ICE server.")
    username: str | None = None
    credential: str | None = None


class ApiToken(EdgeCredential):
    """A bearer token for the query API (dashboards, scripts): same forms as an edge's."""


class IndexConfig(_Model):
    backend: Literal["faiss", "qdrant"] = Field(
        "faiss",
        description="faiss: embedded, files under the data directory (default). qdrant: a "
        "Qdrant server (qdrant_url) or, without a URL, Qdrant's local mode on disk.",
    )
    kind: Literal["auto", "flat", "ivf", "hnsw"] = Field(
        "auto",
        description="faiss index type; auto: exact below flat_max vectors, IVF above.",
    )
    flat_max: int = Field(20_000, ge=1, description="auto: largest exact (Flat) index.")
    qdrant_url: str | None = Field(
        None,
        description="A Qdrant server or cluster, e.g. http://qdrant:6333 (https with an API "
        "key); none: Qdrant's local mode under the data directory (tests, small sites).",
    )
    qdrant_api_key: SecretStr | None = Field(
        None, description="The server's service.api_key (sent on every request); none: no key."
    )
    qdrant_timeout_s: int = Field(
        10, ge=1, description="Seconds a request to the Qdrant server may take (whole seconds)."
    )
    qdrant_prefer_grpc: bool = Field(
        False, description="Talk gRPC (qdrant_grpc_port) to the server instead of REST."
    )
    qdrant_grpc_port: int = Field(6334, ge=1, le=65535, description="The server's gRPC port.")
    qdrant_shards: int = Field(
        1,
        ge=1,
        description="shard_number of collections created (fixed at creation): on a cluster of "
        "N nodes about 2 x N.",
    )
    qdrant_replicas: int = Field(
        1,
        ge=1,
        description="replication_factor of collections created (2 survives losing a node).",
    )
    qdrant_write_consistency: int = Field(
        1,
        ge=1,
        description="write_consistency_factor of collections created: replicas that must "
        "acknowledge a write (at most qdrant_replicas).",
    )
    save_every_s: float = Field(
        30.0,
        gt=0,
        description="Save the index at most this often and at shutdown (faiss: its files; "
        "Qdrant, which persists every write: the highest id added).",
    )
    follow_s: float | None = Field(
        None,
        ge=0,
        description="Read the vectors other replicas stored into this replica's index this "
        "often (s); 0: never. Default: 1 s on PostgreSQL with a per-replica index (faiss, "
        "or Qdrant's local mode); never on SQLite or with a Qdrant server (one for all).",
    )
    follow_grace_s: float = Field(
        30.0,
        gt=0,
        description="Following: how long a lower id may still commit after a higher one was "
        "seen (s); a transaction slower than this is indexed by the hourly reconcile.",
    )

    def follow_period_s(self, database: str) -> float:
        """``follow_s``, or its default for this database and index backend."""
        if self.follow_s is not None:
            return self.follow_s
        one_for_all = self.backend == "qdrant" and self.qdrant_url is not None
        return 0.0 if database.startswith("sqlite") or one_for_all else 1.0

    @model_validator(mode="after")
    def _consistency_within_replicas(self) -> IndexConfig:
        if self.qdrant_write_consistency > self.qdrant_replicas:
            raise ValueError(
                f"qdrant_write_consistency ({self.qdrant_write_consistency}) exceeds "
                f"qdrant_replicas ({self.qdrant_replicas}): no write could be acknowledged"
            )
        return self


def _split_commas(value: Any) -> Any:
    """``"0.5,0.5,0.5"`` (a flag or an environment variable) -> a list of three strings."""
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else value


def _positive(values: tuple[float, float, float]) -> tuple[float, float, float]:
    if min(values) <= 0:
        raise ValueError("every std value must be > 0")
    return values


_Triple = Annotated[tuple[float, float, float], BeforeValidator(_split_commas)]


class PreprocessConfig(_Model):
    """Overrides of the model's timm data config, as the edges set them (``encoder.preprocess``
    of the edge config); unset values come from the model's timm data config."""

    size: int | None = Field(None, ge=16, le=4096, description="Square input side (px).")
    mean: _Triple | None = Field(None, description="Per-channel mean, 0-1 scale (R, G, B).")
    std: Annotated[_Triple, AfterValidator(_positive)] | None = Field(
        None, description="Per-channel std, 0-1 scale (R, G, B)."
    )
    interpolation: Literal["nearest", "bilinear", "bicubic"] | None = Field(
        None, description="How an image is resized to the input side."
    )


class EncoderConfig(_Model):
    """The query encoder: embeds uploaded images for search (the edges' model, built as they
    build it: the same name, model_kwargs, weights and preprocessing)."""

    type: Literal["timm"] = Field("timm", description="timm (the default) or open_clip.")
    name: str = Field(description="timm model name, the same as the edges' encoder.")
    model_kwargs: Annotated[
        dict[str, StrictBool | StrictInt | StrictFloat | str], AfterValidator(check_model_kwargs)
    ] = Field(
        default_factory=dict,
        description="Keyword arguments of timm.create_model, as the edges give them "
        "(e.g. {pad_type: same}).",
    )
    weights: Path | None = Field(
        None,
        description="Local weights file (a state dict; classifier keys are dropped); default: "
        "the Hugging Face cache, offline.",
    )
    random_init: bool = Field(
        False, description="Untrained (seeded) weights: tests and development only."
    )
    preprocess: PreprocessConfig = Field(
        default_factory=PreprocessConfig,
        description="Input size, mean, std, interpolation, as the edges set them.",
    )


class OpenClipEncoderConfig(_Model):
    """The query encoders of a CLIP space: the edges' open_clip model with both towers, so
    uploaded images (image tower) and search text (text tower) land where the crops are."""

    type: Literal["open_clip"]
    model: str = Field(
        description="open_clip architecture, the same as the edges' `encoder.model` "
        "(e.g. ViT-B-32)."
    )
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag, the same as the edges' (e.g. laion2b_s34b_b79k); "
        "read from the local Hugging Face cache only.",
    )
    weights: Path | None = Field(
        None,
        description="Local checkpoint file of those weights (without a tag: weights named by "
        "the file's SHA-256, as the edges name them).",
    )
    random_init: bool = Field(
        False, description="Untrained (seeded) weights: tests and development only."
    )

    @model_validator(mode="after")
    def _weights_named(self) -> OpenClipEncoderConfig:
        if not self.random_init and self.pretrained is None and self.weights is None:
            raise ValueError(
                f"open_clip model {self.model} needs weights: `pretrained` (a tag), `weights` "
                "(a checkpoint file), or `random_init` for development"
            )
        return self


def _encoder_type(value: Any) -> str:
    """The query encoder's ``type``; a config written before open_clip has none: timm."""
    if isinstance(value, Mapping):
        return str(value.get("type", "timm"))
    return str(getattr(value, "type", "timm"))


#: ``encoder:`` of the cloud config: a timm model (the default) or an open_clip model
QueryEncoderConfig = Annotated[
    Annotated[EncoderConfig, Tag("timm")] | Annotated[OpenClipEncoderConfig, Tag("open_clip")],
    Discriminator(_encoder_type),
]


class DashboardConfig(_Model):
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="A dashboard sign-in lasts this long (hours)."
    )
    secure_cookies: bool = Field(
        False,
        description="Mark the dashboard's cookies Secure (sent over HTTPS only): set it when "
        "the cloud is served over TLS, directly or behind a proxy.",
    )


class CloudConfig(_Model):
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0: every interface).")
    port: int = Field(8443, ge=0, le=65535, description="TCP port (0: any free port).")
    database: str | None = Field(
        None,
        description="SQLAlchemy URL of the journal and catalog: sqlite:///path or "
        "postgresql+psycopg://user@host/db; default: SQLite in the data directory.",
    )
    edges: dict[str, EdgeCredential] = Field(
        default_factory=dict,
        description="Edges allowed to connect: {edge_id: {token: ...} or {token_sha256: ...}}.",
    )
    codebooks: CodebooksConfig = Field(
        default_factory=CodebooksConfig,
        description="Codebook files edges may use, and the codebooks the cloud fits and "
        "pushes (a plain list of files is read as `files`).",
    )
    tls: TlsConfig | None = Field(None, description="Serve signaling over HTTPS.")
    ice_servers: tuple[IceServerConfig, ...] = Field((), description="STUN/TURN servers.")
    ice_host_addresses: tuple[str, ...] | None = Field(
        None,
        description="Offer ICE host candidates only on these local addresses (e.g. "
        "[127.0.0.1]); default: every interface but loopback.",
    )
    max_sessions: int = Field(1000, ge=1, description="Concurrent edge connections.")
    ws_max_message_bytes: int = Field(
        WS_MAX_MESSAGE_BYTES,
        ge=limits.MAX_FRAME_BYTES,
        le=1 << 20,
        description="Largest WebSocket message the server reads, in bytes: a larger one closes "
        "the connection (code 1009) before it is read whole. A frame or batch is at most "
        "65,536 bytes; the default adds a batch's header.",
    )
    data_dir: Path = Field(
        Path("semcom-data"),
        description="Folder for the index files (and the default SQLite catalog).",
    )
    api_tokens: dict[str, ApiToken] = Field(
        default_factory=dict,
        description="Query API clients: {name: {token: ...} or {token_sha256: ...}}. Every "
        "endpoint but the health checks needs one (Authorization: Bearer).",
    )
    metrics_public: bool = Field(
        False, description="Serve /metrics without a token (for a scraper on a private net)."
    )
    docs_public: bool = Field(
        False,
        description="Serve /openapi.json and the Swagger page /docs without a token; otherwise "
        "the schema needs the token like every route, and there is no /docs.",
    )
    index: IndexConfig = Field(default_factory=IndexConfig)
    dashboard: DashboardConfig = Field(
        default_factory=DashboardConfig,
        description="The dashboard at / (sign in with an API token).",
    )
    encoder: QueryEncoderConfig | None = Field(
        None,
        description="Enables search by uploaded image; an open_clip model also enables search "
        "of crops by text.",
    )
    decoder: DecoderConfig | None = Field(
        None, description="Rebuilds crops from embeddings (GET /v1/detections/{id}/image)."
    )
    describer: DescriberConfig = Field(
        default_factory=DescriberConfig,
        description="Traffic descriptions per camera and window: an LLM endpoint, or rules.",
    )
    analytics: AnalyticsConfig = Field(
        default_factory=AnalyticsConfig,
        description="Traffic analytics (counting lines, zones, speeds) of cameras with a scene.",
    )
    alerts: AlertsConfig | None = Field(
        None,
        description="Alert rules over analytics events, delivered to signed webhooks and an "
        "MQTT broker (docs/alerts.md); none: no alerts.",
    )
    retention: str | None = Field(
        None,
        pattern=r"^\d+(\.\d+)?\s*(s|m|h|d)$",
        description="Delete detections, embeddings, tracks, counts, analytics events and "
        "congestion windows older than this (e.g. 30d, 12h); none: keep everything.",
    )
    writer_max_pending: int = Field(
        20_000,
        ge=100,
        description="Frames waiting for the ingest writer before sessions wait (backpressure).",
    )

    @model_validator(mode="after")
    def _edge_ids(self) -> CloudConfig:
        if self.database is None:
            object.__setattr__(self, "database", f"sqlite:///{self.data_dir / 'catalog.db'}")
        import re

        bad = [e for e in self.edges if not re.fullmatch(ID_PATTERN, e) or len(e) > 64]
        if bad:
            raise ValueError(f"invalid edge ids: {', '.join(bad)}")
        return self


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> CloudConfig:
    """Build the config; ``overrides`` uses dotted keys (``{"port": 0}``)."""
    try:
        data, origins = settings.layered_origins(path, ENV_PREFIX, environ, overrides)
    except settings.SettingsError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return CloudConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid cloud configuration: {settings.describe_errors(exc.errors(), origins)}"
        ) from None


def with_tokens(
    config: CloudConfig, edges: Mapping[str, str], api: Mapping[str, str] | None = None
) -> CloudConfig:
    """``config`` plus edges and API clients given as {name: token} (command-line flags)."""
    if not edges and not api:
        return config
    data = config.model_dump()
    data["edges"] = {
        **config.edges,
        **{e: EdgeCredential(token=SecretStr(t)) for e, t in edges.items()},
    }
    data["api_tokens"] = {
        **config.api_tokens,
        **{n: ApiToken(token=SecretStr(t)) for n, t in (api or {}).items()},
    }
    try:
        return CloudConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid cloud configuration: {settings.describe_errors(exc.errors())}"
        ) from None


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` -> seconds."""
    value, unit = float(text[:-1].strip()), text[-1]
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
