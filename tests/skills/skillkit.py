"""Shared helpers for the skills tests: a small random model, a private bus, CLI children, sessions."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import yaml

from bus.codec import encode
from bus.mcapfile import BusMcapWriter, pack_message
from perception.messages import Caption, Embedding, Event, LabelScore
from tests.support import REPO, SMALL_MODEL, child_env, perception_child, wait_line  # noqa: F401

PLANTED = "the purple triangle appears"
UNRELATED = "a robot arm picks up a cup"
# the session: (caption, windows) in order; each window's embedding is embed_text(caption)
SCRIPT = [("the red circle grows", 6), (PLANTED, 6), ("the blue square shrinks", 6)]
WINDOW_S = 0.25


def write_config(path: Path, runtime_dir: Path, checkpoint: Path) -> Path:
    cfg = {
        "name": "test",
        "bus": {"runtime_dir": str(runtime_dir), "stats_interval_s": 0.2, "ready_timeout_s": 10},
        "model": {"checkpoint": str(checkpoint), "device": "cpu", "dtype": "float32"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


async def perception(*args: str, cwd: Path = REPO) -> asyncio.subprocess.Process:
    return await perception_child(*args, cwd=cwd, env=child_env("INFO", OMP_NUM_THREADS="1"))


def write_session(path: Path, model, cam: str = "cam0") -> list[str]:
    """An MCAP session as `perception record` writes it: per window an Embedding (= embed_text of the
    scripted caption), per scripted segment an Event(segment) and a Caption. Returns the window captions."""
    texts = [t for t, n in SCRIPT for _ in range(n)]
    vecs = model.embed_text([t for t, _ in SCRIPT]).float().cpu().numpy()  # [S, D]
    writer = BusMcapWriter(path)
    writer.metadata("session", {"test": "skills"})
    t0 = time.time_ns()
    seqs: dict[str, int] = {}

    def put(topic: str, msg, t_ns: int) -> None:
        seq = seqs.get(topic, 0)
        seqs[topic] = seq + 1
        parts = encode(topic, msg, seq=seq, src="session", t_ns=t_ns)
        writer.write(
            topic, msg.TYPE, msg.VERSION, seq=seq, t_pub=t_ns, t_log=t_ns, data=pack_message(parts[1], parts[2:])
        )

    w = 0
    for seg_id, (text, n) in enumerate(SCRIPT):
        seg_start = w
        for _ in range(n):
            s0, s1 = w * WINDOW_S, w * WINDOW_S + 2.0
            t_ns = t0 + int(s1 * 1e9)
            put(
                f"embeddings/{cam}",
                Embedding(
                    cam=cam,
                    window=w,
                    start_ns=t0 + int(s0 * 1e9),
                    end_ns=t_ns,
                    start_s=s0,
                    end_s=s1,
                    model_id="test",
                    t_capture_ns=t_ns,
                    embedding=vecs[seg_id],
                ),
                t_ns,
            )
            w += 1
        span = dict(
            cam=cam,
            segment_id=seg_id,
            start_ns=t0 + int(seg_start * WINDOW_S * 1e9),
            end_ns=t0 + int(((w - 1) * WINDOW_S + 2.0) * 1e9),
            start_s=seg_start * WINDOW_S,
            end_s=(w - 1) * WINDOW_S + 2.0,
        )
        put(
            f"events/{cam}",
            Event(
                kind="segment",
                labels=[LabelScore(label=text, score=0.9)],
                t_capture_ns=span["end_ns"],
                embedding=vecs[seg_id],
                **span,
            ),
            span["end_ns"] + 1,
        )
        put(
            f"captions/{cam}",
            Caption(text=text, t_capture_ns=span["end_ns"], latency_ms=1.0, **span),
            span["end_ns"] + 2,
        )
    writer.close()
    return texts
