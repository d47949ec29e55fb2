"""Long-running skills stay bounded on a real bus: the planner keeps its latest decisions only (all of
them still printed and published), a live timeline keeps the newest windows per camera and a bounded
number of cameras, whatever the publishers invent."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np

from bus.pubsub import Publisher, Subscriber
from perception.messages import Caption, Embedding
from skills.planner import Planner
from skills.timeline import Session, Timeline


def embedding(cam: str, w: int) -> Embedding:
    return Embedding(
        cam=cam,
        window=w,
        start_ns=w,
        end_ns=w + 1,
        start_s=w * 0.25,
        end_s=w * 0.25 + 2.0,
        model_id="test",
        t_capture_ns=w,
        embedding=np.full(8, w, np.float32),
    )


async def test_planner_keeps_only_its_latest_decisions(proxy, app_config):
    out = io.StringIO()
    planner = Planner(app_config, decisions=25, keep=5, interval=0.0, rpc_timeout=0.05, out=out)
    published = await Subscriber(app_config.bus, ["skills/planner"], name="t").start()
    await asyncio.wait_for(planner.run(), 120)  # no world node: every decision is a quick "wait"
    assert planner.n_decisions == 25 and planner.counters["decisions"] == 25
    assert len(planner.decisions) == 5  # bounded ...
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(lines) == 25 and all(d["decision"] == "wait" for d in lines)  # ... but nothing unreported
    got = [(await published.recv(timeout=10)).msg for _ in range(25)]
    assert all(m.name == "decision" and m.text == "wait" for m in got)
    published.close()


async def test_live_timeline_keeps_the_newest_windows(proxy, app_config, tmp_path):
    png = tmp_path / "live.png"
    timeline = Timeline(app_config, out=png, max_windows=10)
    task = asyncio.create_task(timeline.run(max_messages=61))
    await asyncio.wait_for(timeline.ready.wait(), 30)
    async with Publisher(app_config.bus, src="t") as pub:
        for w in range(60):
            await pub.publish("embeddings/cam0", embedding("cam0", w))
        await pub.publish(
            "captions/cam0",
            Caption(
                cam="cam0",
                segment_id=1,
                text="x",
                start_ns=0,
                end_ns=1,
                start_s=0,
                end_s=1,
                t_capture_ns=1,
                latency_ms=1.0,
            ),
        )
        await asyncio.wait_for(task, 60)
    track = timeline.session.cameras["cam0"]
    assert [int(v[0]) for _, v in track.windows] == list(range(50, 60))  # the newest 10, in order
    assert track.captions[1] == "x"
    assert timeline.written == png and png.stat().st_size > 0  # still renders


def test_a_session_bounds_cameras_and_every_kind_of_item():
    session = Session(max_windows=3, max_cameras=4)
    for cam in range(10):  # camera names come from publishers
        for w in range(5):
            session.add(embedding(f"cam{cam}", w))
            session.add(
                Caption(
                    cam=f"cam{cam}",
                    segment_id=w,
                    text=str(w),
                    start_ns=0,
                    end_ns=1,
                    start_s=0,
                    end_s=1,
                    t_capture_ns=1,
                    latency_ms=1.0,
                )
            )
    assert sorted(session.cameras) == ["cam6", "cam7", "cam8", "cam9"]  # least recently seen fell out
    assert session.cameras.evicted == 6
    track = session.cameras["cam9"]
    assert len(track.windows) == 3 and sorted(track.captions) == [2, 3, 4]
