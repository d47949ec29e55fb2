"""`perception test`: a live session recorded with `perception up --record`, run again offline.

An unchanged pipeline reproduces its live run exactly (bitwise-equal embeddings, the same events and
captions); planted changes (a segmenter threshold, a checkpoint) show up as the right kind of difference
with the right count, counted here independently of perception/sessions from the files themselves; the
exit status follows the thresholds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import msgpack
import pytest
import yaml
from mcap.reader import make_reader

from tests.support import REPO, child_env, short_tmp

PERCEPTION = [sys.executable, "-m", "perception.cli"]
PIPELINE = {
    "nodes": ["capture", "encoder", "events", "decoder"],
    "cameras": [{"name": "cam0", "seed": 3, "fps": 10, "size": 32, "duration_s": 8, "loop": False}],
    "encoder": {"threads": 1, "frame_step": 1, "stride_frames": 2},
    "events": {
        "threshold": 3.0,
        "min_len_s": 0.4,
        "max_len_s": 3.0,
        "watch": [{"label": "the red circle grows", "enter": 0.0, "leave": -0.2}],
    },
    "decoder": {"threads": 1},
    "supervisor": {"backoff_initial_s": 0.2, "stop_timeout_s": 10.0},
}


def perception(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PERCEPTION, *args], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout
    )


def config(runtime_dir, checkpoint, **events) -> dict:
    pipeline = {**PIPELINE, "events": {**PIPELINE["events"], **events}}
    return {
        "name": "session-test",
        "bus": {"runtime_dir": str(runtime_dir), "stats_interval_s": 0.5, "ready_timeout_s": 30.0},
        "model": {"checkpoint": str(checkpoint), "device": "cpu", "dtype": "float32"},
        "pipeline": pipeline,
    }


def write(path, cfg: dict):
    path.write_text(yaml.safe_dump(cfg))
    return path


def outputs(path) -> dict[str, list[dict]]:
    """Bodies of the recorded messages by topic kind, read with the official mcap reader and msgpack only."""
    out: dict[str, list[dict]] = {}
    with open(path, "rb") as f:
        for _schema, channel, message in make_reader(f).iter_messages():
            header = msgpack.unpackb(message.data)[0]
            out.setdefault(channel.topic.split("/")[0], []).append(header["body"])
    return out


@pytest.fixture(scope="module")
def session():
    """A live session recorded from its first frame: (dir, recording, config dict)."""
    from tests.support import small_random_checkpoint

    rdir = short_tmp("st-")
    checkpoint = small_random_checkpoint(rdir / "ckpt", seed=0)
    cfg = config(rdir, checkpoint)
    path = write(rdir / "live.yaml", cfg)
    rec = rdir / "live.mcap"
    up = perception("up", str(path), "--record", str(rec), "--duration", "12", timeout=240)
    assert up.returncode == 0, up.stderr[-3000:]
    yield rdir, rec, cfg
    shutil.rmtree(rdir, ignore_errors=True)


def test_an_unchanged_pipeline_reproduces_its_live_run_exactly(session):
    rdir, rec, _ = session
    live = outputs(rec)
    segments = [e for e in live["events"] if e["kind"] == "segment"]
    watches = [e for e in live["events"] if e["kind"] == "watch"]
    assert len(live["embeddings"]) >= 25 and len(segments) >= 2 and watches and len(live["captions"]) == len(segments)

    res = perception("test", str(rec), "--exact", "--json", str(rdir / "same.json"))
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    report = json.loads((rdir / "same.json").read_text())["sessions"][0]
    assert report["differences"] == 0 and report["crossed"] == []
    drift = report["drift"]
    assert drift["matched"] == drift["bitwise_equal"] == len(live["embeddings"])
    assert report["boundaries"]["exact"] == len(segments)
    offline = outputs(rdir / "live.test.mcap")  # beside the input
    assert sorted(c["text"] for c in offline["captions"]) == sorted(c["text"] for c in live["captions"])
    assert "differences: 0" in res.stdout and res.stdout.rstrip().endswith("ok")


def test_a_changed_threshold_moves_boundaries_and_nothing_else(session):
    rdir, rec, cfg = session
    changed = write(rdir / "threshold.yaml", config(rdir, cfg["model"]["checkpoint"], threshold=30.0))
    out, js = rdir / "threshold.mcap", rdir / "threshold.json"
    res = perception(
        "test", str(rec), "--config", str(changed), "--out", str(out), "--tolerance", "0", "--json", str(js),
        "--min-boundary-f1", "1.0",
    )  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr[-3000:]
    report = json.loads(js.read_text())["sessions"][0]
    assert any("boundary F1" in c for c in report["crossed"])

    ends = lambda path: {e["end_ns"] for e in outputs(path)["events"] if e["kind"] == "segment"}  # noqa: E731
    before, after = ends(rec), ends(out)
    b = report["boundaries"]
    assert len(b["lost"]) == len(before - after) and len(b["gained"]) == len(after - before)
    assert before != after and b["exact"] == len(before & after)
    assert report["drift"]["bitwise_equal"] == report["drift"]["matched"]  # the model did not change
    assert report["watches"] == []  # watch crossings do not depend on the segmenter


def test_a_different_checkpoint_drifts_every_embedding_and_is_its_own_baseline(session):
    from tests.support import small_random_checkpoint

    rdir, rec, _ = session
    other = small_random_checkpoint(rdir / "ckpt-other", seed=1)
    changed = write(rdir / "checkpoint.yaml", config(rdir, other))
    out, js = rdir / "checkpoint.mcap", rdir / "checkpoint.json"
    res = perception(
        "test", str(rec), "--config", str(changed), "--out", str(out), "--json", str(js), "--min-cosine", "0.99"
    )
    assert res.returncode == 1, res.stdout + res.stderr[-3000:]
    report = json.loads(js.read_text())["sessions"][0]
    drift = report["drift"]
    assert drift["matched"] == len(outputs(rec)["embeddings"]) and drift["bitwise_equal"] == 0
    assert drift["cosine_p5"] < 0.99 and any("cosine" in c for c in report["crossed"])

    # the same candidate again, against the first run's file: offline runs reproduce each other
    again = perception(
        "test", str(rec), "--config", str(changed), "--out", str(rdir / "again.mcap"), "--against", str(out), "--exact"
    )
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert "differences: 0" in again.stdout


def test_a_session_that_cannot_be_run_exits_2_with_the_reason(tmp_path, session):
    from tests.record.conftest import write_synthetic

    rdir, _, cfg = session
    bare = tmp_path / "no-frames.mcap"
    write_synthetic(bare, n=3)
    res = perception("test", str(bare))
    assert res.returncode == 2 and "stores no config" in res.stderr
    res = perception("test", str(bare), "--config", str(rdir / "live.yaml"))
    assert res.returncode == 2 and "holds no frames" in res.stderr
    res = perception("up", str(rdir / "live.yaml"), "--record", str(bare))  # never overwrites a recording
    assert res.returncode == 2 and "refusing to overwrite" in res.stderr
