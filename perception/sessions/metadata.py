"""The session metadata a recording carries (`perception record`, `perception up --record`, `perception test`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

from perception.config import REPO_ROOT, AppConfig


def git_revision() -> str:
    """`git describe`-style revision of the running code, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def recorded_model_id(config: AppConfig) -> str:
    """The id of the model the session ran, as its encoder reports it (`tiny@tiny:cd02a9f3`: the
    checkpoint actually loaded, default one included), not the config's spelling of it."""
    from perception.nodes.models import ModelUnavailableError, model_id

    try:
        return model_id(config.model)
    except ModelUnavailableError:  # recorded anyway: say what the config asked for
        return config.model.checkpoint or f"preset:{config.model.preset}"


def session_metadata(config: AppConfig) -> dict[str, Any]:
    """What a recording should say about the session that made it (MCAP "session" metadata record)."""
    return {
        "config": config.model_dump(mode="json"),
        "config_name": config.name,
        "model_id": recorded_model_id(config),
        "git_revision": git_revision(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "argv": sys.argv,
    }
