"""The encoder node in-process over a real bus: windows per camera, batching, stale-frame dropping, ask."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from bus.rpc import RpcClient, RpcError
from perception.messages import Embedding, Frame
from perception.nodes.encoder import EncoderNode
from perception.nodes.workers import encoder_endpoint

from .harness import collect, node_config, running


def frame(cam: str, i: int, size: int = 32) -> Frame:
    rng = np.random.default_rng(i)
    return Frame(
        cam=cam,
        index=i,
        t_capture_ns=time.time_ns(),
        stream_s=i / 30,
        image=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
    )


async def test_windows_per_camera_and_ask(runtime_dir, random_checkpoint):
    config = node_config(runtime_dir, random_checkpoint, encoder={"frame_step": 2, "stride_frames": 4})
    async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
        assert node.W == 4 and node.span == 7  # 4 model frames, every 2nd camera frame
        for i in range(7):  # exactly one window per camera: frames 0..6
            for cam in ("camA", "camB"):
                pub.publish_nowait(f"frames/{cam}", frame(cam, i))
            await asyncio.sleep(0.02)
        envs = await collect(sub, "embeddings/", 2, timeout=60)
        got = {e.msg.cam: e.msg for e in envs}
        assert set(got) == {"camA", "camB"}
        for emb in got.values():
            assert isinstance(emb, Embedding) and emb.window == 0
            assert emb.embedding.shape == (32,) and emb.embedding.dtype == np.float32
            assert np.linalg.norm(emb.embedding) == pytest.approx(1.0, abs=1e-4)
            assert emb.start_s == pytest.approx(0.0) and emb.end_s == pytest.approx(6 / 30)
            assert emb.model_id.startswith("tiny@small:")
        async with RpcClient(config.bus, endpoint=encoder_endpoint(config), timeout=30, retries=0) as rpc:
            ans = await rpc.call(
                "ask", {"question": "what colour is the circle?", "choices": ["red", "blue"], "camera": "camB"}
            )
            assert ans["camera"] == "camB" and ans["answer"] in ("red", "blue")
            assert set(ans["scores"]) == {"red", "blue"} and ans["window"] == 0
            assert ans["answer"] == max(ans["scores"], key=ans["scores"].get)
            text = await rpc.call("ask", {"question": "what is happening?"})
            assert isinstance(text["text"], str)
            with pytest.raises(RpcError) as err:
                await rpc.call("ask", {"question": ""})
            assert err.value.code == "bad_request"
            with pytest.raises(RpcError) as err:
                await rpc.call("ask", {"question": "what?", "camera": "nope"})
            assert err.value.code == "not_ready"


async def test_behind_drops_stale_windows_and_stays_bounded(runtime_dir, random_checkpoint):
    config = node_config(runtime_dir, random_checkpoint, encoder={"frame_step": 1, "stride_frames": 1})
    async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
        # ~500 fps with a window due at every frame: far more than the model computes
        for i in range(300):
            pub.publish_nowait("frames/cam0", frame("cam0", i))
            await asyncio.sleep(0.002)
        cam = node.cams["cam0"]
        newest = cam.last_index
        assert newest >= 250  # most frames arrived (a few may be superseded on the `latest` topic)
        last = None
        async with asyncio.timeout(60):  # it catches up with the newest frame, not with a backlog
            while last is None or last.msg.end_s < newest / 30 - 1e-6:
                last = (await collect(sub, "embeddings/", 1, timeout=60))[0]
        assert len(cam.frames) <= node.span + node.stride  # the ring never grows
        due = newest - node.span + 2  # windows that became due
        assert node.counters["windows"] < due  # not every due window was computed...
        assert node.counters["windows_dropped"] > 0  # ...the stale ones were dropped and counted
        assert node.counters["windows"] + node.counters["windows_dropped"] <= due


async def test_a_bad_frame_is_counted_not_fatal(runtime_dir, random_checkpoint):
    config = node_config(runtime_dir, random_checkpoint, encoder={"frame_step": 1, "stride_frames": 2})
    async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
        bad = Frame(cam="cam0", index=0, t_capture_ns=1, image=np.zeros((32, 32), dtype=np.uint8))  # no channels
        pub.publish_nowait("frames/cam0", bad)
        for i in range(1, 4):
            pub.publish_nowait("frames/cam0", bad.model_copy(update={"index": i}))
        await asyncio.sleep(1.0)
        for i in range(10, 16):
            pub.publish_nowait("frames/cam0", frame("cam0", i))
            await asyncio.sleep(0.02)
        env = (await collect(sub, "embeddings/", 1, timeout=60))[0]
        assert env.msg.cam == "cam0"
        assert node.counters["errors"] >= 1  # the bad windows were counted and logged, then skipped


async def test_a_window_holds_exactly_its_frames_and_a_gap_takes_the_nearest_earlier_one(
    runtime_dir, random_checkpoint
):
    import torch

    config = node_config(runtime_dir, random_checkpoint, encoder={"frame_step": 2, "stride_frames": 8})
    async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
        sent = {i: frame("cam0", i) for i in range(7)}
        for i in range(7):  # window 0 = frames 0, 2, 4, 6
            pub.publish_nowait("frames/cam0", sent[i])
            await asyncio.sleep(0.02)
        first = (await collect(sub, "embeddings/", 1, timeout=60))[0].msg
        for i in list(range(7, 12)) + [13, 14, 15]:  # window 1 = frames 8, 10, 12, 14 ... but 12 never came
            sent[i] = frame("cam0", i)
            pub.publish_nowait("frames/cam0", sent[i])
            await asyncio.sleep(0.02)
        second = (await collect(sub, "embeddings/", 1, timeout=60))[0].msg
        assert node.counters["frames_substituted"] == 1

        def expected(indices: list[int]) -> np.ndarray:
            clip = torch.from_numpy(np.stack([sent[i].image for i in indices]))[None].permute(0, 1, 4, 2, 3)
            return node.model.predict(node.model.encode_video(clip), "")[0].numpy()

        np.testing.assert_allclose(first.embedding, expected([0, 2, 4, 6]), atol=1e-4)
        np.testing.assert_allclose(second.embedding, expected([8, 10, 11, 14]), atol=1e-4)  # 12 -> 11
        assert (second.start_s, second.end_s) == (pytest.approx(8 / 30), pytest.approx(14 / 30))


async def test_a_window_mixing_frame_sizes_is_skipped_and_counted(runtime_dir, random_checkpoint):
    config = node_config(runtime_dir, random_checkpoint, encoder={"frame_step": 1, "stride_frames": 4})
    async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
        for i in range(4):  # window 0: frames 0..3, one of them 24 px instead of 32
            pub.publish_nowait("frames/cam0", frame("cam0", i, size=24 if i == 2 else 32))
            await asyncio.sleep(0.02)
        for i in range(4, 8):  # window 1: frames 4..7, all 32 px
            pub.publish_nowait("frames/cam0", frame("cam0", i))
            await asyncio.sleep(0.02)
        emb = (await collect(sub, "embeddings/", 1, timeout=60))[0].msg
        assert emb.start_s == pytest.approx(4 / 30)
        assert node.counters["errors.window"] == 1 and node.counters["windows"] == 1


async def test_the_pass_for_configured_synthetic_cameras_is_traced_before_ready(runtime_dir, random_checkpoint):
    """Two 32 px synthetic cameras: batches of 1 and 2 are traced during setup, so the first live windows
    do not wait for a trace (and go stale meanwhile)."""
    cams = [{"name": n, "type": "synthetic", "size": 32} for n in ("camA", "camB")]
    config = node_config(runtime_dir, random_checkpoint, cameras=cams, encoder={"frame_step": 2, "stride_frames": 4})
    async with running(EncoderNode, config, ["embeddings/"]) as (node, _pub, _sub):
        assert node.ready.is_set() and node.counters["frames"] == 0
        assert {shape[0] for shape, fn in node.runner.traced.items() if fn is not None} == {1, 2}
        assert all(shape[1:] == (node.W, 3, 32, 32) for shape in node.runner.traced)


# -- hostile input ----------------------------------------------------------------------------------------


async def first_window(node, pub, sub, cam: str = "cam0") -> int:
    """Feed `cam` until its first embedding is out; the next frame index to send."""
    for i in range(node.span):
        pub.publish_nowait(f"frames/{cam}", frame(cam, i))
        await asyncio.sleep(0.02)
    await collect(sub, "embeddings/", 1, timeout=60)
    return node.span


async def test_ask_bounds_its_question_and_choices(runtime_dir, random_checkpoint):
    config = node_config(runtime_dir, random_checkpoint, encoder={"frame_step": 1, "stride_frames": 4})
    async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
        await first_window(node, pub, sub)
        async with RpcClient(config.bus, endpoint=encoder_endpoint(config), timeout=30, retries=0) as rpc:
            for params, why in [
                ({"question": "x" * 100_000}, "100000 chars"),
                ({"question": "which?", "choices": [f"c{i}" for i in range(1000)]}, "1000 'choices'"),
                ({"question": "which?", "choices": ["red", "b" * 201]}, "201 chars"),
                ({"question": "which?", "camera": ["cam0"]}, "camera"),
            ]:
                with pytest.raises(RpcError) as err:
                    await rpc.call("ask", params)
                assert err.value.code == "bad_request" and why in err.value.message
            ok = await rpc.call("ask", {"question": "q" * 1000, "choices": [f"c{i}" for i in range(64)]})
            assert len(ok["scores"]) == 64  # the limits themselves are fine
        assert node.counters["asks"] == 1


async def test_embed_gives_the_models_text_embeddings_and_bounds_its_texts(runtime_dir, random_checkpoint):
    """`embed` (what the events and world nodes use instead of a model of their own) needs no window."""
    config = node_config(runtime_dir, random_checkpoint, encoder={"frame_step": 1, "stride_frames": 4})
    async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
        texts = ["the red circle moves left", "the blue square grows", "the red circle moves left"]
        async with RpcClient(config.bus, endpoint=encoder_endpoint(config), timeout=30, retries=0) as rpc:
            got = await rpc.call("embed", {"texts": texts})
            for params, why in [
                ({"texts": "a red circle"}, "list"),
                ({"texts": ["ok"] * 257}, "at most 256"),
                ({"texts": ["x" * 1001]}, "at most 1000"),
                ({"texts": [""]}, "non-empty"),
            ]:
                with pytest.raises(RpcError) as err:
                    await rpc.call("embed", params)
                assert err.value.code == "bad_request" and why in err.value.message
        emb = np.asarray(got["embeddings"], dtype=np.float32)
        assert emb.shape == (3, 32) and got["dim"] == 32 and got["model_id"] == node.model_id
        np.testing.assert_allclose(emb, node.model.embed_text(texts).numpy(), atol=1e-5)
        assert node.counters["embeds"] == 1 and node.counters["embeds_busy"] == 0


async def test_windows_keep_flowing_while_asks_are_hammered(runtime_dir, random_checkpoint):
    """Asks run on the model thread between window passes, from a bounded queue: a flood of them is
    answered or refused `busy`, and windows are still computed meanwhile."""
    config = node_config(runtime_dir, random_checkpoint, encoder={"frame_step": 1, "stride_frames": 2})
    async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
        i = await first_window(node, pub, sub)
        outcomes: dict[str, int] = {}
        stop = asyncio.Event()

        async def hammer(rpc: RpcClient) -> None:
            while not stop.is_set():
                try:
                    await rpc.call("ask", {"question": "what is happening?", "choices": ["a", "b", "c"]})
                    outcome = "ok"
                except RpcError as exc:
                    outcome = exc.code
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                await asyncio.sleep(0)

        async with RpcClient(config.bus, endpoint=encoder_endpoint(config), timeout=60, retries=0) as rpc:
            hammers = [asyncio.create_task(hammer(rpc)) for _ in range(16)]
            try:
                await wait_until(lambda: outcomes.get("ok", 0) >= 5)  # the flood is on
                windows, asks = node.counters["windows"], node.counters["asks"]
                async with asyncio.timeout(120):
                    while node.counters["windows"] < windows + 5:  # while asks keep coming
                        pub.publish_nowait("frames/cam0", frame("cam0", i))
                        i += 1
                        await asyncio.sleep(0.02)
                asks_during = node.counters["asks"] - asks
            finally:
                stop.set()
                await asyncio.gather(*hammers)
        assert asks_during > 0  # asks were served all along...
        assert set(outcomes) <= {"ok", "busy"}  # ...or refused at once, never timed out or failed
        assert node.asks.qsize() <= 4


async def wait_until(predicate, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_invented_cameras_are_bounded_and_configured_ones_stay(runtime_dir, random_checkpoint):
    cams = [{"name": "cam0", "type": "synthetic", "size": 32}]
    config = node_config(
        runtime_dir,
        random_checkpoint,
        cameras=cams,
        encoder={"frame_step": 1, "stride_frames": 4, "max_cameras": 3, "jit": False},
    )
    async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
        pub.publish_nowait("frames/cam0", frame("cam0", 0))  # the configured camera is seen first (oldest)
        await wait_until(lambda: node.counters["frames"] == 1)
        for k in range(10):  # ten names nobody configured
            pub.publish_nowait(f"frames/x{k}", frame(f"x{k}", 0))
            await wait_until(lambda k=k: node.counters["frames"] == k + 2)
            assert len(node.cams) <= 3
        with node.lock:
            names = set(node.cams.keys())
        assert "cam0" in names and names == {"cam0", "x8", "x9"}
        assert node.counters["cameras_evicted"] == 8
        for i in range(1, node.span):  # the configured camera still makes windows
            pub.publish_nowait("frames/cam0", frame("cam0", i))
            await asyncio.sleep(0.02)
        assert (await collect(sub, "embeddings/", 1, timeout=60))[0].msg.cam == "cam0"


async def test_the_model_thread_stops_with_the_node_and_never_outlives_its_loop(runtime_dir, random_checkpoint):
    """Stopped while its model thread is in the middle of a pass, the node waits for that pass (which then
    publishes nothing) before run() returns: no thread is left to post to a closed event loop ("RuntimeError:
    Event loop is closed"). The test holds the node's own model lock to keep the thread mid-pass."""
    failures: list = []
    previous = threading.excepthook
    threading.excepthook = failures.append
    config = node_config(runtime_dir, random_checkpoint, encoder={"frame_step": 1, "stride_frames": 1})
    try:
        async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
            for i in range(20):
                pub.publish_nowait("frames/cam0", frame("cam0", i))
                await asyncio.sleep(0.01)
            await collect(sub, "embeddings/", 1, timeout=60)
            thread, lock = node._thread, node.model_lock
            await asyncio.to_thread(lock.acquire)  # the next forward waits on it
            for i in range(20, 30):  # windows due: the model thread takes one and blocks in its forward
                pub.publish_nowait("frames/cam0", frame("cam0", i))
                await asyncio.sleep(0.01)
            await wait_until(lambda: node.counters["windows_taken"] > node.counters["windows"])
            asyncio.get_running_loop().call_later(1.0, lock.release)  # the pass ends while the node stops
            windows = node.counters["windows"]
        assert not thread.is_alive()  # joined by teardown, before run() returned
        assert node.counters["windows"] == windows  # the pass that ended after the stop published nothing
    finally:
        threading.excepthook = previous
    assert failures == []
