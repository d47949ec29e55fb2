"""How data-loader workers start: never by a bare fork of the trainer.

A trainer is a threaded process (torch's intra-op pool, gloo, the logging and checkpoint threads). A
fork copies only the forking thread: a lock another thread held at that moment stays locked forever in
the child, and a worker waits on it (a futex) until the test or the run times out. `forkserver` forks
workers from a small single-threaded server started once; only the dataset is pickled over. The server
imports torch and the datasets' modules first (its preload), so a worker starts in a fork of a process
that has them, not in a fresh interpreter that imports torch again (seconds per worker). Its only other
thread then is OpenBLAS's idle pool, which quiesces itself around a fork (pthread_atfork).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

START_METHOD = "forkserver"
# imported by the server before it forks any worker (a module that fails to import is skipped by it)
PRELOAD = [
    "torch",
    "perception.data.shapesworld",
    "perception.data.stream_windows",
    "perception.data.shards",
    "perception.train.sample_streams",
]


def loader_context(num_workers: int) -> BaseContext | None:
    """The `multiprocessing_context` of a DataLoader with `num_workers` workers (None without workers)."""
    if num_workers <= 0:
        return None
    ctx = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)  # read when the server starts: the first loader's workers
    return ctx
