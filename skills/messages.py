"""Messages that skills put on the bus: alerts (alerts/<cam>) and free-form skill events.

Registered with the bus codec like perception's own messages, so `perception echo`, the recorder and any
other subscriber decode them with no code of ours beyond this module.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from bus.message import Message, register


@register
class Alert(Message):
    """A watched phrase was detected on a camera (published by the watcher on alerts/<cam>)."""

    TYPE: ClassVar[str] = "Alert"
    cam: str
    phrase: str
    score: float  # cosine of the phrase's S_Y to the window's S^_Y (or the events node's score)
    via: Literal["embedding", "events"]  # the watcher's own threshold, or the events node's watch list
    start_ns: int = 0  # capture-time span of the window that crossed
    end_ns: int = 0
    start_s: float = 0.0
    end_s: float = 0.0
    skill: str = "watcher"

    def __str__(self) -> str:
        return f"Alert({self.cam} {self.phrase!r} score={self.score:.3f} @{self.end_s:.2f}s via {self.via})"


@register
class SkillEvent(Message):
    """Anything else a skill wants to tell the world (a planner's decision, a counter crossing...)."""

    TYPE: ClassVar[str] = "SkillEvent"
    skill: str
    name: str
    text: str = ""
    data: dict[str, Any] = Field(default_factory=dict)  # msgpack-able values only (no arrays)
