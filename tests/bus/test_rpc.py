"""Request/reply over real ROUTER/DEALER sockets: results, structured errors, timeouts, safe retries."""

from __future__ import annotations

import asyncio

import pytest
import zmq
import zmq.asyncio

from bus.rpc import RpcClient, RpcError, RpcServer, RpcTimeout


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
    import msgpack

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
