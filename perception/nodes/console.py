"""The launcher's console: captions and events as they arrive, one human-readable line each or JSON lines."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from perception.messages import Caption, Event


def format_line(msg: Caption | Event) -> str:
    """One human-readable line per caption or event."""
    span = f"[{msg.cam} {msg.start_s:7.2f}-{msg.end_s:7.2f}s]"
    if isinstance(msg, Caption):
        return f"{span} caption  {msg.text!r}  ({msg.latency_ms:.0f} ms after capture)"
    if msg.kind == "watch":
        return f"{span} watch    {msg.watch!r} {'ON' if msg.active else 'off'}"
    top = ", ".join(f"{x.label} ({x.score:.2f})" for x in msg.labels)
    return f"{span} segment  #{msg.segment_id}: {top}"


def to_json(topic: str, msg: Caption | Event) -> str:
    body = msg.model_dump(exclude={"embedding"})
    return json.dumps({"topic": topic, "type": msg.TYPE, **body})


class Console:
    """Prints what `perception up` shows: one line per caption or event to `out` (stdout by default).

    A repeated caption (the previous one goes on) is not news and is skipped in human-readable mode; JSON
    lines keep it, marked. `printed` counts the lines written."""

    def __init__(self, out: TextIO | None = None, *, json_lines: bool = False) -> None:
        self.out = out or sys.stdout
        self.json_lines = json_lines
        self.printed = 0

    def show(self, topic: str, msg: Caption | Event) -> None:
        if isinstance(msg, Caption) and msg.repeat and not self.json_lines:
            return
        line = to_json(topic, msg) if self.json_lines else format_line(msg)
        print(line, file=self.out, flush=True)
        self.printed += 1
