"""A viewer on a live pipeline: a bus component (like a skill) that feeds a `Feed` (perception/viewers/feed.py).

    viewer = LiveViewer(config, feed)            # subclasses: the Foxglove bridge, the Rerun viewer
    await run_component(viewer)                  # until Ctrl-C / SIGTERM / duration

It subscribes to frames/, captions/, events/, embeddings/, truth/, watches/ and stats/ (frames with the
bus's `latest` policy: a viewer that falls behind gets the newest frame, never a backlog, and the proxy
never waits for it), handles everything but frames on its loop, and encodes frames on a worker thread, one
per camera at a time: a frame that arrives while its camera's previous one is still being encoded is
skipped (`frames_busy`), so neither a slow encoder nor a slow viewer can slow the pipeline or this loop.

Text embeddings for the label and watch-phrase scores come from the encoder node's `embed`, asked in the
background until it answers (`texts_pending` in the stats while it does not): a viewer started before
the pipeline shows frames and captions at once and the scores once the encoder is up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from bus.component import Component, on
from bus.logs import RateLimited
from bus.message import Stats
from perception.config import AppConfig
from perception.messages import Caption, Embedding, Event, Frame, GroundTruthSegment, WatchList
from perception.viewers.feed import Feed
from perception.viewers.texts import fetch_from_encoder

TEXTS_POLL_S = 0.5  # how often the viewer checks for texts (new watch phrases) still to embed
TEXTS_ATTEMPT_S = 5.0  # one attempt at the encoder's `embed` before trying again


class LiveViewer(Component):
    """Base of the live viewers: the bus side. Subclasses build the feed's sink in `setup`."""

    name: ClassVar[str] = "viewer"
    log_kind: ClassVar[str] = "viewer"

    def __init__(self, config: AppConfig, feed: Feed | None = None) -> None:
        self.config = config
        super().__init__(config.bus)
        self.feed = feed
        self._busy: set[str] = set()  # cameras with a frame being encoded
        self._tasks: set[asyncio.Task] = set()
        self._text_errors = RateLimited(10.0)

    @property
    def bus_name(self) -> str:
        return f"viewer.{self.name}"

    def error_event(self, what: str) -> str:
        return "viewer handler failed"

    # -- inputs -------------------------------------------------------------------------------------------

    @on("frames/{cam}", Frame)
    def on_frame(self, frame: Frame) -> None:
        self._frame(frame, full=False)

    @on("frames_full/{cam}", Frame)
    def on_full_frame(self, frame: Frame) -> None:
        self._frame(frame, full=True)

    def _frame(self, frame: Frame, full: bool) -> None:
        if self.feed is None or not self.feed.frame_wanted(frame, full):
            return
        if frame.cam in self._busy:
            self.counters["frames_busy"] += 1
            return
        self._busy.add(frame.cam)
        task = asyncio.create_task(self._encode(frame, time.time_ns()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _encode(self, frame: Frame, t_ns: int) -> None:
        assert self.feed is not None
        try:
            await asyncio.to_thread(self.feed.frame, frame, t_ns)
        except Exception as exc:  # a frame that cannot be encoded is counted, never fatal
            self.report_error("frame", exc, camera=frame.cam[:80], index=frame.index)
        finally:
            self._busy.discard(frame.cam)

    @on("captions/{cam}", Caption)
    @on("events/{cam}", Event)
    @on("embeddings/{cam}", Embedding)
    @on("truth/{cam}", GroundTruthSegment)
    @on("watches/", WatchList)
    @on("stats/", Stats)
    def on_message(self, msg: Any) -> None:
        if self.feed is not None:
            self.feed.push_other(msg, time.time_ns())

    # -- text embeddings ----------------------------------------------------------------------------------

    def background(self) -> list:
        return [self._texts()]

    async def _texts(self) -> None:
        """Keep the feed's label and watch-phrase embeddings filled from the encoder (never returns)."""
        while True:
            wanted = self.feed.wanted_texts if self.feed is not None else []
            missing = self.feed.texts.missing(wanted) if self.feed is not None else []
            self.counters["texts_pending"] = len(missing)
            if missing:
                try:
                    added = await fetch_from_encoder(self.config, self.feed.texts, missing, wait_s=TEXTS_ATTEMPT_S)
                    self.counters["texts_embedded"] += added
                    self.counters["texts_pending"] = 0
                    self.log.info("text embeddings from the encoder", texts=added, dim=self.feed.texts.dim)
                    continue
                except (TimeoutError, RuntimeError, ValueError) as exc:
                    self.counters["text_embed_failures"] += 1
                    if (n := self._text_errors.should_log("embed")) is not None:
                        self.log.warning(
                            "no text embeddings from the encoder yet: label and watch scores wait for it",
                            error=str(exc)[:300],
                            suppressed=n,
                        )
            await asyncio.sleep(TEXTS_POLL_S)

    async def teardown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.feed is not None:
            self.feed.sink.close()
