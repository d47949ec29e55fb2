"""Fixtures for the service tests: a tiny random checkpoint, per-test runtime dirs, configs, CLI runs.

Tests that need a *trained* model use checkpoints/tiny and skip (with the reason) while it is absent.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO, SMALL_MODEL, child_env, short_tmp  # noqa: F401

TRAINED = REPO / "checkpoints" / "tiny"
PERCEPTION = [sys.executable, "-m", "perception.cli"]


def trained_available() -> bool:
    return (TRAINED / "config.json").is_file() and (TRAINED / "model.safetensors").is_file()


needs_trained = pytest.mark.skipif(
    not trained_available(), reason="checkpoints/tiny (the shipped trained checkpoint) is not in the repo yet"
)


@pytest.fixture(scope="session")
def random_checkpoint(small_checkpoint) -> Path:
    """The session's small random checkpoint (tests/conftest.py), under the name these tests use."""
    return small_checkpoint


@pytest.fixture(scope="session")
def text_model(random_checkpoint):
    """The random checkpoint loaded in the test process: what the encoder would embed texts with."""
    from perception.model import VLJepa

    return VLJepa.load(random_checkpoint, device="cpu", dtype="float32")


def pipeline_config(runtime_dir: Path, checkpoint: Path, **pipeline) -> dict:
    """A config dict for the whole service on a private runtime dir."""
    cfg = {
        "name": "test",
        "bus": {"runtime_dir": str(runtime_dir), "stats_interval_s": 0.5, "ready_timeout_s": 10.0},
        "model": {"checkpoint": str(checkpoint), "device": "cpu", "dtype": "float32"},
        "pipeline": {"supervisor": {"backoff_initial_s": 0.2, "backoff_max_s": 2.0, "stop_timeout_s": 5.0}, **pipeline},
    }
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def perception(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PERCEPTION, *args], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout
    )


def popen_perception(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [*PERCEPTION, *args], cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def interrupt(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Ctrl-C a `perception up` (its clean shutdown), killing it if it does not exit in `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


async def wait_for(predicate, timeout: float, interval: float = 0.1):
    """Poll `predicate()` (sync or async) until truthy; returns its value, or fails the test on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
