"""narrator: prints every caption with its wall-clock time and stream span; speaks it with espeak-ng if asked."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from typing import IO, Any

from perception.messages import Caption
from skills.sdk import Skill


def caption_line(c: Caption) -> str:
    """`12:03:04.250 cam0 [  1.25-  3.50s] the red circle grows` (wall clock of the segment's last frame)."""
    wall = time.strftime("%H:%M:%S", time.localtime(c.end_ns / 1e9)) + f".{(c.end_ns // 1_000_000) % 1000:03d}"
    return f"{wall} {c.cam} [{c.start_s:7.2f}-{c.end_s:7.2f}s] {c.text}"


class Narrator(Skill):
    """Print (and optionally speak) captions as they arrive."""

    name = "narrator"

    def __init__(self, config=None, *, speak: bool = False, out: IO[str] | None = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.out = out or sys.stdout
        self.espeak = shutil.which("espeak-ng") if speak else None
        if speak and self.espeak is None:
            self.log.warning("--speak: espeak-ng is not installed, printing only (apt install espeak-ng)")
        self._speaking: asyncio.subprocess.Process | None = None

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--speak", action="store_true", help="also speak captions with espeak-ng, if installed")

    @classmethod
    def from_args(cls, config, args) -> Narrator:
        return cls(config, speak=args.speak, camera=args.camera, rpc_timeout=args.rpc_timeout)

    async def on_caption(self, caption: Caption) -> None:
        if caption.repeat:  # the same as the previous caption: nothing new to say
            self.counters["captions_repeated"] += 1
            return
        print(caption_line(caption), file=self.out, flush=True)
        self.counters["captions"] += 1
        if self.espeak:
            if self._speaking is not None and self._speaking.returncode is None:
                self._speaking.kill()  # a newer caption interrupts an old one: never fall behind
            self._speaking = await asyncio.create_subprocess_exec(
                self.espeak, caption.text, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )

    async def teardown(self) -> None:
        if self._speaking is not None and self._speaking.returncode is None:
            self._speaking.kill()
            await self._speaking.wait()
