"""Fixtures for every test package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import SMALL_MODEL, short_tmp


@pytest.fixture
def runtime_dir():
    """A private bus runtime dir per test (short: ipc:// paths are length-limited), removed afterwards."""
    path = short_tmp("rt-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised small VLJepa (tests.support.SMALL_MODEL) written with the model's own save()."""
    import torch

    from perception.model import VLJepa, preset_config

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("ckpt") / "small"
    VLJepa.from_config(preset_config("tiny").with_overrides(SMALL_MODEL)).save(out)
    return out
