"""`perception info IN.mcap --export foxglove OUT.mcap`: a recording as Foxglove's well-known schemas.

The recording keeps the bus's own layout (msgpack, bytes as they travelled: docs/recording.md); this writes
a second file the Foxglove app opens with no user layout or schema: frames as `foxglove.CompressedImage`
(PNG or JPEG), captions, events and ground truth as `foxglove.Log`, segments and per-node stats as JSON with a
JSON schema (the table in perception/viewers/foxglove_sink.py; the same channels as the live bridge). It
is written by the foxglove-sdk's own MCAP writer (zstd chunks), each message at the recorder's log time.

Every frame is kept by default (`max_fps` 0): a recording is for looking at closely. Watch-phrase scores
are not in the export: they need the text encoder, and the export runs without a model (the watch
crossings are, as events; `perception view` draws the scores).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bus.logs import get_logger
from bus.mcapfile import RecordingError, check_complete
from perception.viewers.feed import Feed
from perception.viewers.foxglove_sink import FoxgloveSink
from perception.viewers.recording import recorded_messages

log = get_logger("viewers.foxglove_export")


def export_foxglove(src: str | Path, dst: str | Path, *, max_fps: float = 0.0, overwrite: bool = True) -> Counter:
    """Write `dst` from the complete recording `src`; returns the counts (messages, frames_sent, ...).
    The channels written: `counts["topics"]` is their number, `FoxgloveSink.topics` their names."""
    import foxglove

    if Path(src).resolve() == Path(dst).resolve():
        raise RecordingError("export writes a new file: OUT must differ from IN")
    check_complete(src)
    context = foxglove.Context()
    counters: Counter = Counter()
    writer = foxglove.open_mcap(str(dst), allow_overwrite=overwrite, context=context)
    sink = FoxgloveSink(context)
    try:
        feed = Feed(sink, max_fps=max_fps, counters=counters)
        for item in recorded_messages(src, counters):
            feed.push(item.topic, item.msg, item.log_time_ns)
    finally:
        counters["topics"] = len(sink.topics)
        topics = sink.topics
        sink.close()
        writer.close()
    log.info("exported for foxglove", src=str(src), dst=str(dst), topics=topics, frames=counters["frames_sent"])
    return counters
