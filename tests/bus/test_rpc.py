"""Request/reply over real ROUTER/DEALER sockets: results, structured errors, timeouts, safe retries."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import msgpack
import pytest
import zmq
import zmq.asyncio

from bus.config import BusConfig, CurveConfig, Role
from bus.rpc import RpcClient, RpcError, RpcServer, RpcTimeout
from bus.security import generate_keypair


@pytest.fixture
async def server(bus_config):
    srv = RpcServer(bus_config)
    calls = {"slow": 0}

    @srv.method("add")
    def add(params):
        return {"sum": params["a"] + params["b"]}

    @srv.method("slow")
    async def slow(params):
        calls["slow"] += 1
        await asyncio.sleep(params.get("s", 0.3))
        return calls["slow"]

    @srv.method("refuse")
    async def refuse(params):
        raise RpcError("not_allowed", "camera cam9 is not configured")

    @srv.method("crash")
    async def crash(params):
        return 1 / 0

    srv.calls = calls
    task = asyncio.create_task(srv.run())
    await srv.bound.wait()
    yield srv
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_call_returns_result(server, bus_config):
    async with RpcClient(bus_config) as client:
        assert await client.call("add", {"a": 2, "b": 3}) == {"sum": 5}
        results = await asyncio.gather(*(client.call("add", {"a": i, "b": 1}) for i in range(50)))
    assert [r["sum"] for r in results] == [i + 1 for i in range(50)]


async def test_structured_errors(server, bus_config):
    async with RpcClient(bus_config) as client:
        reply = await client.request("refuse")
        assert reply == {"ok": False, "error": {"code": "not_allowed", "message": "camera cam9 is not configured"}}
        with pytest.raises(RpcError) as err:
            await client.call("nope")
        assert err.value.code == "unknown_method" and "add" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("crash")
        assert err.value.code == "internal" and "ZeroDivisionError" in err.value.message
        assert await client.call("add", {"a": 1, "b": 1}) == {"sum": 2}  # still serving


async def test_malformed_requests_get_bad_request(server, bus_config):
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.connect(bus_config.endpoint("rpc"))
    try:
        await sock.send_multipart([b"id-1", b"\xc1 not msgpack"])
        rid, body = await asyncio.wait_for(sock.recv_multipart(), 5)
        assert rid == b"id-1" and b"bad_request" in body
    finally:
        sock.close(linger=0)


async def test_timeout_when_handler_is_too_slow(server, bus_config):
    async with RpcClient(bus_config, timeout=0.1, retries=0) as client:
        with pytest.raises(RpcTimeout, match="no reply after 1 attempt"):
            await client.call("slow", {"s": 1.0})


async def test_retries_do_not_execute_twice(server, bus_config):
    """Attempts time out at 0.1 s while the handler takes 0.35 s: it still runs exactly once."""
    async with RpcClient(bus_config, timeout=0.1, retries=6) as client:
        assert await client.call("slow", {"s": 0.35}) == 1
    assert server.calls["slow"] == 1
    assert server.counters["joined"] >= 2


async def test_retry_after_completion_gets_cached_reply(server, bus_config):
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.connect(bus_config.endpoint("rpc"))
    body = msgpack.packb({"method": "slow", "params": {"s": 0.01}})
    try:
        replies = []
        for _ in range(3):  # the same request id three times, one after another
            await sock.send_multipart([b"same-id", body])
            replies.append(await asyncio.wait_for(sock.recv_multipart(), 5))
    finally:
        sock.close(linger=0)
    assert len({r[1] for r in replies}) == 1
    assert server.calls["slow"] == 1
    assert server.counters["replayed"] == 2


async def test_dead_server_times_out_cleanly(bus_config):
    async with RpcClient(bus_config, timeout=0.1, retries=2) as client:
        with pytest.raises(RpcTimeout, match="3 attempt"):
            await client.call("add", {"a": 1, "b": 2})


async def test_requests_queued_for_a_dead_server_are_not_executed_late(bus_config):
    """Attempts sent while no server runs expire: a server started afterwards drops them unexecuted."""
    ran = []
    async with RpcClient(bus_config, timeout=0.05, retries=1) as client:
        with pytest.raises(RpcTimeout):
            await client.call("record", {"x": 1})
        srv = RpcServer(bus_config, {"record": lambda p: ran.append(p)})
        task = asyncio.create_task(srv.run())
        try:
            await srv.bound.wait()
            assert await client.call("record", {"x": 2}, timeout=2) is None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert ran == [{"x": 2}]


# -- hostile input and limits ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(config, handlers, **kw):
    srv = RpcServer(config, handlers, **kw)
    task = asyncio.create_task(srv.run())
    await srv.bound.wait()
    try:
        yield srv
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.contextmanager
def dealer(config):
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.connect(config.endpoint("rpc"))
    try:
        yield sock
    finally:
        sock.close(linger=0)


def body(method: str, params: dict | None = None, **fields) -> bytes:
    return msgpack.packb({"method": method, "params": params or {}, **fields})


async def exchange(sock, request_id: bytes, payload: bytes) -> dict:
    await sock.send_multipart([request_id, payload])
    rid, reply = await asyncio.wait_for(sock.recv_multipart(), 10)
    assert rid == request_id
    return msgpack.unpackb(reply)


async def test_an_unencodable_result_is_an_internal_error_and_retries_get_it_too(bus_config):
    calls = []

    def huge(params):
        calls.append(1)
        return {"x": 2**64}  # beyond msgpack's 64-bit ints: OverflowError when packed

    async with serving(bus_config, {"huge": huge}) as srv:
        with dealer(bus_config) as sock:
            replies = [await exchange(sock, b"big", body("huge")) for _ in range(3)]
        assert replies[0]["ok"] is False and replies[0]["error"]["code"] == "internal"
        assert "OverflowError" in replies[0]["error"]["message"]
        assert replies[1] == replies[0] == replies[2]
        async with RpcClient(bus_config, timeout=5, retries=0) as client:
            with pytest.raises(RpcError) as err:
                await client.call("huge")
            assert err.value.code == "internal"
        assert srv.counters["replayed"] == 2 and srv.counters["unencodable"] == 2
        assert not srv._inflight
    assert len(calls) == 2  # once per distinct request


async def test_calls_beyond_max_inflight_get_busy_at_once(bus_config):
    release = asyncio.Event()
    ran = []

    async def hold(params):
        ran.append(params["n"])
        await release.wait()
        return params["n"]

    async with serving(bus_config, {"hold": hold}, max_inflight=2) as srv:
        with dealer(bus_config) as sock:
            for n in range(3):
                await sock.send_multipart([b"h%d" % n, body("hold", {"n": n})])
            rid, reply = await asyncio.wait_for(sock.recv_multipart(), 10)  # the first reply: the refusal
            assert rid == b"h2" and msgpack.unpackb(reply)["error"]["code"] == "busy"
            release.set()
            got = dict([await asyncio.wait_for(sock.recv_multipart(), 10) for _ in range(2)])
            assert {k: msgpack.unpackb(v)["result"] for k, v in got.items()} == {b"h0": 0, b"h1": 1}
            assert (await exchange(sock, b"h2", body("hold", {"n": 2})))["result"] == 2  # busy is not cached
    assert srv.counters["busy"] == 1 and ran == [0, 1, 2]


async def test_request_ids_longer_than_the_limit_are_bad_requests(bus_config):
    async with serving(bus_config, {"add": lambda p: p["a"] + p["b"]}) as srv:
        with dealer(bus_config) as sock:
            reply = await exchange(sock, b"x" * 65, body("add", {"a": 1, "b": 2}))
            assert reply["error"]["code"] == "bad_request" and "64" in reply["error"]["message"]
            assert (await exchange(sock, b"y" * 64, body("add", {"a": 1, "b": 2})))["result"] == 3
    assert srv.counters["malformed"] == 1


async def test_a_message_with_too_many_frames_is_a_bad_request_and_is_not_collected(bus_config):
    async with serving(bus_config, {"add": lambda p: p["a"] + p["b"]}) as srv:
        with dealer(bus_config) as sock:
            await sock.send_multipart([b"many", *([b"junk"] * 1000)])
            rid, reply = await asyncio.wait_for(sock.recv_multipart(), 10)
            assert rid == b"many" and msgpack.unpackb(reply)["error"]["code"] == "bad_request"
            assert (await exchange(sock, b"next", body("add", {"a": 1, "b": 2})))["result"] == 3
    assert srv.counters["frames_dropped"] == 1002 - 4  # identity, id, 1000 junk: 4 kept


async def test_the_reply_cache_is_bounded_by_bytes_and_drops_the_oldest(bus_config):
    calls = []

    def blob(params):
        calls.append(params["i"])
        return b"\x00" * 200_000

    async with serving(bus_config, {"blob": blob}) as srv:
        with dealer(bus_config) as sock:
            for i in range(200):  # 40 MB of replies against a 16 MiB cache
                assert (await exchange(sock, b"r%d" % i, body("blob", {"i": i})))["ok"] is True
            assert 0 < srv.counters["reply_cache_bytes"] <= 16 * 1024 * 1024
            assert srv.counters["reply_cache_bytes"] == srv._done_bytes
            assert srv.counters["reply_cache_evicted"] > 100
            await exchange(sock, b"r199", body("blob", {"i": 199}))  # newest: still cached
            assert len(calls) == 200 and srv.counters["replayed"] == 1
            await exchange(sock, b"r0", body("blob", {"i": 0}))  # oldest: evicted, so it runs again
            assert len(calls) == 201 and calls[-1] == 0
    assert srv.counters["reply_cache_bytes"] <= 16 * 1024 * 1024


async def test_another_connection_reusing_a_request_id_never_reads_its_reply(bus_config):
    calls = []

    def count(params):
        calls.append(params["who"])
        return {"n": len(calls), "for": params["who"]}

    async with serving(bus_config, {"count": count}):
        with dealer(bus_config) as a, dealer(bus_config) as b:
            first = await exchange(a, b"same-id", body("count", {"who": "a"}))
            other = await exchange(b, b"same-id", body("count", {"who": "b"}))
            assert first["result"] == {"n": 1, "for": "a"}
            assert other["result"] == {"n": 2, "for": "b"}  # executed for b, not a's cached reply
            assert (await exchange(a, b"same-id", body("count", {"who": "a"}))) == first  # a's retry: a's reply
    assert calls == ["a", "b"]


async def test_a_request_whose_budget_ran_out_while_queued_is_not_run(bus_config):
    """A blocking handler holds the loop; a request received behind it with a 200 ms budget starts after
    its budget is spent and is dropped unexecuted; one with a fresh budget runs."""
    ran = []
    srv = RpcServer(bus_config, {"block": lambda p: time.sleep(0.6), "record": lambda p: ran.append(p["x"])})
    srv.bind()  # bound, not yet reading: both requests wait in its queue
    with dealer(bus_config) as sock:
        await sock.send_multipart([b"blk", body("block", timeout_ms=30_000)])
        await sock.send_multipart([b"rec", body("record", {"x": 1}, timeout_ms=200)])
        while not srv._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # both delivered (one pipe, in order)
        task = asyncio.create_task(srv.run())
        try:
            rid, _ = await asyncio.wait_for(sock.recv_multipart(), 10)
            assert rid == b"blk"
            assert (await exchange(sock, b"rec2", body("record", {"x": 2}, timeout_ms=30_000)))["ok"] is True
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert ran == [2]
    assert srv.counters["expired"] == 1 and not srv._inflight


async def test_an_old_absolute_deadline_is_not_compared_with_this_hosts_clock(bus_config):
    """A client whose clock runs an hour behind sends a `deadline` already past here: it is still served."""
    async with serving(bus_config, {"add": lambda p: p["a"] + p["b"]}) as srv:
        with dealer(bus_config) as sock:
            skewed = body("add", {"a": 1, "b": 2}, deadline=time.time_ns() - 3600 * 10**9)
            assert (await exchange(sock, b"old-client", skewed))["result"] == 3
    assert srv.counters["expired"] == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_curve_roles_limit_the_methods_a_key_may_call(tmp_path, runtime_dir):
    keys = tmp_path / "keys"
    allowed = tmp_path / "authorized"
    allowed.mkdir()
    server_pub, server_secret = generate_keypair(keys, "server")
    client_pub, client_secret = generate_keypair(keys, "viewer")
    (allowed / "viewer.key").write_bytes(client_pub.read_bytes())
    rpc = f"tcp://127.0.0.1:{free_port()}"
    server_cfg = BusConfig(
        runtime_dir=runtime_dir,
        rpc=rpc,
        curve=CurveConfig(
            enabled=True, server_secret=server_secret, authorized_keys=allowed, roles={"viewer": Role(rpc=["now"])}
        ),
    )
    client_cfg = BusConfig(
        runtime_dir=runtime_dir,
        rpc=rpc,
        curve=CurveConfig(enabled=True, server_public=server_pub, client_secret=client_secret),
    )
    ran = []
    handlers = {"now": lambda p: "now", "shutdown": lambda p: ran.append("shutdown")}
    async with (
        serving(server_cfg, handlers, ctx=zmq.asyncio.Context()) as srv,
        RpcClient(client_cfg, ctx=zmq.asyncio.Context(), timeout=5, retries=0) as client,
    ):
        assert await client.call("now") == "now"
        with pytest.raises(RpcError) as err:
            await client.call("shutdown")
        assert err.value.code == "forbidden" and "viewer" in err.value.message
    assert ran == [] and srv.counters["forbidden"] == 1


async def test_many_callers_on_one_client_never_stall(bus_config):
    """Sixteen callers share one client, replies and requests interleaving on both sockets: every call
    is answered (a send must not swallow the wake-up of the socket's pending receive)."""

    async def echo(params):
        await asyncio.sleep(0)
        return params["i"]

    async with serving(bus_config, {"echo": echo}) as srv, RpcClient(bus_config, timeout=30, retries=0) as client:

        async def caller(k: int) -> list[int]:
            return [await client.call("echo", {"i": k * 1000 + n}) for n in range(150)]

        results = await asyncio.gather(*(caller(k) for k in range(16)))
    assert results == [[k * 1000 + n for n in range(150)] for k in range(16)]
    assert srv.counters["requests"] == 16 * 150
