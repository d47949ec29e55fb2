"""A flood of watch/unwatch calls: each client is limited on its own (a clear "rate_limited" with when to
retry), the table of clients stays bounded, the watch file is written off the event loop, many changes in
one write, and ends with the newest list; other clients' reads are answered throughout."""

from __future__ import annotations

import asyncio
import threading

from bus.rpc import RpcClient, RpcError
from perception.nodes.latest_writer import LatestWriter
from perception.nodes.rate_limit import RateLimiter
from perception.nodes.watches import decode_file, watch_file
from perception.nodes.world import WorldNode

from .harness import bus_up, node_config, started

FLOODERS = 4


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_buckets_refill_per_client_and_the_table_of_clients_is_bounded():
    clock = Clock()
    limit = RateLimiter(rate=8.0, burst=3, max_clients=2, clock=clock)  # binary fractions: exact sums
    assert [limit.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert limit.take("a") == 0.125  # empty: one call refills in 1/rate s
    assert limit.take("b") == 0.0  # another client has its own bucket
    clock.t += 0.0625
    assert limit.take("a") == 0.0625  # half a call refilled
    clock.t += 0.0625
    assert limit.take("a") == 0.0
    clock.t += 10.0
    assert [limit.take("a") for _ in range(4)][-1] > 0  # refills up to the burst, not beyond
    assert limit.limited == 3
    for name in ("c", "d", "e"):  # new names push the least recently heard out
        limit.take(name)
    assert limit.clients == 2 and limit.evicted == 3


async def test_the_writer_coalesces_changes_and_ends_with_the_newest(tmp_path):
    path = tmp_path / "list.txt"
    gate, entered, writes = threading.Event(), threading.Event(), []

    def write(snapshot: tuple[int, ...]) -> None:
        entered.set()
        assert gate.wait(10)
        writes.append(snapshot)
        path.write_text(repr(snapshot))

    errors: list[OSError] = []
    writer = LatestWriter(write, errors.append)
    task = asyncio.create_task(writer.run())
    try:
        writer.submit((0,))
        assert await asyncio.to_thread(entered.wait, 10)  # the first write is in progress, on a thread
        for k in range(1, 200):  # the loop is not held up by it: 199 changes meanwhile
            writer.submit(tuple(range(k + 1)))
        gate.set()
        for _ in range(200):
            if writer.written == 2:
                break
            await asyncio.sleep(0.01)
        assert writes == [(0,), tuple(range(200))]  # the 199 changes: one write, of the newest
        writer.submit((7,))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    writer.flush()  # at teardown: what is pending is written before the node stops
    assert path.read_text() == "(7,)" and writer.submitted == 201 and errors == []

    def failing(snapshot: object) -> None:
        raise OSError(28, "No space left on device")

    broken = LatestWriter(failing, errors.append)
    broken.submit(1)
    broken.flush()
    assert [e.errno for e in errors] == [28] and broken.written == 0


async def flood(rpc: RpcClient, i: int, until: float) -> dict[str, int]:
    """watch/unwatch as fast as the replies come until `until`; what came back, by kind."""
    seen = {"ok": 0, "rate_limited": 0}
    loop = asyncio.get_running_loop()
    n, added = 0, []
    while loop.time() < until:
        n += 1
        try:
            if added:
                await rpc.call("unwatch", {"id": added[-1]})
                added.pop()
            else:
                added.append((await rpc.call("watch", {"phrase": f"flood {i} {n}", "camera": f"cam{i}"}))["id"])
            seen["ok"] += 1
        except RpcError as exc:
            assert exc.code == "rate_limited", exc
            assert "rate-limited" in exc.message and "retry in" in exc.message
            seen["rate_limited"] += 1
    for wid in added:  # what it added, it takes back (waiting as told)
        assert (await retrying(rpc, "unwatch", {"id": wid}))["removed"]
    return seen


async def retrying(rpc: RpcClient, method: str, params: dict) -> dict:
    """Call, waiting as long as a rate_limited reply says before trying again."""
    for _ in range(100):
        try:
            return await rpc.call(method, params)
        except RpcError as exc:
            assert exc.code == "rate_limited", exc
            await asyncio.sleep(float(exc.message.rsplit("retry in ", 1)[1].split()[0]))
    raise AssertionError("still rate-limited after 100 tries")


async def test_a_flood_of_watch_calls_is_limited_per_client_and_reads_still_answered(runtime_dir, random_checkpoint):
    persist = runtime_dir / "world.jsonl"
    config = node_config(
        runtime_dir,
        random_checkpoint,
        world={"persist": str(persist), "write_rate_per_s": 20, "write_burst": 10, "max_cameras": FLOODERS},
    )
    clients = [RpcClient(config.bus, timeout=5, retries=0) for _ in range(FLOODERS + 2)]
    *flooders, reader, bystander = clients
    try:
        async with bus_up(config, ["watches/"]), started(WorldNode, config) as world:
            loop = asyncio.get_running_loop()
            until = loop.time() + 1.5
            floods = [asyncio.create_task(flood(rpc, i, until)) for i, rpc in enumerate(flooders)]
            reads = 0
            while loop.time() < until:  # another client's reads: answered while the flood runs
                assert "watches" in await reader.call("watches", {})
                assert "cameras" in await reader.call("now", {})
                reads += 2
            seen = await asyncio.gather(*floods)
            assert reads > 0  # each one answered (a timeout would have failed the test)
            for s in seen:  # each flooder got at most its burst and its rate (10 + 1.5 s x 20/s), then refusals
                assert s["ok"] <= 10 + 20 * 2 + 2, s
                assert s["rate_limited"] > 0, s
            assert world.counters["rate_limited"] >= sum(s["rate_limited"] for s in seen)  # + the clean-up's
            # a client that did not flood is not held back by those that did: its own bucket is full
            kept = await bystander.call("watch", {"phrase": "still mine"})
            finals = [await retrying(rpc, "watch", {"phrase": f"final {i}"}) for i, rpc in enumerate(flooders)]
            listed = (await reader.call("watches", {}))["watches"]
            assert sorted(w["id"] for w in listed) == sorted(w["id"] for w in [kept, *finals])
            writes = world._watch_writer.written
            changes = world._watch_writer.submitted
            assert changes >= sum(s["ok"] for s in seen) and writes < changes  # many changes, fewer writes
        kept_on_disk, dropped = decode_file(watch_file(persist).read_bytes())
        assert dropped == [] and sorted(w.id for w in kept_on_disk) == sorted(w["id"] for w in [kept, *finals])
    finally:
        for rpc in clients:
            rpc.close()
