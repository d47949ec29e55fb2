"""CURVE on tcp://: allow-listed clients get through, others get nothing; config refuses open binds."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
import zmq.asyncio

from benchmarks.bus.messages import Text
from bus.config import BusConfig, CurveConfig, EndpointError, Role, is_loopback_endpoint
from bus.proxy import Proxy, proxy_in_background
from bus.pubsub import BusNotReady, Publisher, Subscriber, SubscriptionDenied
from bus.rpc import RpcClient, RpcError, RpcServer, RpcTimeout
from bus.security import (
    EndpointInUseError,
    RuntimeDirError,
    SecurityConfigError,
    apply_client,
    bind_server,
    ensure_private_dir,
    ensure_runtime_dir,
    generate_keypair,
    load_allow_list,
)


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
    server = BusConfig(
        runtime_dir=runtime_dir,
        **eps,
        curve=CurveConfig(enabled=True, server_secret=keys["server_secret"], authorized_keys=keys["authorized"]),
    )
    client = BusConfig(
        runtime_dir=runtime_dir,
        **eps,
        ready_timeout_s=1.0,
        curve=CurveConfig(enabled=True, server_public=keys["server"], client_secret=keys[who + "_secret"]),
    )
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


# -- every endpoint that binds goes through one check --------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://0.0.0.0:{port}",
        "tcp://*:{port}",
        "tipc://{{2,0,0}}",
        "udp://127.0.0.1:{port}",
        "pgm://eth0;239.192.1.1:{port}",
    ],
)
def test_bind_refuses_network_or_unknown_endpoints_without_curve(runtime_dir, endpoint):
    endpoint = endpoint.format(port=free_port())
    cfg = BusConfig(runtime_dir=runtime_dir)
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    try:
        with pytest.raises(EndpointError):
            bind_server(sock, endpoint, cfg, where="test.endpoint")
        assert sock.getsockopt_string(zmq.LAST_ENDPOINT) == ""  # nothing was bound
    finally:
        sock.close(0)
    with pytest.raises(ValueError):  # the config refuses it too, before any socket exists
        BusConfig(runtime_dir=runtime_dir, rpc=endpoint)


def test_tipc_is_not_local():
    assert not is_loopback_endpoint("tipc://{2,0,0}")
    assert is_loopback_endpoint("ipc:///tmp/x") and is_loopback_endpoint("tcp://127.0.0.1:1")


async def test_curve_server_on_a_non_bus_endpoint_still_authenticates(keys, runtime_dir):
    """CURVE on, bus endpoints on ipc, one RPC server on tcp: its ZAP handler runs and an unlisted key gets nothing
    (a CURVE server without an authenticator used to accept every key)."""
    port = free_port()
    curve = CurveConfig(enabled=True, server_secret=keys["server_secret"], authorized_keys=keys["authorized"])
    server_cfg = BusConfig(runtime_dir=runtime_dir, curve=curve)  # pub/sub/rpc default to ipc://
    endpoint = f"tcp://127.0.0.1:{port}"
    srv = RpcServer(server_cfg, {"ping": lambda p: "pong"}, endpoint=endpoint, ctx=zmq.asyncio.Context())
    task = asyncio.create_task(srv.run())

    def client(who: str) -> BusConfig:
        return BusConfig(
            runtime_dir=runtime_dir,
            curve=CurveConfig(enabled=True, server_public=keys["server"], client_secret=keys[who + "_secret"]),
        )

    try:
        await srv.bound.wait()
        async with RpcClient(client("client"), endpoint=endpoint, ctx=zmq.asyncio.Context(), timeout=2) as ok:
            assert await ok.call("ping") == "pong"
        async with RpcClient(
            client("intruder"), endpoint=endpoint, ctx=zmq.asyncio.Context(), timeout=0.3, retries=1
        ) as bad:
            with pytest.raises(RpcTimeout):
                await bad.call("ping")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_malformed_key_in_the_allow_list_is_named_not_a_silent_deny_all(keys):
    (keys["authorized"] / "broken.key").write_text('metadata\ncurve\n    public-key = "not z85 at all"\n')
    with pytest.raises(SecurityConfigError, match="broken.key"):
        load_allow_list(CurveConfig(enabled=True, authorized_keys=keys["authorized"]))
    (keys["authorized"] / "broken.key").unlink()
    assert set(load_allow_list(CurveConfig(enabled=True, authorized_keys=keys["authorized"])).values()) == {"client"}


def test_roles_must_name_allow_listed_keys(keys):
    curve = CurveConfig(enabled=True, authorized_keys=keys["authorized"], roles={"nobody": Role(publish=[])})
    with pytest.raises(SecurityConfigError, match="nobody"):
        load_allow_list(curve)


def test_secret_keys_are_private_and_never_overwritten(tmp_path):
    public, secret = generate_keypair(tmp_path, "robot")
    assert secret.stat().st_mode & 0o777 == 0o600
    before = secret.read_bytes()
    with pytest.raises(SecurityConfigError, match="exists"):
        generate_keypair(tmp_path, "robot")
    assert secret.read_bytes() == before
    secret.chmod(0o644)  # e.g. copied around with a careless umask
    curve = CurveConfig(enabled=True, server_public=public, client_secret=secret)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    try:
        with pytest.raises(SecurityConfigError, match="private"):
            apply_client(sock, "tcp://127.0.0.1:1", curve)
    finally:
        sock.close(0)


def test_runtime_dir_must_be_ours_and_private(tmp_path):
    ours = tmp_path / "rt-ok"
    ensure_private_dir(ours)
    assert ours.stat().st_mode & 0o777 == 0o700
    ensure_private_dir(ours)  # again: fine
    shared = tmp_path / "rt-open"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(RuntimeDirError, match="0777"):
        ensure_private_dir(shared)
    link = tmp_path / "rt-link"
    link.symlink_to(ours)
    with pytest.raises(RuntimeDirError, match="not a directory"):
        ensure_private_dir(link)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to create a directory owned by someone else")
def test_runtime_dir_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "rt-theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(RuntimeDirError, match="belongs to uid 65534"):
        ensure_runtime_dir(BusConfig(runtime_dir=theirs))


async def test_a_second_proxy_on_the_same_ipc_paths_is_refused(bus_config, proxy):
    second = Proxy(bus_config)
    with pytest.raises(EndpointInUseError, match="another live process"):
        await second.run()
    async with Subscriber(bus_config, ["a/"]) as sub, Publisher(bus_config) as pub:  # the first bus still works
        await pub.publish("a/x", Text(text="still one bus"))
        assert (await sub.recv(timeout=5)).msg.text == "still one bus"


async def test_a_stale_socket_file_does_not_block_a_restart(bus_config):
    async with proxy_in_background(bus_config):
        pass  # stopped: its socket files may stay behind
    async with proxy_in_background(bus_config), Subscriber(bus_config, ["a/"]) as sub, Publisher(bus_config) as pub:
        await pub.publish("a/x", Text(text="restarted"))
        assert (await sub.recv(timeout=5)).msg.text == "restarted"


# -- per-key roles -------------------------------------------------------------------------------------


@pytest.fixture
def role_keys(keys, tmp_path):
    for name in ("dashboard", "camera"):
        keys[name], keys[name + "_secret"] = generate_keypair(tmp_path / "keys", name)
        (keys["authorized"] / f"{name}.key").write_bytes(keys[name].read_bytes())
    return keys


def role_configs(keys, runtime_dir) -> tuple[BusConfig, dict[str, BusConfig]]:
    eps = {n: f"tcp://127.0.0.1:{free_port()}" for n in ("pub", "sub", "rpc")}
    roles = {
        "dashboard": Role(subscribe=["captions/"], publish=[], rpc=["now"]),
        "camera": Role(subscribe=[], publish=["frames/"], rpc=[]),
    }
    server = BusConfig(
        runtime_dir=runtime_dir,
        **eps,
        stats_interval_s=0.2,
        curve=CurveConfig(
            enabled=True, server_secret=keys["server_secret"], authorized_keys=keys["authorized"], roles=roles
        ),
    )
    clients = {
        who: BusConfig(
            runtime_dir=runtime_dir,
            **eps,
            ready_timeout_s=2.0,
            curve=CurveConfig(enabled=True, server_public=keys["server"], client_secret=keys[who + "_secret"]),
        )
        for who in ("client", "dashboard", "camera")
    }
    return server, clients


async def test_roles_limit_what_each_key_may_subscribe_and_publish(role_keys, runtime_dir):
    server, c = role_configs(role_keys, runtime_dir)
    async with proxy_in_background(server) as proxy:
        async with (
            Subscriber(c["client"], [""]) as everything,
            Subscriber(c["dashboard"], ["captions/"]) as dash,
            Publisher(c["client"]) as admin,
            Publisher(c["dashboard"]) as dash_pub,
            Publisher(c["camera"]) as camera,
        ):
            await dash_pub.publish("captions/cam0", Text(text="forged by the dashboard"))
            await camera.publish("captions/cam0", Text(text="forged by the camera"))
            await camera.publish("frames/cam0", Text(text="a frame"))
            await admin.publish("captions/cam0", Text(text="a caption"))
            assert (await dash.recv(timeout=5)).msg.text == "a caption"  # the forgeries never arrive
            seen = []
            while len(seen) < 2:
                env = await everything.recv(timeout=5)
                if not env.topic.startswith("stats/"):
                    seen.append(env.msg.text)
            assert seen == ["a frame", "a caption"]
        with pytest.raises(SubscriptionDenied, match="frames/"):
            await Subscriber(c["dashboard"], ["frames/"]).start()
        with pytest.raises(SubscriptionDenied, match="''"):
            await Subscriber(c["dashboard"], [""]).start()  # "everything" includes what it may not read
        with pytest.raises(SubscriptionDenied):
            await Subscriber(c["camera"], ["frames/"]).start()  # publish-only
        for _ in range(50):
            if proxy.counters.get("dropped_denied", 0) >= 2:
                break
            await asyncio.sleep(0.1)
        assert proxy.counters["dropped_denied"] == 2
        assert proxy.counters["subscriptions_denied"] >= 3


async def test_only_the_keys_owning_watches_may_publish_there_whatever_src_they_claim(role_keys, runtime_dir):
    """The runtime watch list replaces the events node's: under CURVE only the world's key publishes it
    (bus.curve.topic_owners, default {"watches/": ["world"]}), even against a full-access key."""
    keys = role_keys
    keys["world"], keys["world_secret"] = generate_keypair(keys["authorized"].parent / "keys", "world")
    (keys["authorized"] / "world.key").write_bytes(keys["world"].read_bytes())
    server, c = role_configs(keys, runtime_dir)
    world = c["client"].model_copy(
        update={"curve": c["client"].curve.model_copy(update={"client_secret": keys["world_secret"]})}
    )
    async with proxy_in_background(server) as proxy:
        async with (
            Subscriber(c["client"], ["watches/"]) as sub,
            Publisher(c["client"], src="world") as admin,  # full access, and it claims to be the world
            Publisher(world, src="world") as world_pub,
        ):
            await admin.publish("watches/all", Text(text="forged"))
            await world_pub.publish("watches/all", Text(text="the world's"))
            await admin.publish("captions/cam0", Text(text="elsewhere the admin key may publish"))
            env = await sub.recv(timeout=5)
            assert (env.topic, env.msg.text) == ("watches/all", "the world's")
            for _ in range(50):
                if proxy.counters.get("dropped_denied", 0) >= 1:
                    break
                await asyncio.sleep(0.1)
            assert proxy.counters["dropped_denied"] == 1
            assert proxy.counters["backend_msgs_out"] >= 2  # the world's list and the caption went through


async def test_roles_limit_which_rpc_methods_each_key_may_call(role_keys, runtime_dir):
    server, c = role_configs(role_keys, runtime_dir)

    srv = RpcServer(server, {"now": lambda p: "now", "ask": lambda p: "answer"}, ctx=zmq.asyncio.Context())
    task = asyncio.create_task(srv.run())
    try:
        await srv.bound.wait()
        async with RpcClient(c["dashboard"], ctx=zmq.asyncio.Context(), timeout=2) as dash:
            assert await dash.call("now") == "now"
            with pytest.raises(RpcError) as err:
                await dash.call("ask")
            assert err.value.code == "forbidden"
        async with RpcClient(c["camera"], ctx=zmq.asyncio.Context(), timeout=2) as cam:
            with pytest.raises(RpcError):
                await cam.call("now")
        async with RpcClient(c["client"], ctx=zmq.asyncio.Context(), timeout=2) as admin:
            assert await admin.call("ask") == "answer"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_client_with_the_wrong_server_key_gets_nothing(keys, runtime_dir):
    """Wrong key: an allow-listed client that trusts another server key never completes the CURVE handshake."""
    server_cfg, client_cfg = tcp_configs(keys, runtime_dir, "client")
    wrong = client_cfg.model_copy(
        update={"curve": client_cfg.curve.model_copy(update={"server_public": keys["intruder"]})}
    )
    srv = RpcServer(server_cfg, {"ping": lambda p: "pong"}, ctx=zmq.asyncio.Context())
    task = asyncio.create_task(srv.run())
    try:
        await srv.bound.wait()
        async with RpcClient(wrong, ctx=zmq.asyncio.Context(), timeout=0.3, retries=1) as bad:
            with pytest.raises(RpcTimeout):
                await bad.call("ping")
        async with RpcClient(client_cfg, ctx=zmq.asyncio.Context(), timeout=2) as ok:
            assert await ok.call("ping") == "pong"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert srv.counters["requests"] == 1
