"""Log lines as text or as JSON objects, one a line (``--log-format``), with the stdlib only.

A JSON line holds ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``logger`` and ``message``;
``exc`` (the traceback) when the record carries an exception; and every ``extra`` field the
call passed (``logger.info("done", extra={"frames": 50})``), as JSON or, when it is not JSON,
as its ``str``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Final, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Attributes every LogRecord has: not ``extra`` fields.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, timezone.utc)
        out: dict[str, object] = {
            "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        return json.dumps(out, default=str, ensure_ascii=False)


def use_log_format(fmt: LogFormat) -> None:
    """Format every handler of the root logger as ``fmt`` (a stderr handler is added first
    when there is none)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(formatter)


def console_line(message: str, fmt: LogFormat, source: str, **fields: object) -> str:
    """A line for stderr that is not a log record (a start banner, a run's summary, printed
    whatever the log level): ``message`` as is, or one JSON object shaped like the log lines
    (level ``INFO``, logger ``source``) with ``fields`` beside the message."""
    if fmt != "json":
        return message
    record = logging.LogRecord(source, logging.INFO, "", 0, message, (), None)
    record.__dict__.update(fields)
    return JsonFormatter().format(record)
