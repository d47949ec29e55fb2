"""The benchmark's timing helper runs the real model path without tokenizers (no speed is asserted)."""

from __future__ import annotations

import pytest

from benchmarks.model.bench import measure_windows
from tests.model.conftest import small_model


@pytest.fixture
def model():
    return small_model()


def test_measure_windows_reports_each_batch(model):
    rows = measure_windows(model, batches=(1, 2), iters=2, warmup=1)
    assert [r["batch"] for r in rows] == [1, 2]
    assert all(r["p50_ms"] > 0 and r["clips_per_s"] > 0 and r["iters"] == 2 for r in rows)
