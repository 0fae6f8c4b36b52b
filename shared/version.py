"""The installed semcom version, as both ends report it in the session handshake."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def software_version() -> str:
    """The installed distribution's version ("0+unknown" when run from a bare checkout)."""
    try:
        return version("semcom")
    except PackageNotFoundError:
        return "0+unknown"
