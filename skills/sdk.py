"""The skills SDK: subclass `Skill`, override typed handlers, run it from Python or `perception skill`.

    class Greeter(Skill):
        name = "greeter"
        async def on_caption(self, caption: Caption) -> None:
            self.log.info("saw", text=caption.text)

A skill is a `bus.component.Component` (the same runtime as every pipeline node) with three typed
handlers ready to override - only the overridden ones are subscribed:
    on_caption(Caption)      captions/<cam>
    on_event(Event)          events/<cam>   (segments and watch crossings)
    on_embedding(Embedding)  embeddings/<cam>
    @on("prefix/", Type) method   any other topic (Type None: called with the decoded `Envelope`)
plus `setup()` (before subscribing), `main()` (a loop beside the handlers; the skill stops when it returns)
and `teardown()`. What a skill publishes is declared in `outputs` (`{"alerts": Output("alerts/{cam}",
Alert)}`) and sent with `self.publish(msg)`. Helpers: `self.world` (now/history/search/ask with timeouts),
`self.stop()`, `self.log`, `self.counters`. Test a skill in-process with `perception.testing.run_component`.

A handler that raises is logged with context (handler, topic, seq, src; at most once a second per handler)
and counted in `counters["errors"]`; the skill keeps running. Like every node, a skill publishes its
counters on stats/skill.<name> once a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from bus.component import Component, Input, on, run_component
from bus.config import BusConfig
from perception.config import AppConfig
from perception.messages import Caption, Embedding, Event
from skills.world import WorldClient

__all__ = ["Skill", "on", "run_skill"]

# typed handler name -> (topic root, message class)
TYPED_HANDLERS: dict[str, tuple[str, type]] = {
    "on_caption": ("captions/", Caption),
    "on_event": ("events/", Event),
    "on_embedding": ("embeddings/", Embedding),
}


class Skill(Component):
    """Base class of every skill. One asyncio loop; the bus sockets are owned by `run()`."""

    name: ClassVar[str] = "skill"
    log_kind: ClassVar[str] = "skill"
    uses_bus: bool = True  # False: run() only calls setup/main/teardown (a skill working on a file)

    def __init__(
        self, config: AppConfig | BusConfig | None = None, *, camera: str | None = None, rpc_timeout: float = 2.0
    ) -> None:
        if config is None:
            config = AppConfig()
        elif isinstance(config, BusConfig):
            config = AppConfig(bus=config)
        self.config = config
        self.camera = camera  # None: every camera
        self.rpc_timeout = rpc_timeout
        super().__init__(config.bus)
        if camera:
            self.log = self.log.bind(camera=camera)
        self._world: WorldClient | None = None

    @property
    def bus_name(self) -> str:
        return f"skill.{self.name}"

    def error_event(self, what: str) -> str:
        return "skill handler failed"

    # -- command line (`perception skill NAME ...`) ----------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """Add this skill's own options to its argparse parser."""

    @classmethod
    def from_args(cls, config: AppConfig, args: Any) -> Skill:
        """Build the skill from parsed options (common ones: `camera`, `rpc_timeout`)."""
        return cls(config, camera=args.camera, rpc_timeout=args.rpc_timeout)

    # -- to override --------------------------------------------------------------------------------------

    async def on_caption(self, caption: Caption) -> None:
        """A decoded caption of one segment."""

    async def on_event(self, event: Event) -> None:
        """A closed segment (`kind == "segment"`) or a watch label crossing (`kind == "watch"`)."""

    async def on_embedding(self, embedding: Embedding) -> None:
        """The predicted text embedding of one sliding window."""

    async def main(self) -> None:
        """A loop beside the handlers (a planner's tick). Returning stops the skill; the default waits."""
        await asyncio.Event().wait()

    # -- helpers ------------------------------------------------------------------------------------------

    @property
    def world(self) -> WorldClient:
        """The world node's queries, created on first use (a skill that never asks opens no socket)."""
        if self._world is None:
            self._world = WorldClient(self.bus, timeout=self.rpc_timeout)
        return self._world

    # -- wiring -------------------------------------------------------------------------------------------

    def inputs(self) -> list[Input]:
        """The overridden typed handlers (on this camera's topics) plus any `@on` methods."""
        cam = self.camera or "{cam}"
        typed = [
            Input(root + cam, msg_type, handler)
            for handler, (root, msg_type) in TYPED_HANDLERS.items()
            if getattr(type(self), handler) is not getattr(Skill, handler)
        ]
        return [*typed, *super().inputs()]

    def accepts(self, route: Input, msg: Any) -> bool:
        return self.camera is None or getattr(msg, "cam", self.camera) == self.camera

    def background(self) -> list:
        if type(self).main is not Skill.main or not self.routes:
            return [self.main()]
        return []

    def _close(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None

    async def run(self, *, duration: float | None = None, max_messages: int | None = None) -> dict[str, float]:
        """Connect, `setup()`, subscribe, then handle messages until `duration` s pass, `max_messages`
        messages were handled, `main()` returns, `stop()` is called or the task is cancelled. Returns the
        counters. A skill with `uses_bus = False` only runs setup, main and teardown."""
        if self.uses_bus:
            return await super().run(duration=duration, max_messages=max_messages)
        try:
            await self.setup()
            self.ready.set()
            await self.main()
            return dict(self.counters)
        finally:
            await self.teardown()


def run_skill(
    skill: Skill,
    *,
    duration: float | None = None,
    max_messages: int | None = None,
    on_ready: Callable[[Skill], None] | None = None,
) -> dict[str, float]:
    """Blocking entry point for scripts: run until done, Ctrl-C or SIGTERM; returns the skill's counters.

    `on_ready(skill)` is called once the skill is subscribed (the CLI prints its readiness line there)."""
    asyncio.run(run_component(skill, duration=duration, max_messages=max_messages, on_ready=on_ready))
    return dict(skill.counters)
