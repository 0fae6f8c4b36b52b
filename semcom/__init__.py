"""semcom: edge-to-cloud semantic communication for traffic cameras.

This package is the command-line composition root only (``semcom ...``): it wires commands to
the ``shared``, ``edge``, ``cloud`` and ``sim`` packages and configures logging. It holds no
domain logic of its own.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def software_version() -> str:
    """The installed distribution's version ("0+unknown" when run from a bare checkout)."""
    try:
        return version("semcom")
    except PackageNotFoundError:
        return "0+unknown"
