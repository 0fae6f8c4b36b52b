"""semcom: edge-to-cloud semantic communication for traffic cameras.

This package is the command-line composition root only (``semcom ...``): it wires commands to
the ``shared``, ``edge``, ``cloud`` and ``sim`` packages and configures logging. It holds no
domain logic of its own.
"""

from __future__ import annotations

from shared.version import software_version

__all__ = ["software_version"]
