"""Logging for every latlab process: text for a terminal, or one JSON object per line for a
log collector (``latlab --log-json ...``). The context a call passes as ``extra=`` (job_id,
device_id, dataset_id, ...) is rendered in both, and bearer tokens never reach the output:
anything shaped like ``Bearer <secret>`` or a device token is masked, and no terminal escape
(a colour code, a cursor move) is printed: uvicorn's ``color_message`` copy of each line is
dropped, and escapes in any other message or field are removed.

The level comes from ``-v``: WARNING, ``-v`` INFO, ``-vv`` DEBUG. The HTTP client's libraries
(httpx, httpcore) log every request, so they stay at WARNING below DEBUG.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "redact"]

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
#: Extras that are never printed: uvicorn's copy of its message with colour codes in it.
_DROPPED = {"color_message"}
#: Libraries that log every HTTP request at INFO: shown only at DEBUG (``-vv``).
_CHATTY = ("httpx", "httpcore")
_SECRETS = re.compile(r"(Bearer\s+)[^\s\"',]+|ldt_[A-Za-z0-9_\-]+", re.IGNORECASE)
#: Terminal escapes: CSI (colours, cursor moves), OSC (titles, links), two-byte ones, a lone ESC.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])?")
MASK = "***"


def redact(text: str) -> str:
    """``text`` with bearer tokens and device tokens masked, and terminal escapes removed."""
    return _SECRETS.sub(lambda m: (m.group(1) or "") + MASK, _ESCAPES.sub("", text))


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k not in _DROPPED}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in _context(record).items():
            entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=lambda value: redact(str(value)))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        return redact(f"{text} [{context}]" if context else text)


def configure_logging(level: int, *, json_lines: bool = False) -> None:
    """One handler on the root logger, at ``level``; the ``_CHATTY`` libraries at WARNING
    unless ``level`` is DEBUG."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(
            logging.NOTSET if level <= logging.DEBUG else logging.WARNING
        )
