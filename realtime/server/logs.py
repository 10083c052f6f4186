"""Logging for `realtime serve`: human-readable text, or JSON lines for log collectors.

JSON: one object per line with `time` (ISO 8601, UTC), `level`, `logger` and
`message`; `session_id` when the record carries one (session.logs.SessionLog puts
it there); `exception` with the traceback when there is one.

Either way no credential is logged: URLs are (uvicorn's access log, WebSocket
handshakes), so a `token=` in one is written as `token=[redacted]`.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal

import orjson

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


URL_TOKEN = re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE)


class RedactUrlTokens(logging.Filter):
    """Writes `?token=...` in a record's message as `?token=[redacted]`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let the handler report it as usual
            return True
        if "token=" in message.lower():
            record.msg = URL_TOKEN.sub(r"\1[redacted]", message)
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        session_id = getattr(record, "session_id", None)
        if session_id is not None:
            entry["session_id"] = str(session_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Log to stderr at `level` (e.g. "info") in `log_format`; replaces any earlier set-up."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    handler.addFilter(RedactUrlTokens())  # on the handler: it sees every logger's records
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aioice").setLevel(logging.WARNING)  # a line per ICE candidate pair
    if log_format == "json":
        # What Python would print to stderr by itself goes through logging, so that
        # every line of a JSON log is JSON: warnings and uncaught exceptions.
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    logging.getLogger("realtime").critical("uncaught exception", exc_info=(kind, error, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("realtime").error(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
