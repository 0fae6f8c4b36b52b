"""Errors of ``semcom demo``; each says what went wrong and what to do about it.

DemoError
├── DemoSourceError   the source (or the built-in sample) cannot be used
├── DemoModelError    the detector or encoder cannot be loaded (with the flag to pass)
└── DemoCloudError    the demo's cloud did not start or stopped (with its log's tail)
"""

from __future__ import annotations


class DemoError(Exception):
    """Base of the demo's errors: the CLI prints the message, never a traceback."""


class DemoSourceError(DemoError):
    """A missing source file, or no sample image installed."""


class DemoModelError(DemoError):
    """A detector or encoder that cannot be loaded here."""


class DemoCloudError(DemoError):
    """The cloud process failed to start or stopped during the run."""
