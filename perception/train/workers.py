"""How data-loader workers start: never by a bare fork of the trainer.

A trainer is a threaded process (torch's intra-op pool, gloo, the logging and checkpoint threads). A
fork copies only the forking thread: a lock another thread held at that moment stays locked forever in
the child, and a worker waits on it (a futex) until the test or the run times out. `forkserver` forks
workers from a small single-threaded server started once; only the dataset is pickled over.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

START_METHOD = "forkserver"


def loader_context(num_workers: int) -> BaseContext | None:
    """The `multiprocessing_context` of a DataLoader with `num_workers` workers (None without workers)."""
    return multiprocessing.get_context(START_METHOD) if num_workers > 0 else None
