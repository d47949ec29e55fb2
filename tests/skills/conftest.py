"""Fixtures for the skills tests: the session's small random model (tests/conftest.py), a private bus per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from skillkit import write_config

from bus.proxy import proxy_in_background
from perception.config import load_config


@pytest.fixture(scope="session")
def small_model(small_checkpoint):
    from perception.model import VLJepa

    return VLJepa.load(small_checkpoint, device="cpu", dtype="float32")


@pytest.fixture
def config_file(runtime_dir, small_checkpoint) -> Path:
    return write_config(runtime_dir / "cfg.yaml", runtime_dir, small_checkpoint)


@pytest.fixture
def app_config(config_file):
    return load_config(config_file)


@pytest.fixture
async def proxy(app_config):
    """An in-process proxy (its forwarding runs in libzmq on a thread)."""
    async with proxy_in_background(app_config.bus) as p:
        yield p
