"""The world node writing its memory to a real database and answering from it over its RPC: poses joined
by time, captions joined to segments, combined queries with evidence, watch durations, bad params, and a
fleet (two world nodes, two robots) writing one PostgreSQL server."""

from __future__ import annotations

import time

import pytest

from bus.rpc import RpcClient, RpcError
from perception.messages import Caption, Embedding, Event, LabelScore, Pose
from perception.nodes.world import WorldNode
from tests.nodes.conftest import wait_for
from tests.nodes.harness import embed, embed_server, node_config, running

from .conftest import fresh_database

S = 10**9


def seg_event(cam, k, t0, emb, dur=3):
    return Event(
        cam=cam, kind="segment", segment_id=k, start_ns=t0 + k * 10 * S, end_ns=t0 + (k * 10 + dur) * S,
        start_s=k * 10.0, end_s=k * 10.0 + dur, labels=[LabelScore(label="x", score=0.5)], embedding=emb,
    )  # fmt: skip


def caption(cam, k, t0, text):
    return Caption(
        cam=cam, segment_id=k, text=text, start_ns=t0 + k * 10 * S, end_ns=t0 + (k * 10 + 3) * S,
        t_capture_ns=t0 + (k * 10 + 3) * S, latency_ms=5.0,
    )  # fmt: skip


def watch(cam, t, active, t0):
    return Event(
        cam=cam, kind="watch", segment_id=0, start_ns=t0 + t * S, end_ns=t0 + t * S, watch="door open",
        active=active, watch_id="config:door open", labels=[LabelScore(label="door open", score=0.7)],
    )  # fmt: skip


def pose(cam, t, x, y, t0):
    return Pose(cam=cam, frame_id="map", stamp_ns=t0 + t * S, x=x, y=y, yaw=0.5, source="test")


def world_config(runtime_dir, ckpt, store, robot, **memory):
    mem = {"retain_every_s": 3600, "flush_s": 0.05, **memory}
    return node_config(runtime_dir, ckpt, world={"store": store, "robot": robot, "memory": mem})


async def committed(node, n):
    await wait_for(lambda: node.mem.writer.counts["committed"] >= n, 30)


TEXTS = ["a red cup on the kitchen table", "a blue box in the hallway", "a green plant by the window"]


async def test_world_answers_what_when_where_with_evidence(store_url, runtime_dir, small_checkpoint, text_model):
    config = world_config(runtime_dir, small_checkpoint, store_url, "r1")
    t0 = time.time_ns() - 600 * S
    embs = embed(text_model, TEXTS)
    async with running(WorldNode, config, []) as (node, pub, sub), embed_server(config, text_model):
        # the robot drives along x: kitchen (0..5 m) then hallway (20 m); the rear camera has no pose
        for t in range(0, 40, 1):
            pub.publish_nowait("pose/front", pose("front", t, 0.0 if t < 15 else 20.0, 0.0, t0))
        await wait_for(lambda: node.counters["stored.Pose"] >= 40, 20)
        pub.publish_nowait("events/front", seg_event("front", 0, t0, embs[0]))  # kitchen, the cup
        pub.publish_nowait("events/front", seg_event("front", 2, t0, embs[1]))  # hallway, the box
        pub.publish_nowait("events/front", seg_event("front", 3, t0, embs[0]))  # hallway, the cup again
        pub.publish_nowait("captions/front", caption("front", 0, t0, TEXTS[0]))
        pub.publish_nowait("events/rear", seg_event("rear", 1, t0, embs[2]))  # no pose
        for t, active in ((5, True), (17, False), (25, True), (28, False)):
            pub.publish_nowait("events/front", watch("front", t, active, t0))
        pub.publish_nowait(
            "embeddings/front",
            Embedding(cam="front", window=0, start_ns=t0, end_ns=t0 + S, model_id="t", t_capture_ns=t0 + S,
                      embedding=embs[0]),
        )  # fmt: skip
        await committed(node, 10)
        async with RpcClient(config.bus, timeout=10, retries=1) as rpc:
            found = (await rpc.call("recall", {"text": TEXTS[0], "limit": 2}))["results"]
            assert {r["segment_id"] for r in found} == {0, 3} and found[0]["score"] > 0.99
            # where did it see the cup in the kitchen? text + place, with the evidence
            r = await rpc.call("recall", {"text": TEXTS[0], "near": {"x": 0.0, "y": 0.0, "r": 2.0, "frame_id": "map"}})
            assert [h["segment_id"] for h in r["results"]][:1] == [0]
            hit = r["results"][0]
            assert hit["robot"] == "r1" and hit["camera"] == "front" and hit["caption"] == TEXTS[0]
            assert hit["pose_start"]["x"] == 0.0 and hit["pose_start"]["frame_id"] == "map"
            assert hit["start_ns"] == t0 and hit["distance_m"] == 0.0
            assert r["no_pose"] == [{"robot": "r1", "camera": "rear"}]
            # last seen: the hallway sighting, the newer one
            last = (await rpc.call("last_seen", {"text": TEXTS[0], "limit": 1}))["results"]
            assert [(h["segment_id"], h["pose_end"]["x"]) for h in last] == [(3, 20.0)]
            # what was at time T (t0 + 21 s: inside segment 2)
            at = (await rpc.call("at", {"t_ns": t0 + 21 * S}))["results"]
            assert [(h["camera"], h["segment_id"]) for h in at] == [("front", 2)]
            # how long was the door open
            spans = (await rpc.call("spans", {"watch": "door open"}))["spans"]
            assert [s["duration_s"] for s in spans] == [3.0, 12.0]
            assert spans[1]["pose"]["x"] == 0.0  # where it opened
            opened = await rpc.call("segment", {"id": hit["id"]})
            assert opened["segment_id"] == 0
            stats = await rpc.call("memory", {})
            assert stats["rows"] == {"segments": 4, "captions": 1, "watches": 4, "windows": 1}
            for bad, code in (
                ({"text": ""}, "bad_request"),
                ({"near": {"x": 0, "y": 0, "r": -1}}, "bad_request"),
                ({"limit": 10**6}, "bad_request"),
                ({"since_ns": "yesterday"}, "bad_request"),
                ({"bogus": 1}, "bad_request"),
            ):
                with pytest.raises(RpcError) as exc:
                    await rpc.call("recall", bad)
                assert exc.value.code == code
            with pytest.raises(RpcError, match="at needs"):
                await rpc.call("at", {})
            with pytest.raises(RpcError) as exc:
                await rpc.call("segment", {"id": 10**9})
            assert exc.value.code == "not_found"
        # a malformed pose is rejected and counted, the node goes on
        pub.publish_nowait("pose/front", Pose(cam="front", frame_id="", stamp_ns=t0, x=0.0, y=0.0))
        await wait_for(lambda: node.counters["rejected.Pose"] == 1, 10)
        assert node.stats()["memory.down"] == 0.0


async def test_two_robots_write_one_postgres(pg_server, tmp_path, small_checkpoint, text_model):
    from tests.support import short_tmp

    url = fresh_database(pg_server)
    t0 = time.time_ns() - 600 * S
    embs = embed(text_model, TEXTS)
    rt1, rt2 = short_tmp("rt-"), short_tmp("rt-")
    c1 = world_config(rt1, small_checkpoint, url, "r1")
    c2 = world_config(rt2, small_checkpoint, url, "r2")
    async with (
        running(WorldNode, c1, []) as (n1, p1, _),
        running(WorldNode, c2, []) as (n2, p2, _),
        embed_server(c1, text_model),
    ):
        for k in range(5):
            p1.publish_nowait("events/front", seg_event("front", k, t0, embs[0]))
            p2.publish_nowait("events/front", seg_event("front", k, t0 + 5 * S, embs[k % 2]))
        await committed(n1, 5)
        await committed(n2, 5)
        async with RpcClient(c1.bus, timeout=10, retries=1) as rpc:
            both = (await rpc.call("recall", {"text": TEXTS[0], "limit": 20}))["results"]
            assert sorted({(h["robot"], h["segment_id"]) for h in both}) == sorted(
                [("r1", k) for k in range(5)] + [("r2", k) for k in range(5)]
            )
            theirs = (await rpc.call("last_seen", {"text": TEXTS[1], "robot": "r2", "limit": 1}))["results"]
            assert [(h["robot"], h["segment_id"]) for h in theirs] == [("r2", 3)]
            cams = (await rpc.call("memory", {}))["cameras"]
            assert sorted((c["robot"], c["segments"]) for c in cams) == [("r1", 5), ("r2", 5)]
