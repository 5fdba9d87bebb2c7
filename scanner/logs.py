"""Log lines for the daemon: plain text for people, JSON lines for log collectors."""

from __future__ import annotations

import enum
import json
import logging
import sys
from datetime import datetime, timezone

from scanner.outcomes import FileOutcome
from scanner.output import printable
from scanner.paths import to_text

# ScanStats counter names as the words a log line uses.
WORDS = {
    "scanned": "scanned",
    "unchanged": "unchanged",
    "duplicates": "duplicate",
    "not_images": "not-image",
    "errors": "error",
}


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"


def _utc(record: logging.LogRecord) -> str:
    """The record's time as every scanner time is printed: ISO 8601, UTC, `Z` (milliseconds)."""
    moment = datetime.fromtimestamp(record.created, timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # A file name with a newline or an escape sequence must not forge lines or retitle
        # the terminal: one record is one line.
        return f"{_utc(record)} {record.levelname} {printable(record.getMessage())}"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": _utc(record),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        return json.dumps(line, default=str)


def setup_logging(fmt: LogFormat) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt is LogFormat.json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter())
    root = logging.getLogger("scanner")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def log_outcome(item: FileOutcome) -> None:
    """One line per file the pipeline finished with."""
    if item.outcome == "unchanged":
        return  # a re-queued path that needed nothing: not news
    word = WORDS.get(item.outcome, item.outcome)
    fields = {
        "event": word,
        "path": to_text(item.path),
        "detail": item.detail,
        "sha256": item.sha256,
    }
    level = logging.WARNING if word == "error" else logging.INFO
    logging.getLogger("scanner.files").log(
        level,
        "%s %s%s",
        word,
        printable(item.path),
        f" ({item.detail})" if item.detail else "",
        extra={"fields": fields},
    )
