"""Bus section of the YAML config: endpoints, queue limits, message size limit and CURVE security.

Defaults are local-only (ipc:// under the runtime dir). A tcp:// endpoint on a non-loopback address is
refused unless CURVE is enabled, so a default config can never expose the bus to the network.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def default_runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(base) / f"vljepa-{os.getuid()}"


def is_loopback_endpoint(endpoint: str) -> bool:
    """ipc:// and inproc:// are local by construction; tcp:// must name 127.0.0.0/8, ::1 or localhost."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if ";" in host:  # "source;dest" form: the destination decides
        host = host.split(";", 1)[1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: may be reachable from outside
        return False


class CurveConfig(BaseModel):
    """CURVE keys for tcp:// deployments; files are those written by `perception keys OUT_DIR`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    server_secret: Path | None = None  # proxy / RPC server: server.key_secret
    server_public: Path | None = None  # clients: the server's server.key
    client_secret: Path | None = None  # clients: their own NAME.key_secret
    authorized_keys: Path | None = None  # servers: directory of client *.key files (the allow-list)


class BusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runtime_dir: Path = Field(default_factory=default_runtime_dir)
    pub: str = ""  # publishers connect here (the proxy's XSUB); "" -> ipc://{runtime_dir}/pub
    sub: str = ""  # subscribers connect here (the proxy's XPUB); "" -> ipc://{runtime_dir}/sub
    rpc: str = ""  # request/reply; "" -> ipc://{runtime_dir}/rpc

    # Topics starting with one of these use the `latest` policy (newest wins); all others are `reliable`.
    latest_prefixes: list[str] = Field(default_factory=lambda: ["frames/"])
    latest_hwm: int = Field(4, ge=1)  # messages queued per socket for `latest` topics
    reliable_hwm: int = Field(100_000, ge=1)  # messages queued per socket for `reliable` topics
    # The proxy queues up to this many messages per subscriber connection before dropping for it.
    proxy_hwm: int = Field(10_000, ge=1)
    max_msg_size: int = Field(64 * 1024 * 1024, ge=1024)  # bytes; ZMQ_MAXMSGSIZE and codec limit
    stats_interval_s: float = Field(1.0, gt=0)
    ready_timeout_s: float = Field(5.0, gt=0)  # how long a subscriber waits for the proxy handshake
    curve: CurveConfig = Field(default_factory=CurveConfig)

    @model_validator(mode="after")
    def _local_unless_secured(self) -> BusConfig:
        for name in ("pub", "sub", "rpc"):
            ep = getattr(self, name)
            if ep and not is_loopback_endpoint(ep) and not self.curve.enabled:
                raise ValueError(
                    f"bus.{name} = {ep!r} is not a loopback address; "
                    "enable bus.curve (see `perception keys`) to expose the bus on a network"
                )
        return self

    def endpoint(self, name: Literal["pub", "sub", "rpc"]) -> str:
        """The configured endpoint, or the ipc:// default under runtime_dir."""
        ep = getattr(self, name)
        return ep or f"ipc://{self.runtime_dir}/{name}"

    def ensure_runtime_dir(self) -> None:
        """Create runtime_dir (0700) when any endpoint lives there."""
        if any(self.endpoint(n).startswith("ipc://") for n in ("pub", "sub", "rpc")):
            self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def policy(self, topic: str) -> Literal["latest", "reliable"]:
        return "latest" if any(topic.startswith(p) for p in self.latest_prefixes) else "reliable"

    @classmethod
    def local(cls, runtime_dir: Path | str, **overrides: object) -> BusConfig:
        """A config whose endpoints all live in `runtime_dir` (tests, benchmarks, demos)."""
        return cls(runtime_dir=Path(runtime_dir), **overrides)
