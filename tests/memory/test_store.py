"""The store's contract, run against both engines (a real SQLite file and a real PostgreSQL server)."""

from __future__ import annotations

import numpy as np
import pytest

from perception.memory.config import MemoryConfig, WindowTier
from perception.memory.open import open_store
from perception.memory.records import Batch, CaptionRow, Near, Place, Query, SegmentRow, WatchRow, WindowRow, unit
from perception.memory.store import StoreError

D = 16
S = 1_000_000_000
T0 = 1_800_000_000 * S  # some day in 2027


def vec(i: int) -> np.ndarray:
    v = np.zeros(D, np.float32)
    v[i % D] = 1.0
    v[(i + 1) % D] = 0.3
    return unit(v)


def seg(robot, cam, sid, t, emb=None, at=None, labels=None, caption=None):
    pose = Place("map", *at, 0.0, T0 + t * S) if at is not None else None
    return SegmentRow(
        robot, cam, sid, T0 + t * S, T0 + (t + 3) * S, float(t), float(t + 3),
        labels or [{"label": f"thing {sid}", "score": 0.5}], emb, pose, pose, caption,
    )  # fmt: skip


def test_combined_queries_carry_evidence(store_url):
    store = open_store(store_url, D)
    store.write(
        Batch(
            segments=[
                seg("r1", "front", 1, 0, vec(0), at=(0.0, 0.0)),  # kitchen, early
                seg("r1", "front", 2, 100, vec(0), at=(10.0, 0.0)),  # hall, later, same thing
                seg("r1", "front", 3, 200, vec(5), at=(0.5, 0.5)),  # kitchen, something else
                seg("r2", "rear", 1, 150, vec(0), at=(0.2, 0.0)),  # another robot in the kitchen
                seg("r2", "rear", 2, 300, vec(0)),  # no pose
            ]
        )
    )
    q = vec(0)
    hits = store.search(Query(embedding=q, limit=10))
    assert len(hits) == 5 and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert {h.segment_id for h in hits[:4]} == {1, 2} and hits[-1].segment_id == 3

    # text + place + robot: the kitchen sighting of r1 only
    hits = store.search(Query(embedding=q, near=Near(0.0, 0.0, 1.0, "map"), robot="r1", min_score=0.9))
    assert [(h.robot, h.segment_id) for h in hits] == [("r1", 1)]
    h = hits[0]
    assert h.pose_start == Place("map", 0.0, 0.0, 0.0, T0) and h.distance_m == pytest.approx(0.0)
    assert (h.start_ns, h.end_ns, h.camera) == (T0, T0 + 3 * S, "front")
    assert store.get(h.id).segment_id == 1  # the id is evidence one can open

    # text + time: what matched between t=90 s and t=160 s, best first
    hits = store.search(Query(embedding=q, since_ns=T0 + 90 * S, until_ns=T0 + 160 * S))
    assert {(h.robot, h.segment_id) for h in hits} == {("r1", 2), ("r2", 1)}

    # "last seen": the newest match above the score, whoever saw it
    last = store.search(Query(embedding=q, min_score=0.9, order="recent", limit=1))
    assert [(last[0].robot, last[0].segment_id)] == [("r2", 2)]
    last = store.search(Query(embedding=q, min_score=0.9, order="recent", limit=1, near=Near(0, 0, 1)))
    assert [(last[0].robot, last[0].segment_id)] == [("r2", 1)]

    # what was at a place (no text): newest first, each with its distance
    hits = store.search(Query(near=Near(0.0, 0.0, 1.0)))
    assert [h.segment_id for h in hits] == [3, 1, 1] and all(h.distance_m <= 1.0 for h in hits)
    # a place query says which cameras it could not see (no pose)
    assert store.no_pose(Query(near=Near(0, 0, 1))) == [{"robot": "r2", "camera": "rear"}]
    # another frame matches nothing
    assert store.search(Query(near=Near(0.0, 0.0, 1.0, "odom"))) == []
    store.close()


def test_captions_join_segments_and_writes_are_idempotent(store_url):
    store = open_store(store_url, D)
    cap = CaptionRow("r1", "front", 7, T0, T0 + 3 * S, "a red cup on the table", 120.0)
    store.write(Batch(captions=[cap]))  # the caption first ...
    store.write(Batch(segments=[seg("r1", "front", 7, 0, vec(1))]))  # ... then its segment
    store.write(Batch(segments=[seg("r1", "front", 8, 10, vec(2))]))
    store.write(Batch(captions=[CaptionRow("r1", "front", 8, T0 + 10 * S, T0 + 13 * S, "a blue box", 90.0)]))
    again = Batch(segments=[seg("r1", "front", 7, 0, vec(1))], captions=[cap])
    store.write(again)  # a retried batch stores nothing twice
    by_id = {h.segment_id: h.caption for h in store.search(Query())}
    assert by_id == {7: "a red cup on the table", 8: "a blue box"}
    assert store.stats()["rows"]["segments"] == 2 and store.stats()["rows"]["captions"] == 2
    store.close()


def test_watch_spans_say_how_long(store_url):
    store = open_store(store_url, D)

    def w(t, active):
        return WatchRow("r1", "front", 1, T0 + t * S, T0 + t * S, "door open", "config:door open", active, 0.6)

    store.write(Batch(watches=[w(10, True), w(40, False), w(100, True), w(130, False), w(200, True)]))
    spans = store.spans(Query(), "door open")
    assert [(s.start_ns - T0) // S for s in spans] == [200, 100, 10]
    assert [s.duration_s for s in spans] == [None, 30.0, 30.0]
    assert store.spans(Query(), "window open") == []
    store.close()


def test_retention_thins_windows_by_age_and_drops_old_rows(store_url):
    store = open_store(store_url, D)
    now = T0 + 10_000 * S
    # windows every 0.25 s over the last 200 s before `now` and 2000 s back
    wins = [WindowRow("r1", "front", now - k * S // 4, vec(k)) for k in range(1, 801)]
    wins += [WindowRow("r1", "front", now - 2000 * S - k * S // 4, vec(k)) for k in range(400)]
    store.write(Batch(windows=wins, segments=[seg("r1", "front", 1, 0, vec(0)), seg("r1", "front", 2, 9990, vec(0))]))
    cfg = MemoryConfig(
        window_tiers=[WindowTier(after_s=100, every_s=1.0), WindowTier(after_s=1000, every_s=10.0)],
        windows_max_age_s=2050,
        max_age_s=5000,
    )
    deleted = store.retain(now, cfg, robot="r1")
    rows = store.stats()["rows"]
    # last 100 s: every window (400); 100..200 s: one a second (~100); 2000..2050 s back: one per 10 s (~5)
    assert 400 + 95 <= rows["windows"] <= 400 + 105 + 7
    assert deleted["segments"] == 1 and rows["segments"] == 1  # t=0 is older than max_age_s
    assert store.retain(now, cfg, robot="r1")["windows"] <= 2  # thinning is stable
    assert store.retain(now, cfg, robot="other")["windows"] == 0  # a robot retains its own rows
    store.close()


def test_disk_budget_deletes_oldest_first(store_url):
    store = open_store(store_url, 256)
    rng = np.random.default_rng(0)
    wins = [WindowRow("r1", "front", T0 + k * S, unit(rng.standard_normal(256))) for k in range(6000)]
    for k in range(0, len(wins), 1000):
        store.write(Batch(windows=wins[k : k + 1000]))
    before = store.stats()["bytes"]
    assert before > 4 << 20
    cfg = MemoryConfig(max_bytes=2 << 20, max_age_s=1e9, windows_max_age_s=1e9 - 1, window_tiers=[])
    store.retain(T0 + 6000 * S, cfg, robot="r1")
    after = store.stats()
    assert after["bytes"] <= 2 << 20
    assert 0 < after["rows"]["windows"] < 6000
    # the newest survived
    assert store.spans(Query(), None) == []
    store.close()


def test_dimension_mismatch_and_bad_urls_are_clear(store_url, tmp_path):
    open_store(store_url, D).close()
    with pytest.raises(StoreError, match="D=16"):
        open_store(store_url, 32)
    reader = open_store(store_url, None)
    assert reader.dim == D  # a query-only open takes D from the store
    reader.close()
    with pytest.raises(StoreError, match="unknown store URL"):
        open_store("mysql://x/y", D)
    with pytest.raises(StoreError, match="no memory store"):
        open_store(str(tmp_path / "absent.db"), None, create=False)


def test_hnsw_ef_search_is_the_configured_one(pg_server):
    from .conftest import fresh_database

    store = open_store(fresh_database(pg_server), D, ef_search=400)
    assert store._execute("SHOW hnsw.ef_search") == [("400",)]
    store.close()
