"""Cloud configuration: one validated object from a YAML file, environment and flags.

Precedence (last wins): defaults < YAML file < ``SEMCOM_CLOUD__SECTION__FIELD`` environment
variables < command-line flags. Unknown keys are errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from shared import settings
from shared.messages import ID_PATTERN

ENV_PREFIX = "SEMCOM_CLOUD__"


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


class CloudConfig(_Model):
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0: every interface).")
    port: int = Field(8443, ge=0, le=65535, description="TCP port (0: any free port).")
    database: str = Field(
        "sqlite:///semcom-cloud.db",
        description="SQLAlchemy URL of the journal/catalog: sqlite:///path or "
        "postgresql+psycopg://user@host/db.",
    )
    edges: dict[str, EdgeCredential] = Field(
        default_factory=dict,
        description="Edges allowed to connect: {edge_id: {token: ...} or {token_sha256: ...}}.",
    )
    codebooks: tuple[Path, ...] = Field(
        (),
        description="Codebook files (.npz, `semcom codec fit`) edges may use; the built-in "
        "f32/f16/int8 codecs are always accepted.",
    )
    tls: TlsConfig | None = Field(None, description="Serve signaling over HTTPS.")
    ice_servers: tuple[IceServerConfig, ...] = Field((), description="STUN/TURN servers.")
    ice_host_addresses: tuple[str, ...] | None = Field(
        None,
        description="Offer ICE host candidates only on these local addresses (e.g. "
        "[127.0.0.1]); default: every interface but loopback.",
    )
    max_sessions: int = Field(1000, ge=1, description="Concurrent edge connections.")

    @model_validator(mode="after")
    def _edge_ids(self) -> CloudConfig:
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
        data = settings.layered(path, ENV_PREFIX, environ, overrides)
    except settings.SettingsError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return CloudConfig.model_validate(data)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        raise ConfigError(
            f"invalid cloud configuration{where}: {settings.describe_errors(exc.errors())}"
        ) from None


def with_edges(config: CloudConfig, tokens: Mapping[str, str]) -> CloudConfig:
    """``config`` plus edges given as {edge_id: token} (command-line flags)."""
    edges = {**config.edges, **{e: EdgeCredential(token=SecretStr(t)) for e, t in tokens.items()}}
    try:
        return CloudConfig.model_validate({**config.model_dump(), "edges": edges})
    except ValidationError as exc:
        raise ConfigError(
            f"invalid cloud configuration: {settings.describe_errors(exc.errors())}"
        ) from None
