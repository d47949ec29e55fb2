"""The hostile campaign (tests/hostile/campaign.py) for ~20 s: the `make test` size of `make hostile`.

Real processes (proxy, world, encoder, recorder) on a private runtime dir; every class of hostile message
and RPC request interleaved with numbered valid ones. The campaign checks everything itself (and exits 1
if anything fails); this test runs it and reads its result.
"""

from __future__ import annotations

from tests.support import run_campaign

DURATION_S = 20


def test_short_campaign_delivers_every_valid_message_and_stays_bounded():
    argv = ["--duration", str(DURATION_S), "--short"]
    returncode, res, report = run_campaign("tests.hostile.campaign", argv, "hostile.json")
    failed = [f"{c['check']}: {c['detail']}" for c in res["checks"] if not c["ok"]]
    assert returncode == 0 and res["ok"], (
        "hostile campaign failed:\n  "
        + "\n  ".join(failed + [f for f in res["failures"] if not f.startswith("check failed")])
        + f"\n\n{report}"
    )
    v = res["valid"]
    assert v["sent"] > 0 and v["delivered"] == v["sent"] == v["recorded"]
    assert v["events_sent"] > 0 and v["events_stored_by_world"] == v["events_sent"] == v["events_recorded"]
    assert all(c.get("ok") == c.get("sent") and c.get("sent") for c in res["rpc_valid"].values())
    assert set(res["rss"]) >= {"proxy", "world", "encoder", "recorder", "campaign (subscriber)"}
    assert all(r["peak_mb"] <= r["bound_mb"] for r in res["rss"].values())
    tried = {cls: t["tried"] for cls, t in res["messages"].items()}
    assert all(
        tried.get(cls, 0) > 0
        for cls in (
            "array_shape",
            "array_dtype",
            "header_field",
            "body_depth",
            "part_count",
            "topic",
            "src",
            "ext",
            "truncated",
        )
    ), tried
    assert res["seed_corpus"], "no seed corpus case was sent"
