"""Helpers shared by the test packages: short runtime dirs, child-process env, CLI children, the small model.

Import as `from tests.support import ...` (pytest runs from the repo root).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A randomly initialised VLJepa small enough for a forward pass in a few ms on one core.
SMALL_MODEL = {
    "embed_dim": 32,
    "x_encoder": {"image_size": 32, "patch_size": 8, "frames": 4, "tubelet": 2, "hidden": 48, "layers": 1, "heads": 2},
    "predictor": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 64},
    "y_decoder": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "prefix_tokens": 2, "max_tokens": 6},
    "device": "cpu",
    "dtype": "float32",
}


def with_sections(base: dict, over: dict) -> dict:
    """A copy of `base` with `over` applied one level deep: a dict value updates that section's keys,
    anything else replaces the key (how the tests' config overrides read)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def small_random_checkpoint(out: Path, seed: int = 0) -> Path:
    """A randomly initialised small VLJepa (SMALL_MODEL) written with the model's own save() to `out`."""
    import torch

    from perception.model import VLJepa, preset_config

    torch.manual_seed(seed)
    VLJepa.from_config(preset_config("tiny").with_overrides(SMALL_MODEL)).save(out)
    return out


def run_campaign(module: str, argv: list[str], name: str, timeout: float = 240) -> tuple[int, dict, str]:
    """`python -m module ARGV --json OUT` (a campaign that checks everything itself) as a child process:
    (exit status, its JSON result, the tail of its output for the failure message)."""
    out_dir = short_tmp("cmp-")
    out = out_dir / name
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, *argv, "--json", str(out)],
            cwd=REPO,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        report = proc.stdout[-12000:] + "\n" + proc.stderr[-3000:]
        assert out.exists(), f"{module} wrote no result (exit {proc.returncode}):\n{report}"
        return proc.returncode, json.loads(out.read_text()), report
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def short_tmp(prefix: str) -> Path:
    """A short directory under /tmp: ipc:// paths are limited to ~100 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def child_env(log_level: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for a child process running this checkout's code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if log_level:
        env["PERCEPTION_LOG_LEVEL"] = log_level
    else:
        env.setdefault("PERCEPTION_LOG_LEVEL", "WARNING")
    env.update(extra)
    return env


async def perception_child(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, stdin: bool = False
) -> asyncio.subprocess.Process:
    """`perception ARGS` as an asyncio child process with piped stdout/stderr (and stdin if asked)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perception.cli",
        *args,
        cwd=cwd,
        env=env or child_env(),
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_line(proc: asyncio.subprocess.Process, prefix: str, timeout: float = 60) -> str:
    """Read the child's stdout until a line starting with `prefix` (its readiness signal)."""
    async with asyncio.timeout(timeout):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                err = (await proc.stderr.read()).decode()
                raise AssertionError(f"child exited before printing {prefix!r}: {err[-3000:]}")
            if line.startswith(prefix):
                return line


def peak_rss_mb() -> float:
    """This process image's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux keeps that across fork and
    exec, so a child of a large pytest process would report its parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
