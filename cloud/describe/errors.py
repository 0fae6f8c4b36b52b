"""The describer's errors.

- :class:`DescribeError`: base
    - :class:`ReplyError`: one LLM reply that cannot be used (malformed JSON, a schema
      violation, truncated, refused); retried
    - :class:`DescribeFailed`: a description could not be made (attempts exhausted, or an
      error that retrying does not fix); the job fails with its message
    - :class:`ContextError`: the window cannot be read (its camera is not in the catalog)
"""

from __future__ import annotations


class DescribeError(Exception):
    """Base of the describer's errors."""


class ReplyError(DescribeError):
    """An LLM reply that is not a valid structured description."""


class DescribeFailed(DescribeError):
    """No description was made; the message says why (and after how many attempts)."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class ContextError(DescribeError):
    """The window cannot be described (e.g. its camera is not in the catalog)."""
