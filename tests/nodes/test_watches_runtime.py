"""Watch phrases added at run time: the world's `watch` / `unwatch` / `watches` RPC checks and bounds them,
publishes the list on watches/all, and a running events node scores them without a restart, per camera,
naming the watch in each event; the list outlives an events-node restart and, persisted, a world restart."""

from __future__ import annotations

import asyncio
import collections
import time

import numpy as np
import pytest

from bus.rpc import RpcClient, RpcError
from perception.messages import Event, WatchList
from perception.nodes.config import PipelineConfig
from perception.nodes.events import EventsNode
from perception.nodes.segments import SegmentTracker, Vocabulary
from perception.nodes.watches import (
    Watch,
    WatchLimit,
    WatchRegistry,
    decode_file,
    encode_file,
    watch_file,
    write_file,
)
from perception.nodes.world import WorldNode
from perception.nodes.world_store import check_record

from .conftest import wait_for
from .harness import bus_up, embed, embed_server, node_config, started
from .streams import quarter_window, unit

PHRASE = "a purple triangle appears"
CONFIGURED = "a green cross shrinks"


# -- the plain parts -----------------------------------------------------------------------------------------


def test_the_registry_bounds_scopes_and_the_file_round_trips(tmp_path):
    reg = WatchRegistry([], max_per_scope=2, max_scopes=2)
    a, changed = reg.add("a", "cam0", 0.5, 0.4)
    assert changed and a.id.startswith("w-") and len(a.id) == 10
    assert reg.add("a", "cam0", 0.6, 0.4) == (Watch(a.id, "a", 0.6, 0.4, "cam0"), True)  # same id, updated
    assert reg.add("a", "cam0", 0.6, 0.4)[1] is False
    reg.add("b", "cam0", 0.5, 0.4)
    with pytest.raises(WatchLimit):
        reg.add("c", "cam0", 0.5, 0.4)
    reg.add("c", None, 0.5, 0.4)  # every camera is a scope of its own
    with pytest.raises(WatchLimit):  # two scopes at most
        reg.add("c", "cam1", 0.5, 0.4)
    path = watch_file(tmp_path / "world.jsonl")
    assert path.name == "world.jsonl.watches.json"
    write_file(path, reg.runtime.values())
    assert path.stat().st_mode & 0o777 == 0o600
    kept, dropped = decode_file(path.read_bytes())
    assert kept == list(reg.runtime.values()) and dropped == []
    data = encode_file([*kept, Watch("w-zz", "x", 0.5, 0.4)]).replace(b'"enter": 0.6', b'"enter": 0.3')
    kept2, dropped2 = decode_file(data)  # a bad entry (bad thresholds, bad id) is dropped, the rest kept
    assert [w.phrase for w in kept2] == ["b", "c"] and len(dropped2) == 2
    with pytest.raises(ValueError):
        decode_file(b"{not json")
    fresh = WatchRegistry([], max_per_scope=1, max_scopes=2)
    assert fresh.restore(kept) == 1 and [w.phrase for w in fresh.runtime.values()] == ["a", "c"]


def test_a_tracker_swaps_watches_in_keeps_their_state_and_applies_them_per_camera():
    D = 16
    rng = np.random.default_rng(0)
    pipeline = PipelineConfig.model_validate({"events": {"max_len_s": None}})
    target, other = unit(rng.normal(size=D)), unit(rng.normal(size=D))
    vocab = Vocabulary(["x"], unit(rng.normal(size=D))[None])
    t = SegmentTracker(pipeline.events, pipeline.encoder, pipeline.cameras, vocab, collections.Counter())
    t0 = 1_700_000_000_000_000_000

    def watch_events(cam: str, i: int, vec: np.ndarray) -> list[tuple[str, str, bool]]:
        out = t.push(quarter_window(cam, i, vec, t0))
        return [(m.cam, m.watch_id, m.active) for m in out if isinstance(m, Event) and m.kind == "watch"]

    w1 = Watch("w-00000001", "p", 0.9, 0.5, "cam1")
    t.set_watch([w1], target[None])
    assert watch_events("cam0", 0, target) == []  # w1 is cam1's only
    assert watch_events("cam1", 0, target) == [("cam1", "w-00000001", True)]
    w2 = Watch("w-00000002", "q", 0.9, 0.5)
    t.set_watch([w1, w2], np.stack([target, target]))  # w1 stays active; w2 starts inactive
    assert watch_events("cam1", 1, target) == [("cam1", "w-00000002", True)]
    assert watch_events("cam0", 1, target) == [("cam0", "w-00000002", True)]
    t.set_watch([w2], target[None])  # w1 removed: no more events for it
    assert watch_events("cam1", 2, other) == [("cam1", "w-00000002", False)]
    assert "w-00000001" not in t.streams["cam1"].watch_active


def test_a_watch_record_names_its_watch_and_old_records_read_as_none():
    rec = {
        "kind": "watch",
        "camera": "cam0",
        "segment_id": 1,
        "start_ns": 0,
        "end_ns": 1,
        "start_s": 0.0,
        "end_s": 1.0,
        "labels": [{"label": "w", "score": 0.9}],
        "watch": "w",
        "active": True,
    }
    assert check_record(dict(rec))["watch_id"] is None
    assert check_record(dict(rec, watch_id="w-0000000a"))["watch_id"] == "w-0000000a"
    with pytest.raises(ValueError):
        check_record(dict(rec, watch_id=5))


# -- real nodes --------------------------------------------------------------------------------------------


async def rpc_error(rpc: RpcClient, method: str, params: dict) -> str:
    with pytest.raises(RpcError) as err:
        await rpc.call(method, params)
    return err.value.code


async def next_watch_events(sub, n: int, timeout: float = 20) -> list[Event]:
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            env = await sub.recv()
            if isinstance(env.msg, Event) and env.msg.kind == "watch":
                out.append(env.msg)
    return out


async def quiet(sub, node: EventsNode, embeddings: int) -> list[Event]:
    """Watch events still arriving once the node has handled `embeddings` windows (and a little after)."""
    await wait_for(lambda: node.counters["embeddings"] >= embeddings, 10, 0.02)
    out = []
    try:
        async with asyncio.timeout(0.3):
            while True:
                env = await sub.recv()
                if isinstance(env.msg, Event) and env.msg.kind == "watch":
                    out.append(env.msg)
    except TimeoutError:
        return out


async def test_watch_rpc_checks_bounds_and_lists(runtime_dir, random_checkpoint):
    config = node_config(
        runtime_dir,
        random_checkpoint,
        events={"watch": [{"label": CONFIGURED, "enter": 0.9, "leave": 0.5}]},
        world={"max_watches": 2, "max_cameras": 2},
    )
    async with (
        bus_up(config, ["watches/"]) as (pub, sub),
        started(WorldNode, config),
        RpcClient(config.bus, timeout=5, retries=0) as rpc,
    ):
        for bad in [
            {},
            {"phrase": ""},
            {"phrase": "   "},
            {"phrase": "x" * 201},
            {"phrase": 5},
            {"phrase": "p", "enter": 0.3, "leave": 0.4},
            {"phrase": "p", "enter": 1.5},
            {"phrase": "p", "leave": -2},
            {"phrase": "p", "enter": True},
            {"phrase": "p", "enter": "high"},
            {"phrase": "p", "camera": "cam 0"},
            {"phrase": "p", "camera": "c" * 65},
            {"phrase": "p", "camera": 3},
        ]:
            assert await rpc_error(rpc, "watch", bad) == "bad_request", bad
        w = await rpc.call("watch", {"phrase": f"  {PHRASE} ", "camera": "cam1"})
        assert w == {"id": w["id"], "phrase": PHRASE, "camera": "cam1", "enter": 0.5, "leave": 0.4, "source": "runtime"}
        again = await rpc.call("watch", {"phrase": PHRASE, "camera": "cam1", "enter": 0.8, "leave": 0.1})
        assert again == dict(w, enter=0.8, leave=0.1)
        other = await rpc.call("watch", {"phrase": "b", "camera": "cam1", "enter": -1, "leave": -1})
        assert await rpc_error(rpc, "watch", {"phrase": "c", "camera": "cam1"}) == "limit"
        everywhere = await rpc.call("watch", {"phrase": "c"})
        assert everywhere["camera"] is None and len({w["id"], other["id"], everywhere["id"]}) == 3
        await rpc.call("watch", {"phrase": "c", "camera": "cam2"})
        assert await rpc_error(rpc, "watch", {"phrase": "c", "camera": "cam3"}) == "limit"  # max_cameras + 1 scopes

        configured = {
            "id": f"config:{CONFIGURED}",
            "phrase": CONFIGURED,
            "camera": None,
            "enter": 0.9,
            "leave": 0.5,
            "source": "config",
        }
        listed = (await rpc.call("watches", {}))["watches"]
        assert listed[0] == configured and len(listed) == 5
        on_cam1 = (await rpc.call("watches", {"camera": "cam1"}))["watches"]
        assert [x["id"] for x in on_cam1] == [configured["id"], w["id"], other["id"], everywhere["id"]]
        on_cam0 = (await rpc.call("watches", {"camera": "cam0"}))["watches"]
        assert [x["id"] for x in on_cam0] == [configured["id"], everywhere["id"]]
        assert await rpc_error(rpc, "watches", {"camera": 5}) == "bad_request"

        assert await rpc.call("unwatch", {"id": other["id"]}) == {"id": other["id"], "removed": True}
        assert await rpc.call("unwatch", {"id": other["id"]}) == {"id": other["id"], "removed": False}
        assert (await rpc.call("unwatch", {"id": configured["id"]}))["removed"] is False  # set in the config
        assert await rpc_error(rpc, "unwatch", {"id": 5}) == "bad_request"
        assert await rpc_error(rpc, "unwatch", {}) == "bad_request"

        listed = (await rpc.call("watches", {}))["watches"]
        assert len(listed) == 4
        async with asyncio.timeout(5):  # the whole list, as `watches` gives it, on watches/all
            while True:
                env = await sub.recv()
                if isinstance(env.msg, WatchList) and [x.model_dump() for x in env.msg.watches] == listed:
                    break
        assert env.topic == "watches/all"


async def test_runtime_watches_reach_events_per_camera_and_survive_restarts(runtime_dir, random_checkpoint, text_model):
    persist = runtime_dir / "world.jsonl"
    config = node_config(
        runtime_dir,
        random_checkpoint,
        events={
            "labels": ["alpha", "beta", "gamma"],
            "max_len_s": None,
            "watch": [{"label": CONFIGURED, "enter": 0.99, "leave": 0.5}],
        },
        world={"persist": str(persist)},
    )
    p_vec, c_vec = embed(text_model, [PHRASE, CONFIGURED])
    b = unit(np.random.default_rng(0).normal(size=p_vec.shape))
    t0 = time.time_ns()
    sent = collections.Counter()

    def feed(cam: str, vecs: list[np.ndarray]) -> int:
        for v in vecs:
            pub.publish_nowait(f"embeddings/{cam}", quarter_window(cam, sent[cam], v, t0))
            sent[cam] += 1
        return len(vecs)

    async with (
        embed_server(config, text_model),
        bus_up(config, ["events/"]) as (pub, sub),
        RpcClient(config.bus, timeout=5, retries=0) as rpc,
    ):
        async with started(WorldNode, config):
            w = await rpc.call("watch", {"phrase": PHRASE, "camera": "cam1", "enter": 0.9, "leave": 0.5})
            async with started(EventsNode, config) as events:
                assert [x.id for x in events.runtime_watch] == [w["id"]]  # asked the world in setup
                n = feed("cam0", [b, c_vec, b, p_vec, b]) + feed("cam1", [b, p_vec, b])
                got = await next_watch_events(sub, 4)
                assert {(e.cam, e.watch_id, e.watch, e.active) for e in got} == {
                    ("cam0", f"config:{CONFIGURED}", CONFIGURED, True),
                    ("cam0", f"config:{CONFIGURED}", CONFIGURED, False),
                    ("cam1", w["id"], PHRASE, True),
                    ("cam1", w["id"], PHRASE, False),
                }
                assert await quiet(sub, events, n) == []  # none on cam0, which the watch does not name
                assert events.counters["watch_items_rejected"] == 0
                now = (await rpc.call("now", {}))["cameras"]
                assert now["cam1"]["active_watch"] == []
            async with started(EventsNode, config) as events:  # a restarted events node gets the list
                assert [x.id for x in events.runtime_watch] == [w["id"]]
                feed("cam1", [b, p_vec])
                (on,) = await next_watch_events(sub, 1)
                assert (on.cam, on.watch_id, on.active) == ("cam1", w["id"], True)
        # the world is gone: a new events node starts without the list and waits for the broadcast
        async with started(EventsNode, config) as events:
            assert events.runtime_watch == ()
            async with started(WorldNode, config) as world:  # restores the list from <persist>.watches.json
                assert world.counters["watches_restored"] == 1
                await wait_for(lambda: [x.id for x in events.runtime_watch] == [w["id"]], 10)
                n = feed("cam1", [b, p_vec])
                (on,) = await next_watch_events(sub, 1)
                assert (on.cam, on.watch_id, on.active) == ("cam1", w["id"], True)
                async with asyncio.timeout(5):
                    while (await rpc.call("now", {"camera": "cam1"}))["cameras"]["cam1"]["active_watch"] != [PHRASE]:
                        await asyncio.sleep(0.05)
                assert await rpc.call("unwatch", {"id": w["id"]}) == {"id": w["id"], "removed": True}
                now = (await rpc.call("now", {"camera": "cam1"}))["cameras"]["cam1"]
                assert now["active_watch"] == []  # no event will turn it off any more
                await wait_for(lambda: events.runtime_watch == (), 10)
                n += feed("cam1", [b, p_vec, b])
                assert await quiet(sub, events, n) == []
    assert decode_file(watch_file(persist).read_bytes()) == ([], [])
