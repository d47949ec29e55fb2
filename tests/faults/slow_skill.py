"""A skill far slower than the stream: it sleeps in its handlers (the slow-subscriber fault).

    perception skill tests.faults.slow_skill:SlowSkill [--sleep-s 0.5] [--block]

It takes frames and embeddings and sleeps `--sleep-s` in each handler: awaiting by default (its loop keeps
draining its sockets, so the `latest` frames are replaced by newer ones, `sub.superseded` on stats/skill.slow),
or with `--block` in time.sleep, its whole loop stopped (its sockets are not read: ZeroMQ queues, and
drops at the high-water marks). Either way the rest of the bus must not notice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from perception.messages import Embedding, Frame
from skills import Skill, on


class SlowSkill(Skill):
    """Sleep in every handler: the slowest consumer of frames and embeddings."""

    name = "slow"

    def __init__(self, config: Any = None, *, sleep_s: float = 0.5, block: bool = False, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.sleep_s = sleep_s
        self.block = block

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        parser.add_argument("--sleep-s", type=float, default=0.5, help="seconds slept per message")
        parser.add_argument("--block", action="store_true", help="time.sleep (blocks the loop) instead of await")

    @classmethod
    def from_args(cls, config: Any, args: Any) -> SlowSkill:
        return cls(config, sleep_s=args.sleep_s, block=args.block, camera=args.camera, rpc_timeout=args.rpc_timeout)

    async def _sleep(self) -> None:
        if self.block:
            time.sleep(self.sleep_s)  # noqa: ASYNC251  the fault: a handler that blocks its loop
        else:
            await asyncio.sleep(self.sleep_s)

    @on("frames/", Frame)
    async def on_frame(self, frame: Frame) -> None:
        await self._sleep()

    async def on_embedding(self, embedding: Embedding) -> None:
        await self._sleep()
