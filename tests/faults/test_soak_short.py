"""The soak (tests/faults/soak.py, `make soak`: 30 minutes) in its `make test` size: 15 s measured.

It asserts what the soak reports, not its figures: every process of the session (launcher, proxy, nodes,
recorder, the skill) sampled throughout, embeddings in every bucket, captions reaching the attached skill,
no process restarted. Whether RSS and p99 hold over 30 minutes is the long run's finding, in
docs/reliability.md.
"""

from __future__ import annotations

import pytest

from tests.support import run_campaign

from .session import NODES, TRAINED


@pytest.mark.skipif(not (TRAINED / "model.safetensors").is_file(), reason="checkpoints/tiny is not in the repo")
def test_a_short_soak_samples_every_process_and_the_skill_gets_captions():
    argv = ["--minutes", "0.25", "--warm-up-s", "3", "--sample-s", "1", "--buckets", "3"]
    returncode, res, report = run_campaign("tests.faults.soak", argv, "soak.json")
    assert returncode == 0, report
    assert set(res["rss_mb"]) == {*NODES, "launcher", "proxy", "recorder", "skill.narrator"}, report
    for name in res["rss_mb"]:
        assert sum(name in s for s in res["samples"]) >= 10 and res["rss_growth"][name] is not None
    assert all(b["embedding"]["n"] > 0 and b["embedding"]["p99_ms"] > 0 for b in res["buckets"]), report
    assert len(res["buckets"]) == 3 and res["restarted"] == []
    assert res["skill_captions"] > 0 and res["captions"] > 0
    assert set(res["verdicts"]) >= {"rss_growth_under_5pct", "embedding_p99_flat_within_20pct", "no_restart"}
