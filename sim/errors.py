"""Errors of the simulator; each says what failed and where.

SimError
├── ProfileError     a link profile (preset name, YAML, bandwidth trace) that does not validate
├── ScenarioError    a scenario (name or YAML) that does not validate or cannot be found
└── MeasureError     a source or message file that cannot be measured
"""

from __future__ import annotations


class SimError(Exception):
    """Base of simulator errors."""


class ProfileError(SimError):
    """A link profile or bandwidth trace that does not validate; the message lists every problem."""


class ScenarioError(SimError):
    """A scenario that is unknown or does not validate; the message lists every problem."""


class MeasureError(SimError):
    """A video or message file from which payload sizes cannot be measured."""
