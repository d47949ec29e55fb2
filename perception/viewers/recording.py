"""A recording (`perception record`, docs/recording.md) as the viewers read it: decoded messages in log-time
order with their log times, and the config of the pipeline that was recorded.

Messages of a type this process does not know (a skill's, a benchmark's) are skipped and counted, as the
bus counts them; a message that does not decode for any other reason is skipped, counted and logged once
a second, so one damaged record never stops an export or a view.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bus.codec import DecodeError, decode
from bus.logs import RateLimited, get_logger
from bus.mcapfile import RecordingError, iter_messages
from bus.message import Message

log = get_logger("viewers.recording")


@dataclass(frozen=True, slots=True)
class Recorded:
    topic: str
    msg: Message
    log_time_ns: int  # the recorder's receive time


def recorded_messages(path: str | Path, counters: Counter | None = None) -> Iterator[Recorded]:
    """Every decodable message of the complete recording `path`, in log-time order."""
    from perception.plugins import load_message_types

    load_message_types()
    counters = counters if counters is not None else Counter()
    limited = RateLimited(1.0)
    for stored in iter_messages(path):
        try:
            env = decode(stored.parts())
        except DecodeError as exc:
            counters[f"skipped.{exc.reason}"] += 1
            if exc.reason != "unknown_type" and (n := limited.should_log(exc.reason)) is not None:
                log.warning("skipped an undecodable message", topic=stored.topic[:80], reason=exc.reason, suppressed=n)
            continue
        counters["decoded"] += 1
        yield Recorded(env.topic, env.msg, stored.log_time)


def session_config(path: str | Path):
    """The AppConfig stored in the recording's `session` metadata, or None (no such record, or a config
    this version does not validate: the caller falls back to its own)."""
    from bus.mcapfile import metadata_records
    from perception.config import stored_config

    if not Path(path).exists():
        raise RecordingError(f"recording not found: {path}")
    try:
        for record in metadata_records(path):
            if record.name == "session" and "config" in record.metadata:
                return stored_config(record.metadata["config"], str(path))  # data: no package imports
    except Exception as exc:  # an old or foreign config: not fatal for a viewer
        log.warning("the recording's session config is not usable here", error=f"{type(exc).__name__}: {exc}"[:300])
    return None
