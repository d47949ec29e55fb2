"""Events and world nodes in-process over a real bus: planted changes become segments, decode requests and
watch crossings; the world remembers them, answers now/history/search, and keeps them across a restart."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from bus.rpc import RpcClient, RpcError
from perception.messages import Caption, Event, LabelScore
from perception.nodes.events import EventsNode
from perception.nodes.world import WorldNode

from .harness import collect, embed, embed_server, node_config, running
from .streams import quarter_window, unit

embedding = quarter_window


async def test_planted_change_gives_one_segment_and_a_decode_request(runtime_dir, random_checkpoint, text_model):
    watch = "a purple triangle appears"
    config = node_config(
        runtime_dir,
        random_checkpoint,
        events={
            "threshold": 5.0,
            "max_len_s": None,
            "top_labels": 2,
            "labels": ["alpha", "beta", "gamma"],
            "watch": [{"label": watch, "enter": 0.9, "leave": 0.5}],
        },
    )
    async with (
        embed_server(config, text_model),
        running(EventsNode, config, ["events/", "decode/"]) as (node, pub, sub),
    ):
        rng = np.random.default_rng(0)
        a = embed(text_model, ["alpha"])[0]  # segment 1 sits on the label "alpha"
        b = unit(rng.normal(size=a.shape))
        target = embed(text_model, [watch])[0]
        t0 = time.time_ns()
        vecs = [unit(a + 0.02 * rng.normal(size=a.shape)) for _ in range(12)]
        vecs += [unit(b + 0.02 * rng.normal(size=a.shape)) for _ in range(12)]
        for i, v in enumerate(vecs):
            pub.publish_nowait("embeddings/cam0", embedding("cam0", i, v, t0))
            await asyncio.sleep(0.01)
        for i, v in enumerate([b, target, b]):  # cam1: one window that looks exactly like the watched phrase
            pub.publish_nowait("embeddings/cam1", embedding("cam1", i, v, t0))
        envs = await collect(sub, "", 4, timeout=30)  # segment + decode request + watch on + watch off
        events = [e.msg for e in envs if isinstance(e.msg, Event)]
        segments = [e for e in events if e.kind == "segment"]
        assert len(segments) == 1
        seg = segments[0]
        # the first id is the stream's base: the capture time (ms) of its first window
        assert seg.segment_id >= t0 // 1_000_000 and node.streams["cam0"].segment_id == seg.segment_id + 1
        # from the first window's centre to the centre of the next segment's first window
        assert seg.start_s == 0.125 and seg.end_s == pytest.approx(3.125)
        assert seg.labels[0].label == "alpha" and len(seg.labels) == 2
        assert float(seg.embedding @ a) > 0.99  # the segment mean is segment 1's direction
        decode = [e.msg for e in envs if e.topic.startswith("decode/")]
        assert len(decode) == 1 and decode[0].segment_id == seg.segment_id and decode[0].end_s == pytest.approx(3.125)
        watches = [e for e in events if e.kind == "watch"]
        assert [w.active for w in watches] == [True, False]
        assert all(w.cam == "cam1" for w in watches)
        assert watches[0].end_s == pytest.approx(2 * 0.25) and watches[0].watch == watch
        assert node.counters["segments"] == 1

        # a message the segmenter rejects (wrong dimension) is counted; the node keeps going
        pub.publish_nowait("embeddings/cam0", embedding("cam0", 30, np.ones(3, np.float32), t0))
        pub.publish_nowait("embeddings/cam2", embedding("cam2", 0, a, t0))
        async with asyncio.timeout(10):
            while node.counters["embeddings"] < 28 or "cam2" not in node.streams:
                await asyncio.sleep(0.05)
        assert node.counters["errors.on_embedding"] == 1


async def test_world_remembers_answers_and_persists(runtime_dir, random_checkpoint, text_model):
    persist = runtime_dir / "world.jsonl"
    config = node_config(runtime_dir, random_checkpoint, world={"persist": str(persist), "max_items": 50})
    t0 = time.time_ns()
    async with running(WorldNode, config, []) as (node, pub, sub):
        texts = ["the red circle moves left", "the blue square grows", "the green cross shrinks"]
        embs = embed(text_model, texts)
        for k, (text, e) in enumerate(zip(texts, embs)):
            span = dict(
                cam="cam0",
                segment_id=k,
                start_ns=t0 + k * 10**9,
                end_ns=t0 + (k + 1) * 10**9,
                start_s=float(k),
                end_s=float(k + 1),
            )
            pub.publish_nowait(
                "events/cam0", Event(kind="segment", labels=[LabelScore(label=text, score=0.9)], embedding=e, **span)
            )
            pub.publish_nowait("captions/cam0", Caption(text=text, t_capture_ns=span["end_ns"], latency_ms=5.0, **span))
        pub.publish_nowait(
            "events/cam0",
            Event(
                cam="cam0",
                kind="watch",
                segment_id=2,
                start_ns=t0,
                end_ns=t0 + 1,
                watch="a cross",
                active=True,
                labels=[LabelScore(label="a cross", score=0.7)],
            ),
        )
        pub.publish_nowait("embeddings/cam0", embedding("cam0", 12, embs[2], t0))
        async with RpcClient(config.bus, timeout=10, retries=1) as rpc:
            async with asyncio.timeout(20):
                while len((await rpc.call("history", {}))["items"]) < 7:
                    await asyncio.sleep(0.05)
            now = (await rpc.call("now", {"camera": "cam0"}))["cameras"]["cam0"]
            assert now["latest_caption"]["text"] == "the green cross shrinks"
            assert now["last_segment"]["segment_id"] == 2 and now["active_watch"] == ["a cross"]
            assert now["current_segment"]["segment_id"] == 3
            hist = await rpc.call("history", {"since_ns": t0 + int(1.5e9), "kinds": ["caption"]})
            assert [r["text"] for r in hist["items"]] == texts[1:]
            async with embed_server(config, text_model):  # the encoder embeds the query
                found = (await rpc.call("search", {"text": "the blue square grows", "k": 2}))["results"]
            assert found[0]["segment_id"] == 1 and found[0]["caption"] == "the blue square grows"
            assert found[0]["score"] > found[1]["score"]
            with pytest.raises(RpcError) as err:
                await rpc.call("now", {"camera": "nope"})
            assert err.value.code == "unknown_camera"
            with pytest.raises(RpcError) as err:  # no encoder running: a clear error, not a hang
                await rpc.call("ask", {"question": "what colour is the circle?"}, timeout=30)
            assert err.value.code == "encoder_unavailable"
    with persist.open("a") as fh:
        fh.write("{not json\n")  # a torn last line (crash mid-write) is skipped on reload
    async with running(WorldNode, config, []) as (node, pub, sub):
        assert node.counters["persist_bad_lines"] == 1
        async with RpcClient(config.bus, timeout=10, retries=1) as rpc:
            hist = await rpc.call("history", {"camera": "cam0", "kinds": ["caption"]})
            assert [r["text"] for r in hist["items"]] == texts
            async with embed_server(config, text_model):
                found = (await rpc.call("search", {"text": "the red circle moves left", "k": 1}))["results"]
            assert found[0]["segment_id"] == 0
