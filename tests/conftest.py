"""Fixtures for every test package."""

from __future__ import annotations

import shutil

import pytest

from tests.support import short_tmp


@pytest.fixture
def runtime_dir():
    """A private bus runtime dir per test (short: ipc:// paths are length-limited), removed afterwards."""
    path = short_tmp("rt-")
    yield path
    shutil.rmtree(path, ignore_errors=True)
