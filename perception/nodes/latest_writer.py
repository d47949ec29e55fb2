"""Write the newest of many snapshots to disk off the event loop: many changes, one write.

A durable write (temp file, fsync, rename, fsync the directory) takes milliseconds; made on the event
loop for every change, a flood of changes stalls every other request of the node. Here a change only
replaces the pending snapshot; one write at a time runs on a worker thread, and whatever arrived
meanwhile is written once after it. The file always ends with the newest snapshot: `flush()` (at
teardown) waits for a write in progress and writes what is still pending.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestWriter(Generic[T]):
    def __init__(self, write: Callable[[T], None], on_error: Callable[[OSError], None]) -> None:
        """`write(snapshot)` runs on a worker thread: a snapshot must not change after `submit`."""
        self._write, self._on_error = write, on_error
        self._slot = threading.Lock()  # guards _pending
        self._io = threading.Lock()  # one write at a time (the worker's, or flush's at teardown)
        self._pending: tuple[T] | None = None
        self._wake = asyncio.Event()
        self.submitted = 0
        self.written = 0

    def submit(self, snapshot: T) -> None:
        """Replace what is to be written next (never blocks)."""
        with self._slot:
            self._pending = (snapshot,)
        self.submitted += 1
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            error = await asyncio.to_thread(self._write_pending)
            if error is not None:
                self._on_error(error)

    def flush(self) -> None:
        """Write what is pending now, on this thread (after the worker's write in progress, if any)."""
        error = self._write_pending()
        if error is not None:
            self._on_error(error)

    def _write_pending(self) -> OSError | None:
        with self._io:
            with self._slot:
                box, self._pending = self._pending, None
            if box is None:
                return None
            try:
                self._write(box[0])
            except OSError as exc:
                return exc
            self.written += 1
            return None
