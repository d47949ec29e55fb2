"""The SDK in-process on a real proxy: typed and generic handlers, a raising handler does not stop the skill,
publish() reaches subscribers, world queries time out with a clear error."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from benchmarks.bus.messages import Text
from bus.pubsub import Publisher, Subscriber
from perception.messages import Caption, Embedding
from skills import Output, Skill, SkillEvent, WorldUnavailable, on


def caption(text: str, seg: int, cam: str = "cam0") -> Caption:
    t = time.time_ns()
    return Caption(
        cam=cam,
        segment_id=seg,
        text=text,
        start_ns=t,
        end_ns=t,
        start_s=seg,
        end_s=seg + 1,
        t_capture_ns=t,
        latency_ms=1.0,
    )


class Flaky(Skill):
    """Raises on every caption that says 'boom'; echoes the others on skills/echo."""

    name = "flaky"
    outputs = {"echo": Output("skills/{skill}", SkillEvent)}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen: list[str] = []
        self.notes: list[str] = []

    async def on_caption(self, c: Caption) -> None:
        if c.text == "boom":
            raise RuntimeError(f"planted failure in segment {c.segment_id}")
        self.seen.append(c.text)
        self.publish(SkillEvent(skill="echo", name="echo", text=c.text))

    @on("notes/")
    def note(self, env) -> None:  # a sync generic handler gets the Envelope
        self.notes.append(env.msg.text)


async def test_raising_handler_does_not_stop_the_skill(proxy, app_config):
    skill = Flaky(app_config)
    assert skill.topics == ["captions/", "notes/"]  # only overridden handlers are subscribed
    echo = await Subscriber(app_config.bus, ["skills/echo"], name="t").start()
    task = asyncio.create_task(skill.run(max_messages=7))
    await asyncio.wait_for(skill.ready.wait(), 30)
    async with Publisher(app_config.bus, src="t") as pub:
        for i, text in enumerate(["a", "boom", "b", "boom", "c"]):
            await pub.publish("captions/cam0", caption(text, i))
        await pub.publish("notes/x", Text(text="n1"))
        await pub.publish(
            "embeddings/cam0",
            Embedding(  # not subscribed: never reaches the skill
                cam="cam0",
                window=0,
                start_ns=0,
                end_ns=0,
                model_id="m",
                t_capture_ns=0,
                embedding=np.zeros(4, np.float32),
            ),
        )
        await pub.publish("notes/y", Text(text="n2"))
        counters = await asyncio.wait_for(task, 30)
    assert skill.seen == ["a", "b", "c"]
    assert skill.notes == ["n1", "n2"]
    assert counters["errors"] == 2 and counters["errors.on_caption"] == 2
    assert counters["handled.on_caption"] == 3 and counters["handled.note"] == 2
    echoed = [(await echo.recv(timeout=5)).msg.text for _ in range(3)]
    assert echoed == ["a", "b", "c"]
    echo.close()


async def test_camera_filter_and_stop(proxy, app_config):
    class StopOnThird(Skill):
        name = "stopper"

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.got = []

        def on_caption(self, c):
            self.got.append((c.cam, c.text))
            if len(self.got) == 2:
                self.stop()

    skill = StopOnThird(app_config, camera="cam1")
    task = asyncio.create_task(skill.run())
    await asyncio.wait_for(skill.ready.wait(), 30)
    async with Publisher(app_config.bus, src="t") as pub:
        for i, cam in enumerate(["cam0", "cam1", "cam0", "cam1", "cam1"]):
            await pub.publish(f"captions/{cam}", caption(f"x{i}", i, cam))
        await asyncio.wait_for(task, 30)
    assert skill.got == [("cam1", "x1"), ("cam1", "x3")]


async def test_world_query_without_world_node_times_out_clearly(proxy, app_config):
    class Asker(Skill):
        name = "asker"

        async def main(self):
            t0 = time.monotonic()
            with pytest.raises(WorldUnavailable, match="no reply"):
                await self.world.now(timeout=0.2)
            self.elapsed = time.monotonic() - t0

    skill = Asker(app_config, rpc_timeout=0.2)
    await asyncio.wait_for(skill.run(), 30)
    assert skill.elapsed < 3  # 2 attempts of 0.2 s, not the default timeout


async def test_publish_before_run_is_a_clear_error(app_config):
    with pytest.raises(RuntimeError, match="before run"):
        Flaky(app_config).publish(SkillEvent(skill="echo", name="x"))


async def test_watcher_via_events_follows_the_watch_list(proxy, app_config):
    from bus.pubsub import Subscriber as Sub
    from perception.messages import Event, LabelScore
    from perception.nodes.config import WatchConfig
    from skills.watcher import Watcher

    phrase = "the red circle grows"
    cfg = app_config.model_copy(deep=True)
    cfg.pipeline.events.watch = [WatchConfig(label=phrase)]
    watcher = Watcher(cfg, phrase, via="events")
    assert watcher.topics == ["events/"]  # no embeddings, no model
    alerts = await Sub(cfg.bus, ["alerts/"], name="t").start()
    task = asyncio.create_task(watcher.run(max_messages=3))
    await asyncio.wait_for(watcher.ready.wait(), 30)
    async with Publisher(cfg.bus, src="t") as pub:
        for label, active, score in [("something else", True, 0.9), (phrase, True, 0.7), (phrase, False, 0.2)]:
            await pub.publish(
                "events/cam2",
                Event(
                    cam="cam2",
                    kind="watch",
                    segment_id=0,
                    start_ns=1,
                    end_ns=2,
                    end_s=3.5,
                    watch=label,
                    active=active,
                    labels=[LabelScore(label=label, score=score)],
                ),
            )
        await asyncio.wait_for(task, 30)
    got = await alerts.recv(timeout=5)
    assert (got.topic, got.msg.phrase, got.msg.score, got.msg.via, got.msg.end_s) == (
        "alerts/cam2",
        phrase,
        0.7,
        "events",
        3.5,
    )
    assert watcher.counters["alerts"] == 1
    alerts.close()
