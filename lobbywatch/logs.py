"""The processes' log lines: text for a person at a terminal, or one JSON object per line for a log collector
(`LOBBYWATCH_LOG_FORMAT=json`: Loki, Elasticsearch, journald's JSON export)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def log_format() -> str:
    """LOBBYWATCH_LOG_FORMAT, checked: raises ValueError naming the allowed values."""
    chosen = os.environ.get("LOBBYWATCH_LOG_FORMAT", "text").strip().lower() or "text"
    if chosen not in FORMATS:
        raise ValueError(f"LOBBYWATCH_LOG_FORMAT must be {' or '.join(FORMATS)}, not {chosen!r}")
    return chosen


def setup_logging(level: str, chosen: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
