"""Fixtures for every test package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import short_tmp, small_random_checkpoint


@pytest.fixture
def runtime_dir():
    """A private bus runtime dir per test (short: ipc:// paths are length-limited), removed afterwards."""
    path = short_tmp("rt-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised small VLJepa (tests.support.SMALL_MODEL) written with the model's own save()."""
    return small_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "small", seed=0)
