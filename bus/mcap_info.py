"""`perception info`: what is in a recording (topics, counts, duration, rates, seq gaps), from one scan.

Works on damaged files too (it reads sequentially up to the first unreadable record and says so), so it
is also the quick check before `perception record --recover`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from bus.mcapfile import (
    RecordingError,
    ScanResult,
    SeqTracker,
    channel_version,
    header_src,
    is_ours,
    scan,
    unpack_message,
)


@dataclass
class TopicInfo:
    topic: str
    type: str
    v: int
    count: int = 0
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    gaps: int = 0
    resets: int = 0

    @property
    def rate_hz(self) -> float:
        span = (self.last_ns - self.first_ns) / 1e9
        return (self.count - 1) / span if self.count > 1 and span > 0 else 0.0


@dataclass
class RecordingInfo:
    path: str
    complete: bool
    damage: str | None
    messages: int
    start_ns: int
    end_ns: int
    topics: list[TopicInfo] = field(default_factory=list)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    foreign_messages: int = 0  # messages on channels not in our layout (counted, not decoded)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9 if self.messages else 0.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["duration_s"] = self.duration_s
        for t, src in zip(out["topics"], self.topics):
            t["rate_hz"] = src.rate_hz
        return out

    def render(self) -> str:
        state = (
            "complete" if self.complete else f"INCOMPLETE ({self.damage}); recover with `perception record --recover`"
        )
        lines = [
            f"file:      {self.path}",
            f"state:     {state}",
            f"messages:  {self.messages}",
            f"duration:  {self.duration_s:.3f} s",
            f"gaps:      {sum(t.gaps for t in self.topics)} missing seq(s)",
            "",
            f"{'topic':<32} {'type':<14} {'count':>8} {'rate Hz':>9} {'MB':>9} {'gaps':>6}",
        ]
        for t in self.topics:
            lines.append(
                f"{t.topic:<32} {t.type + ' v' + str(t.v):<14} {t.count:>8} {t.rate_hz:>9.2f} "
                f"{t.bytes / 1e6:>9.3f} {t.gaps:>6}"
            )
        if self.foreign_messages:
            lines.append(f"({self.foreign_messages} message(s) on channels not written by perception record)")
        for name, values in self.metadata.items():
            lines.append("")
            lines.append(f"metadata {name}:")
            lines.extend(f"  {k}: {v if len(v) <= 120 else v[:117] + '...'}" for k, v in sorted(values.items()))
        return "\n".join(lines)


def describe(path: str | Path) -> RecordingInfo:
    if not Path(path).exists():
        raise RecordingError(f"recording not found: {path}")
    result = ScanResult()
    topics: dict[tuple[str, str, int], TopicInfo] = {}
    seqs = SeqTracker()
    messages = foreign = 0
    start = end = 0
    for channel, message in scan(path, result):
        if not is_ours(channel):
            foreign += 1
            continue
        key = (channel.topic, channel.metadata.get("type", ""), channel_version(channel))
        info = topics.get(key)
        if info is None:
            info = topics[key] = TopicInfo(*key, first_ns=message.log_time)
        info.count += 1
        info.bytes += len(message.data)
        info.last_ns = message.log_time
        try:
            src = header_src(unpack_message(message.data)[0])
        except Exception:  # a damaged message still counts; its seq is attributed to an unknown source
            src = "?"
        seqs.add(src, channel.topic, message.sequence)
        start = message.log_time if messages == 0 else min(start, message.log_time)
        end = max(end, message.log_time)
        messages += 1
    for (topic, _t, _v), info in topics.items():
        info.gaps = seqs.gaps.get(topic, 0)
        info.resets = seqs.resets.get(topic, 0)
    return RecordingInfo(
        path=str(path),
        complete=result.complete and not result.damage,  # a footer after a skipped bad chunk: not whole
        damage=result.damage,
        messages=messages,
        start_ns=start,
        end_ns=end,
        topics=sorted(topics.values(), key=lambda t: t.topic),
        metadata={m.name: dict(m.metadata) for m in result.metadata},
        foreign_messages=foreign,
    )
