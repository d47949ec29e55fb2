"""Fixtures for the skills tests: one small random checkpoint per session, a private bus per test."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from bus.proxy import Proxy
from perception.config import load_config
from skillkit import SMALL_MODEL, write_config


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    import torch

    from perception.model import VLJepa, preset_config

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("skills-ckpt") / "small"
    VLJepa.from_config(preset_config("tiny").with_overrides(SMALL_MODEL)).save(out)
    return out


@pytest.fixture(scope="session")
def small_model(small_checkpoint):
    from perception.model import VLJepa

    return VLJepa.load(small_checkpoint, device="cpu", dtype="float32")


@pytest.fixture
def runtime_dir():
    path = Path(tempfile.mkdtemp(prefix="sk-", dir="/tmp"))  # short: ipc:// paths are length-limited
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config_file(runtime_dir, small_checkpoint) -> Path:
    return write_config(runtime_dir / "cfg.yaml", runtime_dir, small_checkpoint)


@pytest.fixture
def app_config(config_file):
    return load_config(config_file)


@pytest.fixture
async def proxy(app_config):
    p = Proxy(app_config.bus)
    task = asyncio.create_task(p.run())
    waiter = asyncio.create_task(p.bound.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    yield p
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
