"""The comparison on its own: boundaries matched one to one within the tolerance, captions changed, moved,
gained or lost, watch crossings, embedding drift, and which thresholds a comparison crosses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perception.messages import Caption, Event, LabelScore
from perception.sessions.diff import Thresholds, compare, match_nearest
from perception.sessions.perceived import Perceived, Span

S = 10**9  # ns per second
T0 = 1_000 * S


def segment(start: float, end: float, label: str = "a red circle") -> Event:
    return Event(
        cam="cam0", kind="segment", segment_id=1, start_ns=T0 + int(start * S), end_ns=T0 + int(end * S),
        labels=[LabelScore(label=label, score=0.9)],
    )  # fmt: skip


def watch(t: float, active: bool) -> Event:
    ns = T0 + int(t * S)
    return Event(
        cam="cam0",
        kind="watch",
        segment_id=1,
        start_ns=ns,
        end_ns=ns,
        watch="red",
        watch_id="config:red",
        active=active,
    )


def caption(start: float, end: float, text: str) -> Caption:
    return Caption(
        cam="cam0", segment_id=1, text=text, start_ns=T0 + int(start * S), end_ns=T0 + int(end * S),
        t_capture_ns=T0 + int(end * S), latency_ms=5.0,
    )  # fmt: skip


def perceived(name: str, segments=(), watches=(), captions=(), embeddings=None) -> Perceived:
    p = Perceived(Path(name), segments=list(segments), watches=list(watches), captions=list(captions))
    p.t0_ns["cam0"] = T0
    for k, e in enumerate(embeddings if embeddings is not None else []):
        p.embeddings[Span("cam0", T0 + k * S, T0 + (k + 1) * S)] = np.asarray(e, dtype=np.float32)
    p.run = {}  # not live: no latencies
    return p


def test_nearest_pairs_are_matched_first_and_one_to_one():
    assert match_nearest([1.0, 1.5], [1.45, 5.0], 0.5) == [(1, 0)]  # 1.5 takes 1.45; 1.0 is left unmatched
    assert sorted(match_nearest([1.0, 2.0], [1.3, 2.05], 0.5)) == [(0, 0), (1, 1)]
    assert match_nearest([1.0], [1.6], 0.5) == []


def test_boundaries_within_the_tolerance_are_matched_the_rest_lost_or_gained():
    base = perceived("a", [segment(0, 2), segment(2, 4), segment(4, 9)])
    cand = perceived("b", [segment(0, 2.2, "a blue square"), segment(2.2, 6), segment(6, 9)])
    d = compare("s", base, cand, tolerance_s=0.5)
    b = d.boundaries
    assert (b.baseline, b.candidate, b.matched, b.exact) == (3, 3, 2, 1)  # 2 -> 2.2 shifted, 9 exact
    assert b.lost == [("cam0", 4.0)] and b.gained == [("cam0", 6.0)]
    assert abs(b.mean_shift_s - 0.1) < 1e-6 and abs(b.precision - 2 / 3) < 1e-9
    assert d.differences == 1 + 1 + 1  # lost, gained, one shifted
    assert d.crossed(Thresholds(max_boundary_drift_s=0.05)) and not d.crossed(Thresholds(max_boundary_drift_s=0.2))
    assert d.crossed(Thresholds(min_boundary_f1=0.9)) and not d.crossed(Thresholds(min_boundary_f1=0.6))
    same_span = compare("s", base, perceived("c", [segment(0, 2, "a blue square"), segment(2, 4), segment(4, 9)]))
    assert same_span.boundaries.relabelled == 1 and same_span.differences == 1


def test_captions_are_changed_moved_gained_or_lost():
    base = perceived("a", captions=[caption(0, 2, "red circle"), caption(2, 4, "blue square"), caption(4, 6, "gone")])
    cand = perceived(
        "b", captions=[caption(0, 2, "green circle"), caption(2.2, 4, "blue square"), caption(8, 9, "new")]
    )
    d = compare("s", base, cand)
    kinds = {c.kind: c for c in d.captions}
    assert sorted(kinds) == ["changed", "gained", "lost", "moved"]
    assert (kinds["changed"].baseline, kinds["changed"].candidate) == ("red circle", "green circle")
    assert kinds["moved"].candidate_span_s == (2.2, 4.0) and kinds["lost"].baseline == "gone"
    assert kinds["gained"].candidate == "new" and kinds["gained"].start_s == 8.0
    assert d.crossed(Thresholds(max_caption_changes=2)) and not d.crossed(Thresholds(max_caption_changes=3))


def test_watch_crossings_and_embedding_drift():
    base = perceived("a", watches=[watch(1, True), watch(3, False)], embeddings=[[1, 0], [0, 1], [1, 1]])
    cand = perceived("b", watches=[watch(1, True), watch(3.5, False)], embeddings=[[1, 0], [1, 1], [1, 1]])
    d = compare("s", base, cand)
    assert [(w.kind, w.t_s, w.active) for w in d.watches] == [("lost", 3.0, False), ("gained", 3.5, False)]
    drift = d.drift
    assert (drift.matched, drift.bitwise_equal) == (3, 2)
    assert abs(drift.cosine_min - np.sqrt(0.5)) < 1e-6
    assert d.crossed(Thresholds(min_cosine_p5=0.95)) and not d.crossed(Thresholds(min_cosine_p5=0.7))
    assert d.crossed(Thresholds(exact=True)) and d.differences == 2 + 1
    assert not compare("s", base, base).crossed(Thresholds(exact=True))


def test_a_report_without_thresholds_says_not_gated_on_its_last_line():
    """Issue 34: without thresholds `perception test` exits 0 whatever it found; the report now says so."""
    from perception.sessions.report import format_report

    diff = compare("s.mcap", perceived("a", segments=[segment(0, 2)]), perceived("b", segments=[segment(0, 3)]))
    assert diff.differences > 0
    last = format_report(diff, Thresholds()).splitlines()[-1]
    assert last.startswith(f"not gated: {diff.differences} differences") and "--exact" in last, last
    assert not Thresholds().gated and Thresholds(exact=True).gated and Thresholds(min_boundary_f1=0.5).gated
    assert format_report(diff, Thresholds(exact=True)).splitlines()[-1].startswith("FAIL: ")


def test_test_help_says_the_default_config_is_the_recordings_own():
    import subprocess
    import sys

    from tests.support import REPO, child_env

    out = subprocess.run(
        [sys.executable, "-m", "perception.cli", "test", "--help"], cwd=REPO, env=child_env(), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    text = " ".join(out.stdout.split())
    assert "default: the config stored in each recording" in text and "configs/tiny-cpu.yaml" not in text, text


def windows(p: Perceived, first: int, last: int) -> Perceived:
    """One-second windows [k, k+1] s for k in first..last, each with the same embedding on both sides."""
    for k in range(first, last + 1):
        p.embeddings[Span("cam0", T0 + k * S, T0 + (k + 1) * S)] = np.full(4, k + 10, np.float32)
    return p


def test_windows_and_segments_cut_by_a_recordings_edges_are_not_differences():
    """Issue 34: a recording attached to a running pipeline did not compare equal to itself: a boundary
    lost at 0.13 s (a segment begun before the recording), one gained at the end (the offline run's last
    segment, flushed where the recording stopped), windows only in the baseline (frames before it). The
    live run here saw frames from -3 s; the recording holds 0-28 s, the live outputs recorded reach 26 s."""
    live = windows(
        perceived(
            "live",
            segments=[segment(-5, 0.13), segment(0.13, 10), segment(10, 20), segment(20, 25)],
            captions=[caption(-5, 0.13, "a"), caption(0.13, 10, "b"), caption(10, 20, "c"), caption(20, 25, "d")],
            watches=[watch(0.5, False), watch(12, True)],
        ),
        -3,
        25,
    )
    offline = windows(
        perceived(
            "offline",
            segments=[segment(0, 10), segment(10, 20), segment(20, 25), segment(25, 28)],
            captions=[caption(0, 10, "b'"), caption(10, 20, "c"), caption(20, 25, "d"), caption(25, 28, "e")],
            watches=[watch(12, True)],
        ),
        0,
        27,
    )
    diff = compare("s.mcap", live, offline)
    assert diff.differences == 0 and not diff.crossed(Thresholds(exact=True)), diff.as_dict()
    assert diff.drift.matched == 26 and diff.boundaries.exact == 2  # 0-26 s windows; ends at 20 and 25 s
    assert diff.edge_excluded > 0

    # a real change in the middle is still one
    changed = windows(
        perceived(
            "offline",
            segments=[segment(0, 10), segment(10, 15), segment(15, 25), segment(25, 28)],
            captions=[caption(0, 10, "b'"), caption(10, 15, "c"), caption(15, 25, "d"), caption(25, 28, "e")],
            watches=[watch(12, True)],
        ),
        0,
        27,
    )
    live2 = windows(
        perceived(
            "live",
            segments=[segment(-5, 0.13), segment(0.13, 10), segment(10, 20), segment(20, 25)],
            captions=[caption(-5, 0.13, "a"), caption(0.13, 10, "b"), caption(10, 20, "c"), caption(20, 25, "d")],
            watches=[watch(0.5, False), watch(12, True)],
        ),
        -3,
        25,
    )
    assert compare("s.mcap", live2, changed).crossed(Thresholds(exact=True))


def test_a_recording_from_its_first_frame_loses_nothing_at_its_start():
    both = [segment(0, 2), segment(2, 5)]
    a = windows(perceived("a", segments=both), 0, 4)
    b = windows(perceived("b", segments=[segment(0, 3), segment(3, 5)]), 0, 4)
    diff = compare("s.mcap", a, b)
    assert diff.edge_excluded == 0 and len(diff.boundaries.lost) == 1 and len(diff.boundaries.gained) == 1


def test_the_offline_runs_flush_where_the_recording_stopped_is_not_a_difference():
    """The live run's last segment was still open when its recording stopped (all its windows recorded);
    the offline run closes it at the recording's end: that last boundary is the edge, not a change."""
    live = windows(perceived("live", segments=[segment(0, 4), segment(4, 8)], captions=[caption(4, 8, "x")]), 0, 11)
    offline = windows(
        perceived(
            "offline",
            segments=[segment(0, 4), segment(4, 8), segment(8, 12)],
            captions=[caption(4, 8, "x"), caption(8, 12, "y")],
        ),
        0,
        11,
    )
    diff = compare("s.mcap", live, offline)
    assert diff.differences == 0 and diff.edge_excluded == 2, diff.as_dict()
