"""The fault campaign (tests/faults/campaign.py) in its `make test` size: one live pipeline, its proxy
SIGKILLed and its world node SIGSTOPped (wedged).

The proxy is the single process every message crosses: it must come back by itself, publishers and
subscribers must reconnect by themselves, and nothing the other processes published on a `reliable` topic
meanwhile may be lost. The wedged world node is alive but silent: the launcher must find it from its
heartbeat and restart it within `supervisor.heartbeat_timeout_s`, and nothing else. Recovery times are
figures (docs/reliability.md), not asserted here beyond generous deadlines.
"""

from __future__ import annotations

import pytest

from tests.support import run_campaign

from .session import TRAINED

HEARTBEAT_TIMEOUT_S = 3.0


@pytest.mark.skipif(not (TRAINED / "model.safetensors").is_file(), reason="checkpoints/tiny is not in the repo")
def test_a_killed_proxy_and_a_wedged_node_recover_without_loss():
    argv = ["--rounds", "1", "--kill", "proxy", "--wedge", "world", "--no-disk", "--no-crash-loop"]
    argv += ["--heartbeat-timeout", str(HEARTBEAT_TIMEOUT_S), "--settle", "1", "--warm-up", "0"]
    returncode, res, report = run_campaign("tests.faults.campaign", argv, "faults.json")
    failed = [f"{c['check']}: {c['detail']}" for c in res["checks"] if c["hard"] and not c["ok"]]
    assert returncode == 0 and res["ok"], "\n".join(failed) + f"\n\n{report}"
    kill, wedge = res["summary"]["proxy:SIGKILL"], res["summary"]["world:SIGSTOP"]
    assert kill["lost"] == {} and kill["restarted"] == []  # reconnected by themselves, nothing lost
    assert kill["output_s"]["max"] < 20  # a generous deadline: the figure itself is in docs/reliability.md
    assert wedge["restarted"] == [] and wedge["ready_s"]["max"] < HEARTBEAT_TIMEOUT_S + 20
    assert res["wedged_lines"] == 1
    w = res["world"]
    assert w["captions_on_wrong_segment"] == 0 and w["segment_ids_reused"] == 0 and w["segment_ids_increasing"]
