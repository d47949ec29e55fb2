"""structlog configured once for every process: pretty on a TTY, JSON lines otherwise.

Lives in `bus` because it is the bottom of the dependency graph; `perception` and `skills` use it too.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_configured = False


def configure_logging(level: str | None = None, json: bool | None = None) -> None:
    """Idempotent. Logs go to stderr so that CLI output on stdout stays machine-readable."""
    global _configured
    if _configured:
        return
    level_name = (level or os.environ.get("PERCEPTION_LOG_LEVEL", "INFO")).upper()
    if json is None:
        json = not sys.stderr.isatty()
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(name: str, **bound: object) -> structlog.stdlib.BoundLogger:
    """A logger bound with the component name (and e.g. node, camera)."""
    configure_logging()
    return structlog.get_logger().bind(component=name, **bound)
