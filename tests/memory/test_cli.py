"""`perception memory`: import a world.persist file, then search/last/at/spans/show/stats from the config's
store with no pipeline running; mistakes are one line and exit 2."""

from __future__ import annotations

import json
import time

import yaml

from perception.cli import main
from perception.nodes.world_store import encode_line
from tests.nodes.harness import embed

S = 10**9
TEXTS = ["a red cup on the kitchen table", "a blue box in the hallway"]


def persist_file(path, text_model) -> int:
    t0 = time.time_ns() - 7200 * S
    e = embed(text_model, TEXTS)
    base = dict(camera="front", start_s=0.0, end_s=3.0)
    recs = [
        ({"kind": "segment", "segment_id": 1, "start_ns": t0, "end_ns": t0 + 3 * S, **base, "labels": []}, e[0]),
        ({"kind": "caption", "segment_id": 1, "start_ns": t0, "end_ns": t0 + 3 * S, **base, "text": TEXTS[0], "latency_ms": 9.0}, None),
        ({"kind": "segment", "segment_id": 2, "start_ns": t0 + 60 * S, "end_ns": t0 + 63 * S, **base, "labels": []}, e[1]),
        ({"kind": "watch", "segment_id": 2, "start_ns": t0 + 60 * S, "end_ns": t0 + 60 * S, **base, "labels": [{"label": "door open", "score": 0.7}], "watch": "door open", "active": True, "watch_id": None}, None),
        ({"kind": "watch", "segment_id": 2, "start_ns": t0 + 90 * S, "end_ns": t0 + 90 * S, **base, "labels": [{"label": "door open", "score": 0.2}], "watch": "door open", "active": False, "watch_id": None}, None),
    ]  # fmt: skip
    path.write_bytes(b"".join(encode_line(r, emb) for r, emb in recs) + b"garbage line\n")
    return t0


def test_import_then_query_the_configs_store(tmp_path, small_checkpoint, text_model, capsys):
    store = tmp_path / "memory.db"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"checkpoint": str(small_checkpoint), "device": "cpu", "dtype": "float32"},
                "pipeline": {"world": {"store": str(store), "robot": "r7"}},
            }
        )
    )
    persist_file(tmp_path / "world.jsonl", text_model)

    def run(*args: str) -> tuple[int, str, str]:
        rc = main(["memory", *args, "--config", str(cfg)])
        out, err = capsys.readouterr()
        return rc, out, err

    rc, out, _ = run("import", str(tmp_path / "world.jsonl"), "--json")
    assert rc == 0 and json.loads(out) == {"written": 5, "dropped_lines": 1}
    rc, out, _ = run("stats", "--json")
    stats = json.loads(out)
    assert stats["rows"] == {"segments": 2, "captions": 1, "watches": 2, "windows": 0}
    assert stats["cameras"] == [{"robot": "r7", "camera": "front", "segments": 2}]
    rc, out, _ = run("search", TEXTS[0], "--json", "--limit", "1")
    hit = json.loads(out)["results"][0]
    assert (hit["segment_id"], hit["caption"], hit["robot"]) == (1, TEXTS[0], "r7") and hit["score"] > 0.99
    rc, out, _ = run("last", TEXTS[1], "--min-score", "0.9")
    assert rc == 0 and out.startswith(f"#{hit['id'] + 1} r7/front seg 2 ") and "no pose" in out
    rc, out, _ = run("spans", "--watch", "door open")
    assert rc == 0 and "for 30.0s" in out
    rc, out, _ = run("show", str(hit["id"]))
    assert rc == 0 and json.dumps(TEXTS[0]) in out
    rc, out, _ = run("at", "--near", "0,0,5")
    assert rc == 0 and "nothing matched" in out and "r7/front had no pose" in out
    for args, says in (
        (("show", "abc"), "show needs a segment id"),
        (("at",), "at needs 't_ns'"),
        (("search", "--near", "1,2"), "expected X,Y,R"),
        (("stats", "--store", str(tmp_path / "absent.db")), "no memory store at"),
        (("import", str(tmp_path / "absent.jsonl")), "import needs an existing"),
    ):
        rc, out, err = run(*args)
        assert rc == 2 and says in err and err.count("\n") == 1, (args, err)
