"""What a pipeline node adds to `bus.component.Component`: the app config and dying with the launcher.

A node is a Component (declared `@on` inputs and `outputs`, one lifecycle: docs/architecture.md) built
from the whole `AppConfig`, one instance per OS process. It also stops when its parent (the launcher)
dies: PR_SET_PDEATHSIG plus a ppid watchdog, so a killed launcher leaves no orphans.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
from typing import Any, ClassVar

from bus.component import Component, LatencyWindow, serve  # noqa: F401  re-exported for the nodes
from perception.config import AppConfig

PARENT_ENV = "PERCEPTION_PARENT_PID"


class Node(Component):
    """Base class of every pipeline node."""

    name: ClassVar[str] = "node"
    log_kind: ClassVar[str] = "node"

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        super().__init__(config.bus)

    def _extra_tasks(self) -> list[Any]:
        return [self._watch_parent()] if os.environ.get(PARENT_ENV) else []

    async def _watch_parent(self) -> None:
        """Exit when the launcher that started us is gone (backs up PR_SET_PDEATHSIG)."""
        parent = int(os.environ[PARENT_ENV])
        while True:
            if os.getppid() != parent:
                self.log.warning("parent process gone, stopping")
                return
            await asyncio.sleep(0.5)


def die_with_parent() -> None:
    """Linux: SIGTERM this process when the parent (the launcher) dies, even by SIGKILL."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: the ppid watchdog in Node still applies
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        raise SystemExit(0)
