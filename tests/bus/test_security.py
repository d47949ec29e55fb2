"""CURVE on tcp://: allow-listed clients get through, others get nothing; config refuses open binds."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import zmq.asyncio

from bus.config import BusConfig, CurveConfig
from bus.message import Text
from bus.proxy import Proxy
from bus.pubsub import BusNotReady, Publisher, Subscriber
from bus.rpc import RpcClient, RpcServer, RpcTimeout
from bus.security import SecurityConfigError, generate_keypair


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("server", "client", "intruder"):
        out[name], out[name + "_secret"] = generate_keypair(tmp_path / "keys", name)
    allowed = tmp_path / "authorized"
    allowed.mkdir()
    (allowed / "client.key").write_bytes(out["client"].read_bytes())
    out["authorized"] = allowed
    return out


def tcp_configs(keys, runtime_dir, who: str) -> tuple[BusConfig, BusConfig]:
    eps = {n: f"tcp://127.0.0.1:{free_port()}" for n in ("pub", "sub", "rpc")}
    server = BusConfig(runtime_dir=runtime_dir, **eps, curve=CurveConfig(
        enabled=True, server_secret=keys["server_secret"], authorized_keys=keys["authorized"]))
    client = BusConfig(runtime_dir=runtime_dir, **eps, ready_timeout_s=1.0, curve=CurveConfig(
        enabled=True, server_public=keys["server"], client_secret=keys[who + "_secret"]))
    return server, client


def test_keys_are_written_with_a_private_secret(keys):
    assert keys["server"].read_text().count("public-key") == 1
    assert "secret-key" in keys["server_secret"].read_text()
    assert keys["server_secret"].stat().st_mode & 0o077 == 0


async def test_rpc_accepts_allow_listed_and_rejects_others(keys, runtime_dir):
    server_cfg, client_cfg = tcp_configs(keys, runtime_dir, "client")
    _, intruder_cfg = tcp_configs(keys, runtime_dir, "intruder")
    intruder_cfg = intruder_cfg.model_copy(update={"rpc": server_cfg.rpc})
    srv = RpcServer(server_cfg, {"ping": lambda p: "pong"}, ctx=zmq.asyncio.Context())
    task = asyncio.create_task(srv.run())
    try:
        await srv.bound.wait()
        async with RpcClient(client_cfg, ctx=zmq.asyncio.Context(), timeout=2) as ok:
            assert await ok.call("ping") == "pong"
        async with RpcClient(intruder_cfg, ctx=zmq.asyncio.Context(), timeout=0.3, retries=1) as bad:
            with pytest.raises(RpcTimeout):
                await bad.call("ping")
        plain = server_cfg.model_copy(update={"curve": CurveConfig()})  # no CURVE at all
        async with RpcClient(plain, ctx=zmq.asyncio.Context(), timeout=0.3, retries=0) as bad:
            with pytest.raises(RpcTimeout):
                await bad.call("ping")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert srv.counters["requests"] == 1


async def test_proxy_accepts_allow_listed_and_rejects_others(keys, runtime_dir):
    server_cfg, client_cfg = tcp_configs(keys, runtime_dir, "client")
    _, intruder_cfg = tcp_configs(keys, runtime_dir, "intruder")
    intruder_cfg = intruder_cfg.model_copy(update={"pub": server_cfg.pub, "sub": server_cfg.sub})
    proxy = Proxy(server_cfg)
    task = asyncio.create_task(proxy.run())
    try:
        await proxy.bound.wait()
        async with Subscriber(client_cfg, ["secure/"]) as sub, Publisher(client_cfg) as pub:
            await pub.publish("secure/a", Text(text="for allowed eyes"))
            assert (await sub.recv(timeout=5)).msg.text == "for allowed eyes"
        with pytest.raises(BusNotReady):
            await Subscriber(intruder_cfg, ["secure/"]).start(timeout=0.5)
        intruder_pub = Publisher(intruder_cfg)
        with pytest.raises(BusNotReady):
            await intruder_pub.ready(timeout=0.5)
        intruder_pub.close(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_non_loopback_needs_curve(runtime_dir):
    with pytest.raises(ValueError, match="not a loopback address"):
        BusConfig(runtime_dir=runtime_dir, pub="tcp://0.0.0.0:5555")
    with pytest.raises(ValueError, match="not a loopback address"):
        BusConfig(runtime_dir=runtime_dir, sub="tcp://*:5556")
    BusConfig(runtime_dir=runtime_dir, rpc="tcp://127.0.0.1:5557")  # loopback is fine
    BusConfig(runtime_dir=runtime_dir, pub="tcp://0.0.0.0:5555", curve=CurveConfig(enabled=True))
    default = BusConfig()
    assert all(default.endpoint(n).startswith("ipc://") for n in ("pub", "sub", "rpc"))


async def test_curve_without_keys_is_a_clear_error(runtime_dir):
    cfg = BusConfig(runtime_dir=runtime_dir, rpc=f"tcp://127.0.0.1:{free_port()}", curve=CurveConfig(enabled=True))
    with pytest.raises(SecurityConfigError, match="authorized_keys"):
        RpcServer(cfg, ctx=zmq.asyncio.Context()).bind()
