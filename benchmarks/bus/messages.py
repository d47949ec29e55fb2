"""The messages of the bus benchmark and demo: free text and an opaque labelled array.

Nothing in the service sends them; they are synthetic traffic for `benchmarks/bus/` (bench, worker,
record, demo) and the bus tests. Importing this module registers them with the bus codec; the
`perception.messages` entry point (pyproject.toml) does so in tools that decode anything on the bus
(`perception echo`), so demo and benchmark traffic prints like any other.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from bus.message import Message, register


@register
class Text(Message):
    """Free text: the demo talker's `demo/text`, notes in tests."""

    TYPE: ClassVar[str] = "Text"
    text: str


@register
class Blob(Message):
    """An opaque array with a label: synthetic frames, benchmark payloads, tests."""

    TYPE: ClassVar[str] = "Blob"
    label: str = ""
    t_mono_ns: int = 0  # sender's monotonic clock (same host only): one-way latency
    data: np.ndarray
