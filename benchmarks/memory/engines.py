"""Which embedded engine: SQLite + sqlite-vec vs LanceDB on insert + exact/filtered kNN of N D-dim vectors.

    python -m benchmarks.memory.engines --n 100000 --dim 256

LanceDB is not a dependency of the project: this needs it installed beside (pip install --target DIR lancedb,
PYTHONPATH=DIR); without it only the SQLite row prints. Prints one JSON line per engine and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pysqlite3 import dbapi2 as sqlite3  # stdlib sqlite3 may be built without extension loading


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_sqlite(root: Path, vecs: np.ndarray, queries: np.ndarray, k: int) -> dict:
    import sqlite_vec

    db = sqlite3.connect(root / "m.db")
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    d = vecs.shape[1]
    db.execute(f"CREATE VIRTUAL TABLE v USING vec0(emb float[{d}] distance_metric=cosine, t integer)")
    t0 = time.perf_counter()
    for i in range(0, len(vecs), 1000):
        with db:
            db.executemany(
                "INSERT INTO v(rowid, emb, t) VALUES (?, ?, ?)",
                [(j + 1, vecs[j].tobytes(), j) for j in range(i, min(i + 1000, len(vecs)))],
            )
    ins = time.perf_counter() - t0
    lat, flat = [], []
    for q in queries:
        t0 = time.perf_counter()
        db.execute("SELECT rowid, distance FROM v WHERE emb MATCH ? AND k = ?", (q.tobytes(), k)).fetchall()
        lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        db.execute(
            "SELECT rowid, distance FROM v WHERE emb MATCH ? AND k = ? AND t >= ?", (q.tobytes(), k, len(vecs) // 2)
        ).fetchall()
        flat.append(time.perf_counter() - t0)
    size = sum(p.stat().st_size for p in root.glob("m.db*"))
    return {
        "engine": "sqlite-vec",
        "insert_per_s": len(vecs) / ins,
        "knn_p50_ms": statistics.median(lat) * 1e3,
        "filtered_knn_p50_ms": statistics.median(flat) * 1e3,
        "bytes": size,
    }


def bench_lance(root: Path, vecs: np.ndarray, queries: np.ndarray, k: int) -> dict:
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(root / "lance"))
    d = vecs.shape[1]
    schema = pa.schema([pa.field("emb", pa.list_(pa.float32(), d)), pa.field("t", pa.int64())])
    table = db.create_table("v", schema=schema)
    t0 = time.perf_counter()
    for i in range(0, len(vecs), 1000):
        chunk = vecs[i : i + 1000]
        table.add(
            pa.table(
                {
                    "emb": pa.FixedSizeListArray.from_arrays(pa.array(chunk.ravel()), d),
                    "t": pa.array(np.arange(i, i + len(chunk))),
                }
            )
        )
    ins = time.perf_counter() - t0
    lat, flat = [], []
    for q in queries:
        t0 = time.perf_counter()
        table.search(q, vector_column_name="emb").metric("cosine").limit(k).to_list()
        lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        table.search(q, vector_column_name="emb").metric("cosine").where(
            f"t >= {len(vecs) // 2}", prefilter=True
        ).limit(k).to_list()
        flat.append(time.perf_counter() - t0)
    size = sum(p.stat().st_size for p in (root / "lance").rglob("*") if p.is_file())
    return {
        "engine": "lancedb",
        "insert_per_s": len(vecs) / ins,
        "knn_p50_ms": statistics.median(lat) * 1e3,
        "filtered_knn_p50_ms": statistics.median(flat) * 1e3,
        "bytes": size,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    vecs, queries = _unit(rng, a.n, a.dim), _unit(rng, a.queries, a.dim)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(bench_sqlite(Path(tmp), vecs, queries, a.k))
        try:
            rows.append(bench_lance(Path(tmp), vecs, queries, a.k))
        except ImportError as exc:
            print(json.dumps({"engine": "lancedb", "skipped": str(exc)}))
    for r in rows:
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}))
    if len(rows) == 2:
        s, lance = rows
        print(json.dumps({"lancedb/sqlite": {k: round(lance[k] / s[k], 2) for k in s if k != "engine"}}))


if __name__ == "__main__":
    main()
