"""structlog configured once for every process: pretty on a TTY, JSON lines otherwise.

Lives in `bus` because it is the bottom of the dependency graph; `perception` and `skills` use it too.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import structlog

_configured = False
_min_level = logging.INFO  # read by `_drop_below_level` at each call, so a later level reaches every logger
_METHOD_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "msg": logging.INFO, "warning": logging.WARNING}
_METHOD_LEVELS |= {"warn": logging.WARNING, "error": logging.ERROR, "exception": logging.ERROR}
_METHOD_LEVELS |= {"critical": logging.CRITICAL, "fatal": logging.CRITICAL}


def _drop_below_level(_logger: object, method: str, event: dict) -> dict:
    if _METHOD_LEVELS.get(method, logging.INFO) < _min_level:
        raise structlog.DropEvent
    return event


def configure_logging(level: str | None = None, json: bool | None = None) -> None:
    """Logs go to stderr so that CLI output on stdout stays machine-readable. Configured once; a later
    call with an explicit `level` (the CLI's --log-level, after module-level loggers were made at import)
    still sets the level for every logger, those already made included."""
    global _configured, _min_level
    if level is not None:
        _min_level = getattr(logging, level.upper(), logging.INFO)
    if _configured:
        return
    level_name = (level or os.environ.get("PERCEPTION_LOG_LEVEL", "INFO")).upper()
    _min_level = getattr(logging, level_name, logging.INFO)
    if json is None:
        json = not sys.stderr.isatty()
    renderer = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            _drop_below_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        # DEBUG here: the level is `_drop_below_level`'s, which a later --log-level can still change
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(name: str, **bound: object) -> structlog.stdlib.BoundLogger:
    """A logger bound with the component name (and e.g. node, camera)."""
    configure_logging()
    return structlog.get_logger().bind(component=name, **bound)


OVERFLOW_KEY = ("rate-limited", "other keys")


class RateLimited:
    """At most one log line per key per `interval_s`; the lines in between are counted, not lost.

    Used for per-source warnings (bad messages, gaps) so a flood of garbage cannot flood the logs.
    """

    def __init__(self, interval_s: float = 1.0, max_keys: int = 1024) -> None:
        self.interval_ns = int(interval_s * 1e9)
        self.max_keys = max_keys
        self._swept = 0
        self._last: dict[object, int] = {}
        self._suppressed: dict[object, int] = {}

    def should_log(self, key: object) -> int | None:
        """None to stay quiet; otherwise how many lines were suppressed since the last one."""
        now = time.monotonic_ns()
        if key not in self._last and len(self._last) >= self.max_keys:
            key = OVERFLOW_KEY  # a flood of distinct keys shares one budget instead of resetting the others
        last = self._last.get(key)
        if last is not None and now - last < self.interval_ns:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        if len(self._last) >= self.max_keys and now - self._swept >= self.interval_ns:
            self._swept = now  # forget keys quiet for a whole interval (never the recent ones), once per interval
            stale = [k for k, t in self._last.items() if now - t >= self.interval_ns and k is not OVERFLOW_KEY]
            for k in stale:
                del self._last[k]
                self._suppressed.pop(k, None)
        return self._suppressed.pop(key, 0)
