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


def session_metadata(config: AppConfig) -> dict[str, Any]:
    """What a recording should say about the session that made it (MCAP "session" metadata record)."""
    model = config.model
    return {
        "config": config.model_dump(mode="json"),
        "config_name": config.name,
        "model_id": model.checkpoint or f"preset:{model.preset}",
        "git_revision": git_revision(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "argv": sys.argv,
    }
