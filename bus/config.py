"""Bus section of the YAML config: endpoints, queue limits, message size limit and CURVE security.

Defaults are local-only (ipc:// under the runtime dir, `default_runtime_dir`: the same whatever the
environment, one per `--name`). A tcp:// endpoint on a non-loopback address is
refused unless CURVE is enabled, so a default config can never expose the bus to the network.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_ENV = "PERCEPTION_NAME"  # which of several concurrent pipelines (`perception --name`); unset: the default one
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def runtime_base() -> Path:
    """Where default bus dirs live: /run/user/<uid> when it is this account's (the login session's runtime
    dir), else /tmp. Read from the file system, never from XDG_RUNTIME_DIR: a desktop agent starts
    `perception mcp` with a minimal environment, and must find the bus that `perception up` in a terminal
    bound (issue 34)."""
    run = Path(f"/run/user/{os.getuid()}")
    try:
        st = run.stat()
    except OSError:
        return Path("/tmp")
    return run if run.is_dir() and st.st_uid == os.getuid() else Path("/tmp")


def check_pipeline_name(name: str) -> str:
    """A pipeline name (`--name`) as it goes into a directory name; ValueError if it cannot."""
    if not _NAME.match(name):
        raise ValueError(f"pipeline name {name!r}: 1-32 letters, digits, '-' or '_', starting with a letter or digit")
    return name


def default_runtime_dir(name: str | None = None) -> Path:
    """`<runtime_base>/vljepa-<uid>`, or `vljepa-<uid>-<name>` for a named pipeline (`name`, else $PERCEPTION_NAME)."""
    name = name if name is not None else os.environ.get(NAME_ENV) or None
    leaf = f"vljepa-{os.getuid()}" + (f"-{check_pipeline_name(name)}" if name else "")
    return runtime_base() / leaf


def running_pipelines() -> dict[str, Path]:
    """Default-dir pipelines of this account whose RPC socket answers: name ("" for the unnamed one) -> dir. For
    saying where a client looked and what else it could pick."""
    prefix = f"vljepa-{os.getuid()}"
    out = {}
    for d in sorted(runtime_base().glob(prefix + "*")):
        if d.name == prefix or d.name.startswith(prefix + "-"):
            if _answers(d / "rpc"):
                out[d.name[len(prefix) + 1 :]] = d
    return out


def _answers(path: Path) -> bool:
    """A Unix socket something listens on (a stale one left by a killed pipeline refuses)."""
    if not path.is_socket():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def where_looked(endpoint: str) -> str:
    """For a client that found no pipeline: where it looked, and which pipelines do answer on this host."""
    found = running_pipelines()
    others = ", ".join(f"--name {n}" if n else "the default (no --name)" for n in found) or "none"
    return (
        f"looked at {endpoint} (default bus dirs are under {runtime_base()}, one per --name, whatever "
        f"XDG_RUNTIME_DIR says); pipelines with a socket there: {others}"
    )


# ---------------------------------------------------------------------------------------------- bounds
# Every numeric knob is bounded by what a machine could mean, so no config (nor one stored in a recording)
# sizes a buffer, a queue or a loop beyond it; pydantic's error names the bound at the knob's dotted path.
# The numbers are listed in docs/reliability.md "Untrusted files: limits".
MAX_MSG_BYTES = 2**31  # one message, all parts: 2 GiB (a raw 8K RGB frame is 100 MB)
MAX_PENDING_BYTES = 2**36  # undelivered bytes one subscriber holds: 64 GiB
MAX_HWM = 10_000_000  # messages queued per socket (ZeroMQ's HWMs)
MAX_PARTS = 1024  # parts of one message
MAX_NAME_BYTES = 65_536  # a topic, a subscription prefix, a header's src
MAX_DEPTH = 256  # nesting of a message body (msgpack decodes it recursively)
MAX_TRACKED = 1_000_000  # subscriptions, (src, topic) streams
MAX_INTERVAL_S = 3600.0  # stats heartbeats and handshake waits
MIN_INTERVAL_S = 0.01  # stats heartbeats: 100 a second per node is already all the bus would carry
MAX_SHM_SLOTS = 1024  # frames kept per (publisher, topic) ring

LOCAL_SCHEMES = ("ipc://", "inproc://")  # never leave the host; every other transport may (tipc, pgm, udp, ws ...)


class EndpointError(ValueError):
    """An endpoint this project refuses to bind or connect: an unknown transport, or a network one without CURVE."""


def is_loopback_endpoint(endpoint: str) -> bool:
    """ipc:// and inproc:// are local by construction; tcp:// must name 127.0.0.0/8, ::1 or localhost;
    any other transport (tipc://, udp://, pgm://, ws:// ...) is not local."""
    if endpoint.startswith(LOCAL_SCHEMES):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if ";" in host:  # "source;dest" form: the destination decides
        host = host.split(";", 1)[1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: may be reachable from outside
        return False


def check_endpoint(endpoint: str, curve_enabled: bool, where: str) -> None:
    """The one rule for every endpoint of the project (bus, RPC servers, nodes' own sockets).

    ipc:// and inproc:// always; tcp:// on loopback always; tcp:// elsewhere only with CURVE; nothing else.
    """
    if endpoint.startswith(LOCAL_SCHEMES):
        return
    if not endpoint.startswith("tcp://"):
        raise EndpointError(f"{where} = {endpoint!r}: only ipc://, inproc:// and tcp:// endpoints are supported")
    if not is_loopback_endpoint(endpoint) and not curve_enabled:
        raise EndpointError(
            f"{where} = {endpoint!r} is not a loopback address; "
            "enable bus.curve (see `perception keys`) to expose it on a network"
        )


class Role(BaseModel):
    """What one client key may do (SROS2-style permissions). `None` means no limit for that action;
    an empty list forbids it. Topic rules are prefixes; RPC rules are method names."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    subscribe: list[str] | None = None  # topic prefixes the key may subscribe to
    publish: list[str] | None = None  # topic prefixes the key may publish on
    rpc: list[str] | None = None  # RPC methods the key may call

    def may_subscribe(self, prefix: str) -> bool:
        """A subscription is a prefix: it is allowed only if everything it can match is allowed."""
        return self.subscribe is None or any(prefix.startswith(p) for p in self.subscribe)

    def may_publish(self, topic: str) -> bool:
        return self.publish is None or any(topic.startswith(p) for p in self.publish)

    def may_call(self, method: str) -> bool:
        return self.rpc is None or method in self.rpc


FULL_ACCESS = Role()


class CurveConfig(BaseModel):
    """CURVE keys for tcp:// deployments; files are those written by `perception keys OUT_DIR`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = False
    server_secret: Path | None = None  # proxy / RPC server: server.key_secret
    server_public: Path | None = None  # clients: the server's server.key
    client_secret: Path | None = None  # clients: their own NAME.key_secret
    authorized_keys: Path | None = None  # servers: directory of client *.key files (the allow-list)
    # servers: per-key permissions, by key file name without .key ("dashboard" for dashboard.key);
    # an allow-listed key without an entry has full access
    roles: dict[str, Role] = Field(default_factory=dict)
    # servers: topic prefixes that only the keys listed may publish on, whatever their roles say. The
    # runtime watch list is the world node's alone: name the key the world connects with (default "world")
    topic_owners: dict[str, list[str]] = Field(default_factory=lambda: {"watches/": ["world"]})


class ShmConfig(BaseModel):
    """Same-host frames through shared memory (bus/shm.py, docs/bus.md "Same-host frames"). The switch is
    the publisher's: every subscriber resolves references whatever its own config says."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = False  # publish large arrays of `latest` topics by reference (ipc:// buses only)
    slots: int = Field(8, ge=2, le=MAX_SHM_SLOTS)  # frames kept per (publisher, topic): the memory bound per camera
    max_frame_bytes: int = Field(
        32 * 1024 * 1024, ge=4096, le=MAX_MSG_BYTES
    )  # bytes of one message's arrays; larger go inline
    min_bytes: int = Field(
        64 * 1024, ge=0, le=MAX_MSG_BYTES
    )  # arrays smaller than this go inline (a copy costs less than a ref)
    # frames one subscriber process holds mapped per publisher ring; further ones are copied out for it
    max_borrowed: int = Field(2, ge=0, le=MAX_SHM_SLOTS)

    @model_validator(mode="after")
    def _borrow_fits(self) -> ShmConfig:
        if self.max_borrowed > self.slots:
            raise ValueError(f"max_borrowed ({self.max_borrowed}) must be <= slots ({self.slots})")
        return self


class BusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    runtime_dir: Path = Field(default_factory=default_runtime_dir)
    pub: str = ""  # publishers connect here (the proxy's XSUB); "" -> ipc://{runtime_dir}/pub
    sub: str = ""  # subscribers connect here (the proxy's XPUB); "" -> ipc://{runtime_dir}/sub
    rpc: str = ""  # request/reply; "" -> ipc://{runtime_dir}/rpc

    # Topics starting with one of these use the `latest` policy (newest wins); all others are `reliable`.
    latest_prefixes: list[str] = Field(default_factory=lambda: ["frames/", "frames_full/"])
    latest_hwm: int = Field(4, ge=1, le=MAX_HWM)  # messages queued per socket for `latest` topics
    reliable_hwm: int = Field(100_000, ge=1, le=MAX_HWM)  # messages queued per socket for `reliable` topics
    # bytes a subscriber holds undelivered before it stops reading (ZeroMQ then queues to its HWM and drops)
    max_pending_bytes: int = Field(256 * 1024 * 1024, ge=1024, le=MAX_PENDING_BYTES)
    # The proxy queues up to this many messages per subscriber connection before dropping for it.
    proxy_hwm: int = Field(10_000, ge=1, le=MAX_HWM)
    max_msg_size: int = Field(
        64 * 1024 * 1024, ge=1024, le=MAX_MSG_BYTES
    )  # bytes per message (all parts); ZMQ_MAXMSGSIZE per frame
    max_parts: int = Field(64, ge=2, le=MAX_PARTS)  # parts per message (topic + header + buffers)
    max_topic_bytes: int = Field(256, ge=8, le=MAX_NAME_BYTES)  # UTF-8 bytes of a topic (and of a subscription prefix)
    max_src_bytes: int = Field(256, ge=8, le=MAX_NAME_BYTES)  # bytes of a header's `src`
    max_depth: int = Field(32, ge=2, le=MAX_DEPTH)  # nesting of maps and lists in a message body
    # distinct subscription prefixes the proxy keeps in force, and their bytes in all (each costs libzmq trie memory)
    max_subscriptions: int = Field(4096, ge=16, le=MAX_TRACKED)
    max_subscription_bytes: int = Field(128 * 1024, ge=1024, le=MAX_TRACKED * 1024)
    # distinct (src, topic) streams a subscriber tracks for seq gaps; least recently seen fall out
    max_streams: int = Field(4096, ge=16, le=MAX_TRACKED)
    stats_interval_s: float = Field(1.0, ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)
    ready_timeout_s: float = Field(5.0, gt=0, le=MAX_INTERVAL_S)  # how long a subscriber waits for the proxy handshake
    curve: CurveConfig = Field(default_factory=CurveConfig)
    shm: ShmConfig = Field(default_factory=ShmConfig)

    @model_validator(mode="after")
    def _local_unless_secured(self) -> BusConfig:
        for name in ("pub", "sub", "rpc"):
            ep = getattr(self, name)
            if ep:
                check_endpoint(ep, self.curve.enabled, f"bus.{name}")
        return self

    def endpoint(self, name: Literal["pub", "sub", "rpc"]) -> str:
        """The configured endpoint, or the ipc:// default under runtime_dir."""
        ep = getattr(self, name)
        return ep or f"ipc://{self.runtime_dir}/{name}"

    def limits(self):
        """The codec's per-message limits from this config (bus.codec.Limits)."""
        from bus.codec import Limits  # codec imports no config; keep it that way

        return Limits(
            max_size=self.max_msg_size,
            max_parts=self.max_parts,
            max_topic_bytes=self.max_topic_bytes,
            max_src_bytes=self.max_src_bytes,
            max_depth=self.max_depth,
        )

    def policy(self, topic: str) -> Literal["latest", "reliable"]:
        return "latest" if any(topic.startswith(p) for p in self.latest_prefixes) else "reliable"

    @classmethod
    def local(cls, runtime_dir: Path | str, **overrides: object) -> BusConfig:
        """A config whose endpoints all live in `runtime_dir` (tests, benchmarks, demos)."""
        return cls(runtime_dir=Path(runtime_dir), **overrides)
