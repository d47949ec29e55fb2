"""The world's persist file and memory under crashes, corruption and hostile peers.

Damage at every byte offset of a small file is checked on the loader itself (`load_records`, the function
the node restores with); real nodes on a real bus then show that setup survives a corrupted file, that a
malformed embedding on one camera leaves search working for all, that the file is private, compacted and
reloads to the same memory, that invented camera names stay bounded, and that a restarted events node
numbers its segments above the ones it gave before.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import numpy as np
import pytest
from structlog.testing import capture_logs

from bus.logs import get_logger
from bus.rpc import RpcClient, RpcError
from perception.messages import Caption, Embedding, Event, LabelScore
from perception.nodes.events import EventsNode
from perception.nodes.world import WorldNode
from perception.nodes.world_store import MAX_LINE_BYTES, encode_line, load_records

from .conftest import wait_for
from .harness import collect, embed, embed_server, node_config, running
from .streams import quarter_window, unit

DIM = 32  # tests.support.SMALL_MODEL's embed_dim


def span(cam: str, k: int, t0: int) -> dict:
    return dict(
        cam=cam,
        segment_id=k,
        start_ns=t0 + k * 10**9,
        end_ns=t0 + (k + 1) * 10**9,
        start_s=float(k),
        end_s=float(k + 1),
    )


def segment(cam: str, k: int, t0: int, emb: np.ndarray | None, label: str = "x") -> Event:
    return Event(kind="segment", labels=[LabelScore(label=label, score=0.5)], embedding=emb, **span(cam, k, t0))


def caption(cam: str, k: int, t0: int, text: str) -> Caption:
    s = span(cam, k, t0)
    return Caption(text=text, t_capture_ns=s["end_ns"], latency_ms=3.0, **s)


window = quarter_window


def small_file_records(dim: int) -> list[tuple[dict, np.ndarray | None]]:
    """Five records of every kind, two cameras, one segment without an embedding, non-ASCII text."""
    rng = np.random.default_rng(1)
    t0 = 1_700_000_000_000_000_000
    base = dict(start_ns=t0, end_ns=t0 + 10**9, start_s=0.0, end_s=1.0)
    return [
        (
            {"kind": "segment", "camera": "cam0", "segment_id": 7, **base, "labels": [{"label": "a", "score": 0.5}]},
            unit(rng.normal(size=dim)),
        ),
        (
            {
                "kind": "caption",
                "camera": "cam0",
                "segment_id": 7,
                "text": "the red circle — moves",
                **base,
                "latency_ms": 4.5,
            },
            None,
        ),
        (
            {
                "kind": "watch",
                "camera": "cam0",
                "segment_id": 8,
                **base,
                "labels": [{"label": "w", "score": 0.9}],
                "watch": "w",
                "active": True,
                "watch_id": "config:w",
            },
            None,
        ),
        ({"kind": "segment", "camera": "cam1", "segment_id": 1, **base, "labels": []}, None),
        (
            {"kind": "caption", "camera": "cam1", "segment_id": 1, "text": "a blue square", **base, "latency_ms": 1.0},
            None,
        ),
    ]


def assert_same(got: list, want: list) -> None:
    assert [r for r, _ in got] == [r for r, _ in want]
    for (_, a), (_, b) in zip(got, want):
        assert (a is None and b is None) or np.array_equal(a, b)


def test_every_byte_offset_of_truncation_or_garbage_keeps_exactly_the_intact_lines(tmp_path):
    records = small_file_records(8)
    lines = [encode_line(r, e) for r, e in records]
    data = b"".join(lines)
    ends = np.cumsum([len(x) for x in lines])  # offset just past each line's newline
    starts = ends - [len(x) for x in lines]
    path = tmp_path / "world.jsonl"

    def load(content: bytes) -> tuple[list, list]:
        path.write_bytes(content)
        return load_records(path, 8)

    for offset in range(len(data) + 1):  # a crash after `offset` bytes reached the disk
        kept, dropped = load(data[:offset])
        whole = [i for i in range(len(lines)) if ends[i] - 1 <= offset]  # its newline may be what is missing
        assert_same(kept, [records[i] for i in whole])
        torn = any(starts[i] < offset < ends[i] - 1 for i in range(len(lines)))
        assert len(dropped) == int(torn), offset
    for garbage in (b"\xff", b"{", b"0"):
        for offset in range(len(data)):
            if data[offset : offset + 1] == garbage:
                continue
            kept, dropped = load(data[:offset] + garbage + data[offset + 1 :])
            hit = int(np.searchsorted(ends, offset, side="right"))  # the line holding the byte
            lost = {hit, hit + 1} if offset == ends[hit] - 1 else {hit}  # a newline joins two lines
            assert_same(kept, [records[i] for i in range(len(lines)) if i not in lost])
            assert len(dropped) == 1, (garbage, offset)


def test_every_kind_of_bad_line_is_dropped_with_its_line_number(tmp_path):
    (seg, emb), (cap, _), *_ = small_file_records(8)
    legacy = json.dumps(dict(cap, embedding=None)) + "\n"  # a file from before checksums: still read
    wrong_dim = encode_line(seg, np.ones(9, np.float32))
    nan_line = json.dumps(dict(seg, embedding=[float("nan")] * 8)) + "\n"
    bad = [
        b"null\n",
        b"[]\n",
        b"42\n",
        b'"text"\n',
        b'{"kind": "segment"}\n',
        json.dumps(dict(cap, segment_id=True)).encode() + b"\n",  # a bool is no id
        json.dumps(dict(cap, segment_id=-1)).encode() + b"\n",
        json.dumps(dict(cap, start_ns=2**70)).encode() + b"\n",  # beyond int64
        json.dumps(dict(cap, start_s=10**400)).encode() + b"\n",
        json.dumps(dict(cap, extra=1)).encode() + b"\n",
        json.dumps(dict(cap, camera=None)).encode() + b"\n",
        json.dumps(dict(cap, embedding=[1.0] * 8)).encode() + b"\n",  # only segments carry one
        json.dumps(dict(seg, labels=[{"label": "a"}])).encode() + b"\n",
        json.dumps(dict(seg, embedding=["a"] * 8)).encode() + b"\n",
        wrong_dim,
        nan_line.encode(),
        b"\xff\xfe{}\n",
        b"[" * 200_000 + b"\n",
        b"x" * (MAX_LINE_BYTES + 10) + b"\n",
    ]
    content = [encode_line(seg, emb), *bad, legacy.encode(), b"\n", b"{torn"]
    path = tmp_path / "world.jsonl"
    path.write_bytes(b"".join(content))
    kept, dropped = load_records(path, 8)
    assert_same(kept, [(seg, emb), (cap, None)])
    assert [n for n, _ in dropped] == [*range(2, 2 + len(bad)), len(content)]  # the blank line is no damage
    assert all(reason for _, reason in dropped)


async def test_a_node_starts_on_a_corrupted_file_keeps_what_is_valid_and_says_what_it_dropped(
    runtime_dir, random_checkpoint, text_model
):
    persist = runtime_dir / "world.jsonl"
    t0 = time.time_ns()
    records = [(r | {"start_ns": t0, "end_ns": t0 + 1}, e) for r, e in small_file_records(DIM)]
    lines = [encode_line(r, e) for r, e in records]
    # a null line, garbage, and a torn last line (lines 1, 3 and 8)
    persist.write_bytes(b"null\n" + lines[0] + b"\xff\xff\n" + b"".join(lines[1:]) + lines[0][:40])
    os.chmod(persist, 0o644)
    config = node_config(runtime_dir, random_checkpoint, world={"persist": str(persist)})
    get_logger("test")  # logging is configured before it is captured
    with capture_logs() as logs:
        async with running(WorldNode, config, []) as (node, pub, sub), embed_server(config, text_model):
            assert node.counters["persist_bad_lines"] == 3 and node.counters["restored"] == len(records)
            async with RpcClient(config.bus, timeout=10, retries=1) as rpc:
                hist = await rpc.call("history", {})
                assert sorted(r["segment_id"] for r in hist["items"]) == sorted(r["segment_id"] for r, _ in records)
                found = (await rpc.call("search", {"text": "anything", "k": 5}))["results"]
                assert [(r["camera"], r["segment_id"]) for r in found] == [("cam0", 7)]  # the one with an embedding
    [summary] = [e for e in logs if e["event"] == "dropped bad lines from the world memory file"]
    assert summary["dropped"] == 3 and summary["kept"] == len(records)
    assert [x.split(":")[0] for x in summary["first"]] == ["1", "3", str(len(records) + 3)]
    assert persist.stat().st_mode & 0o777 == 0o600  # narrowed (the compacted file is new, and private)
    kept, dropped = load_records(persist, DIM)  # compacted at start: only what was valid is left
    assert len(kept) == len(records) and dropped == []


async def test_a_wrong_dimension_embedding_is_rejected_and_search_works_for_every_camera(
    runtime_dir, random_checkpoint, text_model
):
    config = node_config(runtime_dir, random_checkpoint)
    t0 = time.time_ns()
    async with running(WorldNode, config, []) as (node, pub, sub), embed_server(config, text_model):
        texts = {"cam0": "the red circle moves left", "cam1": "the blue square grows"}
        embs = dict(zip(texts, embed(text_model, list(texts.values()))))
        for cam, e in embs.items():
            pub.publish_nowait(f"events/{cam}", segment(cam, 0, t0, e))
        pub.publish_nowait("events/cam1", segment("cam1", 1, t0, np.ones(DIM + 1, np.float32)))
        pub.publish_nowait("events/cam2", segment("cam2", 0, t0, np.full(DIM, np.nan, np.float32)))
        pub.publish_nowait(
            "events/cam1",
            Event(
                cam="cam1",
                kind="watch",
                segment_id=2,
                start_ns=t0,
                end_ns=t0,
                labels=[LabelScore(label="w", score=0.5)],
            ),
        )  # no phrase
        await wait_for(lambda: node.counters["stored.Event"] + node.counters["rejected.Event"] == 5, 20)
        assert node.counters["stored.Event"] == 2 and node.counters["rejected.Event"] == 3
        async with RpcClient(config.bus, timeout=10, retries=1) as rpc:
            for cam, text in texts.items():
                found = (await rpc.call("search", {"text": text, "k": 2}))["results"]
                assert {r["camera"] for r in found} == {"cam0", "cam1"} and found[0]["camera"] == cam
                found = (await rpc.call("search", {"text": text, "camera": cam}))["results"]
                assert [(r["camera"], r["segment_id"]) for r in found] == [(cam, 0)]
            assert len((await rpc.call("history", {"camera": "cam1"}))["items"]) == 1
            with pytest.raises(RpcError) as err:
                await rpc.call("now", {"camera": "cam2"})  # nothing of it was stored
            assert err.value.code == "unknown_camera"


async def test_malformed_query_params_are_bad_requests(runtime_dir, random_checkpoint, text_model):
    config = node_config(runtime_dir, random_checkpoint)
    t0 = time.time_ns()
    async with running(WorldNode, config, []) as (node, pub, sub), embed_server(config, text_model):
        e = embed(text_model, ["x"])[0]
        pub.publish_nowait("events/cam0", segment("cam0", 5, t0, e))
        # an events node that restarted numbers from a new, larger base: its watch events carry it
        pub.publish_nowait(
            "events/cam0",
            Event(
                cam="cam0",
                kind="watch",
                segment_id=9000,
                start_ns=t0,
                end_ns=t0,
                watch="w",
                active=True,
                labels=[LabelScore(label="w", score=0.5)],
            ),
        )
        pub.publish_nowait("embeddings/cam0", window("cam0", 3, e, t0))
        await wait_for(lambda: node.counters["stored.Embedding"] == 1 and node.counters["stored.Event"] == 2, 20)
        bad = [
            ("now", {"camera": 5}),
            ("history", {"camera": ["cam0"]}),
            ("history", {"since_ns": "yesterday"}),
            ("history", {"until_ns": True}),
            ("history", {"kinds": "caption"}),
            ("history", {"kinds": [1]}),
            ("history", {"limit": 0}),
            ("history", {"limit": 10_001}),
            ("history", {"limit": "5"}),
            ("history", {"limit": 2.5}),
            ("search", {"text": "x" * 1001}),
            ("search", {"text": 3}),
            ("search", {"text": "x", "k": 0}),
            ("search", {"text": "x", "k": 101}),
            ("search", {"text": "x", "k": "1"}),
            ("search", {"text": "x", "camera": {}}),
        ]
        async with RpcClient(config.bus, timeout=10, retries=1) as rpc:
            for method, params in bad:
                with pytest.raises(RpcError) as err:
                    await rpc.call(method, params)
                assert err.value.code == "bad_request", (method, params, err.value)
            assert len((await rpc.call("history", {"limit": 1, "since_ns": 0, "kinds": ["segment"]}))["items"]) == 1
            assert len((await rpc.call("search", {"text": "x" * 1000, "k": 100}))["results"]) == 1
            now = (await rpc.call("now", {"camera": "cam0"}))["cameras"]["cam0"]
            assert now["last_segment"]["segment_id"] == 5 and now["current_segment"]["segment_id"] == 9000
        assert node.rpc.counters["handler_errors"] == 0


def memory_snapshot(node: WorldNode) -> dict:
    out = {}
    for name, mem in node.memory.items():
        embs = {sid: e.tolist() for sid, (_, e) in mem.segment_embs.items()}
        out[name] = (list(mem.items), embs, mem.latest_caption, dict(mem.active_watch.items()))
    return out


async def test_the_file_is_private_compacted_and_reloads_to_the_same_memory(runtime_dir, random_checkpoint):
    persist = runtime_dir / "state" / "world.jsonl"
    max_items, compact_every, n = 10, 8, 60
    config = node_config(
        runtime_dir,
        random_checkpoint,
        world={"persist": str(persist), "max_items": max_items, "compact_every": compact_every, "fsync_interval_s": 0},
    )
    t0 = time.time_ns()
    rng = np.random.default_rng(0)
    async with running(WorldNode, config, []) as (node, pub, sub):
        assert persist.stat().st_mode & 0o777 == 0o600
        for k in range(n):
            for cam in ("cam0", "cam1"):
                pub.publish_nowait(f"events/{cam}", segment(cam, k, t0, unit(rng.normal(size=DIM))))
                pub.publish_nowait(f"captions/{cam}", caption(cam, k, t0, f"caption {cam} {k}"))
                pub.publish_nowait(
                    f"events/{cam}",
                    Event(
                        cam=cam,
                        kind="watch",
                        segment_id=k + 1,
                        start_ns=t0,
                        end_ns=t0 + k * 10**9,
                        watch=f"w{k % 3}",
                        active=k % 2 == 0,
                        labels=[LabelScore(label=f"w{k % 3}", score=0.5)],
                    ),
                )
            await asyncio.sleep(0.005)
        await wait_for(lambda: node.counters["stored.Event"] + node.counters["stored.Caption"] == 6 * n, 30)
        assert node.counters["compactions"] > 1  # at start, then as the file grew
        live = sum(len(m.items) for m in node.memory.values())
        assert live == 2 * max_items
        assert len(persist.read_bytes().splitlines()) < 2 * live + compact_every  # not 6 * n
        assert all(len(m.segment_embs) <= max_items for m in node.memory.values())
        before = memory_snapshot(node)
    assert persist.stat().st_mode & 0o777 == 0o600 and not persist.with_name("world.jsonl.tmp").exists()
    async with running(WorldNode, config, []) as (node, pub, sub):
        assert node.counters["persist_bad_lines"] == 0
        assert memory_snapshot(node) == before


async def test_invented_cameras_stay_bounded_and_configured_ones_are_kept(runtime_dir, random_checkpoint, text_model):
    cameras = [{"name": "cam0"}, {"name": "cam1"}]
    config = node_config(
        runtime_dir,
        random_checkpoint,
        cameras=cameras,
        world={"max_cameras": 4},
        events={"max_cameras": 3, "max_len_s": None},
    )
    t0 = time.time_ns()
    invented = [f"x{i}" for i in range(20)]
    async with running(WorldNode, config, []) as (node, pub, sub):
        for cam in ["cam0", "cam1", *invented]:
            pub.publish_nowait(f"captions/{cam}", caption(cam, 0, t0, "hello"))
        await wait_for(lambda: node.counters["stored.Caption"] == 2 + len(invented), 20)
        assert len(node.memory) == 4 and {"cam0", "cam1"} <= set(node.memory)
        assert set(node.memory) - {"cam0", "cam1"} == set(invented[-2:])  # the most recently heard
        assert node.counters["cameras_evicted"] == len(invented) - 2
    async with embed_server(config, text_model), running(EventsNode, config, []) as (node, pub, sub):
        vec = embed(text_model, ["alpha"])[0]
        for cam in ["cam0", *invented, "cam1"]:
            pub.publish_nowait(f"embeddings/{cam}", window(cam, 0, vec, t0))
        await wait_for(lambda: node.counters["embeddings"] == 2 + len(invented), 20)
        assert len(node.streams) == 3 and {"cam0", "cam1"} <= set(node.streams)
        assert node.counters["streams_evicted"] == len(invented) - 1


async def test_a_restarted_events_node_numbers_its_segments_above_the_first_runs(
    runtime_dir, random_checkpoint, text_model
):
    # cam0 at 30 fps with stride 8: one window per 0.267 s; a forced boundary every 1 s of stream time
    config = node_config(
        runtime_dir,
        random_checkpoint,
        events={"threshold": 1000.0, "min_len_s": 0.5, "max_len_s": 1.0, "top_labels": 1},
    )
    step_ns = round(8 / 30 * 1e9)

    def feed(pub, vec: np.ndarray, t0: int, n: int) -> None:
        for i in range(n):
            end = t0 + (i + 1) * step_ns
            pub.publish_nowait(
                "embeddings/cam0",
                Embedding(
                    cam="cam0",
                    window=i,
                    start_ns=end - step_ns,
                    end_ns=end,
                    start_s=i * step_ns / 1e9,
                    end_s=(i + 1) * step_ns / 1e9,
                    model_id="test",
                    t_capture_ns=end,
                    embedding=vec,
                ),
            )

    async def run(t0s: list[int], n: int) -> list[int]:
        async with (
            embed_server(config, text_model),
            running(EventsNode, config, ["events/", "decode/"]) as (node, pub, sub),
        ):
            vec = embed(text_model, ["alpha"])[0]
            for t0 in t0s:
                feed(pub, vec, t0, n)
            await wait_for(lambda: node.counters["embeddings"] == n * len(t0s), 20)
            assert node.counters["segments"] >= 2 * len(t0s)  # 3.2 s of stream per burst, cut every 1 s
            envs = await collect(sub, "", 2 * node.counters["segments"], timeout=30)  # event + decode request
            segs = [e.msg.segment_id for e in envs if isinstance(e.msg, Event)]
            decodes = [e.msg.segment_id for e in envs if e.topic.startswith("decode/")]
            assert segs == decodes
            return segs

    now = time.time_ns()
    first = await run([now], 12)
    # the second run's camera restarts (its times go back): the ids keep counting through the reset
    second = await run([now + 10**10, now], 12)
    assert first == list(range(first[0], first[0] + len(first)))
    assert second == list(range(second[0], second[0] + len(second)))
    assert min(second) > max(first)
