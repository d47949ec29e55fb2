"""The short text report of a `perception test` comparison (the JSON one is `SessionDiff.as_dict`)."""

from __future__ import annotations

from perception.sessions.diff import SessionDiff, Thresholds

MAX_LISTED = 10  # changes listed per kind; the counts are always complete


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def format_report(d: SessionDiff, thresholds: Thresholds) -> str:
    b, e = d.boundaries, d.drift
    lines = [
        f"session   {d.session}",
        f"baseline  {d.baseline}",
        f"candidate {d.candidate}",
        f"differences: {d.differences}"
        + (f" ({d.edge_excluded} items cut by the recording's start or end not compared)" if d.edge_excluded else ""),
        (
            f"boundaries: {b.baseline} -> {b.candidate}, matched {b.matched} within {b.tolerance_s} s "
            f"(exact {b.exact}), precision {b.precision:.3f} recall {b.recall:.3f}, "
            f"mean shift {b.mean_shift_s:.3f} s (max {b.max_shift_s:.3f}), relabelled {b.relabelled}"
        ),
    ]
    for kind, items in (("lost", b.lost), ("gained", b.gained)):
        if items:
            shown = ", ".join(f"{cam} {t:.2f}s" for cam, t in items[:MAX_LISTED])
            lines.append(f"  boundaries {kind}: {shown}{' ...' if len(items) > MAX_LISTED else ''}")
    cosine = "-" if e.cosine_mean is None else f"mean {e.cosine_mean:.6f} p5 {e.cosine_p5:.6f} min {e.cosine_min:.6f}"
    lines.append(
        f"embeddings: {e.matched} windows in both ({e.bitwise_equal} bitwise equal), cosine {cosine}, "
        f"only baseline {e.only_baseline}, only candidate {e.only_candidate}"
    )
    counts = {k: sum(c.kind == k for c in d.captions) for k in ("changed", "moved", "gained", "lost")}
    lines.append("captions: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for c in d.captions[:MAX_LISTED]:
        where = f"{c.cam} {c.start_s:.2f}-{c.end_s:.2f}s"
        if c.kind in ("changed", "moved"):
            moved = f" (now {c.candidate_span_s[0]:.2f}-{c.candidate_span_s[1]:.2f}s)" if c.candidate_span_s else ""
            lines.append(f"  {c.kind:7s} {where}{moved}: {c.baseline!r} -> {c.candidate!r}")
        else:
            lines.append(f"  {c.kind:7s} {where}: {c.baseline or c.candidate!r}")
    lines.append(
        f"watch events: gained {sum(w.kind == 'gained' for w in d.watches)}, lost {sum(w.kind == 'lost' for w in d.watches)}"
    )
    for w in d.watches[:MAX_LISTED]:
        lines.append(f"  {w.kind:7s} {w.cam} {w.t_s:.2f}s {w.watch} {'ON' if w.active else 'off'}")
    for side, lat in d.latency.items():
        if lat.get("embedding_p50_ms") is not None:
            lines.append(
                f"latency ({side}, live): frame->embedding p50 {_ms(lat['embedding_p50_ms'])} p99 "
                f"{_ms(lat['embedding_p99_ms'])}, frame->caption p50 {_ms(lat['caption_p50_ms'])} p99 "
                f"{_ms(lat['caption_p99_ms'])}"
            )
    if d.run:
        r = d.run
        lines.append(
            f"offline run: {r.get('windows')} windows in {r.get('feed_s')} s ({r.get('windows_per_s')} windows/s; "
            f"{r.get('wall_s')} s with start-up), "
            f"forward p50 {_ms(r.get('forward_p50_ms'))} p99 {_ms(r.get('forward_p99_ms'))}"
        )
    crossed = d.crossed(thresholds)
    if not thresholds.gated:
        lines.append(
            f"not gated: {d.differences} differences reported, no threshold given, exit 0 "
            "(gate with --exact or --max-*/--min-*; see --help)"
        )
    else:
        lines.append("FAIL: " + "; ".join(crossed) if crossed else "ok")
    return "\n".join(lines)
