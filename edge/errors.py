"""Errors of the edge agent; each says what failed and what to do about it.

EdgeError
├── ConfigError          an invalid config file, env variable or flag
├── ModelNotFound        a detector or encoder file that is not there (with a fix)
├── ModelRejected        a model that is there but must not be used (hash mismatch, wrong kind)
├── BackendUnavailable   an optional runtime that cannot be used here
├── SourceError          a frame source that cannot be opened
├── UplinkRejected       the cloud refused this edge for good (token, codec, version)
├── HelloRefused         the cloud refused the Hello of an older group of spooled frames
├── ListenFailed         the health listener (/metrics, /healthz) cannot use its address
└── CodebookTransferError  a codebook chunk the edge did not ask for (wrong hash or offset)
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of edge errors."""


class ConfigError(EdgeError):
    """Configuration that does not validate; the message lists every problem."""


class ModelNotFound(EdgeError):
    """A model file is missing; the message says which file and how to provide it."""

    def __init__(self, what: str, path: str, hint: str) -> None:
        self.what = what
        self.path = path
        self.hint = hint
        super().__init__(f"{what} not found: {path}. {hint}")


class ModelRejected(EdgeError):
    """A model file that is there but must not be used: its sha256 is not the recorded one, or
    the name given is a model of another kind; the message says which and what to do."""


class BackendUnavailable(EdgeError):
    """An optional backend (ONNX Runtime, TensorRT, ...) that cannot run on this machine."""


class SourceError(EdgeError):
    """A frame source that cannot be opened or read."""


class UplinkRejected(EdgeError):
    """The cloud refused this edge for good (token, codec, version): fix the configuration."""


class HelloRefused(EdgeError):
    """The cloud refused the Hello of spooled frames of an earlier configuration: those frames
    were quarantined, and the uplink goes on with the others."""


class ListenFailed(EdgeError):
    """The health listener cannot listen on its address (in use, not this machine's)."""


class CodebookTransferError(EdgeError):
    """A codebook chunk from the cloud that was not asked for (another codebook, another
    offset, past the offered size): nothing was written and nothing switched."""
