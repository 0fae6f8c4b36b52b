"""The edge's health endpoint settings (``health:``): where /metrics and /healthz are served
(:mod:`edge.health_server`). Part of :class:`edge.config.EdgeConfig`."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthConfig(_Model):
    allow_remote: bool = Field(
        False,
        description="Allow a `listen` address that is not loopback. /metrics and /healthz have "
        "no authentication: only behind a firewall or a scraper's private network.",
    )
    listen: str | None = Field(
        None,
        description="Serve Prometheus /metrics and /healthz on HOST:PORT, e.g. 127.0.0.1:9108 "
        "([::1]:9108 for IPv6; port 0: any free port, logged). Default: off.",
    )
    stale_after_s: float = Field(
        10.0,
        gt=0,
        description="/healthz answers 503 when the last frame (replay: message) is older.",
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _check_listen(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"127.0.0.1:{value}"  # a bare port (YAML reads 9108 as a number)
        if not isinstance(value, str):
            raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9108, got {value!r}")
        host, _port = split_listen(value)
        if not info.data.get("allow_remote", False) and not is_loopback(host):
            raise ValueError(
                f"{host} is not a loopback address (127.0.0.0/8, ::1 or localhost; names are "
                "not resolved): /metrics and /healthz have no authentication; set "
                "health.allow_remote: true to serve them on another address"
            )
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on; None: off."""
        return split_listen(self.listen) if self.listen is not None else None


def split_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:9108`` or ``[::1]:9108`` -> (host, port); ValueError naming what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT such as 127.0.0.1:9108")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, e.g. [::1]:9108")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address (names are not resolved)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
