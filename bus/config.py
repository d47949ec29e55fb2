"""Bus section of the YAML config (endpoints, limits, security). Placeholder: extended by the bus work."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


def default_runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(base) / f"vljepa-{os.getuid()}"


class BusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runtime_dir: Path = Field(default_factory=default_runtime_dir)
    pub: str = ""  # publishers connect here (the proxy's XSUB); "" -> ipc://{runtime_dir}/pub
    sub: str = ""  # subscribers connect here (the proxy's XPUB); "" -> ipc://{runtime_dir}/sub
    rpc: str = ""  # request/reply; "" -> ipc://{runtime_dir}/rpc
