"""The config classes of the hostile file campaign (tests/hostile/files_config.py) at `make test` size:
~50 cases per class, the bomb corpus first. Every case is a clear one-line error or an accepted, bounded
file; none crashes, none imports the module it names, and the process's peak memory stays bounded."""

from __future__ import annotations

import resource

import pytest

from tests.hostile.files_config import RUNNERS, YAML_BOMBS

CASES = 50
RSS_GROWTH_MB = 300  # the 603-byte billion laughs alone took `perception up` to 24 GB


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_config_files_never_crash_import_or_explode(name):
    before = peak_rss_mb()
    res = RUNNERS[name](CASES, seed=0)
    assert res["cases"] == CASES
    assert res["crashes"] == 0, res["crash_examples"]
    assert not res["imported_marker"], "a case imported the module it named"
    assert res["clear_errors"] >= min(CASES, len(YAML_BOMBS)) // 2, res  # the bombs are refused, not accepted
    assert res["clear_errors"] + res["accepted"] == CASES
    assert peak_rss_mb() - before < RSS_GROWTH_MB, res
