"""End to end: `perception up --json` as a real process tree on a synthetic stream with known segments.

One pipeline is shared by the tests of this module (start-up dominates): captions and events arrive with
far fewer decodes than windows, the world node returns what was published, `perception ask` answers, a
node killed with SIGKILL is restarted while the rest keeps publishing, and Ctrl-C leaves no process.
With the shipped checkpoint (checkpoints/tiny) it also checks captions against the ground truth and
that `ask` gets colours right; with the random development model those two are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import threading
import time

import psutil
import pytest

from bus.message import Stats
from bus.pubsub import Subscriber
from bus.rpc import RpcClient
from perception.config import load_config
from perception.data.stream import ShapesStream
from perception.data.vocab import COLOUR_NAMES, SHAPES, parse_slots
from perception.eval.stream_captions import Caption, StreamScore, score

from .conftest import (
    TRAINED,
    interrupt,
    perception,
    pipeline_config,
    popen_perception,
    short_tmp,
    trained_available,
    write_config,
)

# The train split: this module tests that the service hands the model the right windows and questions;
# generalisation to held-out compositions is `perception eval`'s job (a mid-training snapshot answered
# colour questions on held-out stream windows far worse than on held-out clips).
SEED, DURATION, SPLIT = 5, 120.0, "train"


class Pipeline:
    """A running `perception up` with its stdout JSON lines collected by a reader thread."""

    def __init__(self, proc, config_path, trained: bool):
        self.proc = proc
        self.config_path = config_path
        self.config = load_config(config_path)
        self.trained = trained
        self.lines: list[dict] = []
        self.pids: set[int] = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def captions(self) -> list[dict]:
        return [x for x in self.lines if x["type"] == "Caption"]

    def segments(self) -> list[dict]:
        return [x for x in self.lines if x["type"] == "Event" and x["kind"] == "segment"]

    def record_children(self):
        try:
            self.pids |= {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def pipeline(random_checkpoint):
    rdir = short_tmp("np-")
    trained = trained_available()
    checkpoint = TRAINED if trained else random_checkpoint
    size = 64 if trained else 32
    pipe = {
        "cameras": [
            {"name": "cam0", "seed": SEED, "split": SPLIT, "duration_s": DURATION, "size": size, "loop": False}
        ],
        "encoder": {"threads": 1},
        "events": {"max_len_s": 8.0 if trained else 2.7},  # 30 or 10 windows at stride 8 / 30 fps
        "decoder": {"threads": 1},
    }
    cfg = write_config(rdir / "cfg.yaml", pipeline_config(rdir, checkpoint, **pipe))
    proc = popen_perception("up", str(cfg), "--json")
    p = Pipeline(proc, cfg, trained)
    deadline = time.monotonic() + 240
    while not p.captions():  # up and producing (start-up loads the model in four processes)
        assert proc.poll() is None, f"perception up exited early: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no caption within 240 s"
        p.record_children()
        time.sleep(0.2)
    p.record_children()
    yield p
    interrupt(proc)
    shutil.rmtree(rdir, ignore_errors=True)


async def latest_stats(config, node: str, timeout: float = 10.0, where=lambda c: True) -> dict:
    async with Subscriber(config.bus, [f"stats/{node}"], name="test") as sub:
        async with asyncio.timeout(timeout):
            while True:
                env = await sub.recv()
                if isinstance(env.msg, Stats) and env.msg.node == node and where(env.msg.counters):
                    return env.msg.counters


async def test_captions_and_events_arrive_with_far_fewer_decodes_than_windows(pipeline):
    deadline = time.monotonic() + 60
    while len(pipeline.captions()) < 3:
        assert time.monotonic() < deadline, "fewer than 3 captions in 60 s"
        await asyncio.sleep(0.2)
    cap = pipeline.captions()[0]
    assert cap["topic"] == "captions/cam0" and cap["text"].strip()
    assert cap["latency_ms"] > 0 and cap["end_s"] > cap["start_s"]
    assert {c["segment_id"] for c in pipeline.captions()} <= {s["segment_id"] for s in pipeline.segments()}
    seg = pipeline.segments()[0]
    assert seg["labels"] and "embedding" not in seg
    enc = await latest_stats(pipeline.config, "encoder")
    dec = await latest_stats(pipeline.config, "decoder")
    assert enc["windows"] >= 10
    assert dec["decodes"] * 3 <= enc["windows"], (dec["decodes"], enc["windows"])


async def test_world_returns_what_was_published(pipeline):
    printed = {(c["segment_id"], c["text"]) for c in pipeline.captions()}
    async with RpcClient(pipeline.config.bus, timeout=10, retries=1) as rpc:
        hist = await rpc.call("history", {"camera": "cam0", "kinds": ["caption"]})
        stored = {(c["segment_id"], c["text"]) for c in hist["items"]}
        assert printed <= stored  # everything printed so far is remembered (more may have arrived since)
        now = (await rpc.call("now", {}))["cameras"]["cam0"]
        assert now["current_segment"]["end_s"] >= now["last_segment"]["end_s"]
        assert now["latest_caption"]["segment_id"] >= max(s for s, _ in printed)
        text = pipeline.captions()[0]["text"]
        found = (await rpc.call("search", {"text": text, "camera": "cam0", "k": 3}))["results"]
        assert 1 <= len(found) <= 3 and found[0]["score"] >= found[-1]["score"]
        assert all(r["kind"] == "segment" for r in found)


def ask(pipeline, question: str, choices: list[str]) -> dict:
    out = perception(
        "ask", question, "--choices", ",".join(choices), "--config", str(pipeline.config_path), timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


async def test_ask_answers_with_scores(pipeline):
    result = await asyncio.to_thread(ask, pipeline, "what colour is the circle?", list(COLOUR_NAMES))
    assert result["answer"] in COLOUR_NAMES and set(result["scores"]) == set(COLOUR_NAMES)
    assert result["camera"] == "cam0" and result["end_s"] > 0


async def test_ask_gets_colours_right(pipeline):
    if not pipeline.trained:
        pytest.skip("needs the trained checkpoints/tiny (not in the repo yet)")
    stream = ShapesStream(seed=SEED, split=SPLIT, duration_s=DURATION, fps=30.0, size=64)
    right = total = 0
    deadline = time.monotonic() + 60
    async with RpcClient(pipeline.config.bus, timeout=20, retries=0) as rpc:  # via the world node
        while total < 6 and time.monotonic() < deadline:
            for shape in SHAPES:  # ask about every shape; score the one acting in the window's segment
                result = await rpc.call(
                    "ask", {"question": f"what colour is the {shape}?", "choices": list(COLOUR_NAMES), "camera": "cam0"}
                )
                seg = stream.segment_at(result["end_s"])
                settled = result["end_s"] - seg.start_s >= 2.0  # the whole window inside one segment
                if seg.slots.shape == shape and seg.slots.action != "change_colour" and settled:
                    total += 1
                    right += result["answer"] == seg.slots.colour
            await asyncio.sleep(1.0)
    assert total >= 2 and right / total > 0.5, (right, total)


async def test_trained_captions_are_slot_sentences(pipeline):
    if not pipeline.trained:
        pytest.skip("needs the trained checkpoints/tiny (not in the repo yet)")
    caps = pipeline.captions()
    parsed = [parse_slots(c["text"]) for c in caps]
    assert len(caps) >= 3 and sum(p is not None for p in parsed) / len(caps) > 0.5, [c["text"] for c in caps]


JUDGED_S = 45.0  # stream seconds the slot checks wait for: 7 true segments of this stream, not a handful


async def judged_captions(pipeline) -> tuple[StreamScore, list]:
    """Captions printed once they reach JUDGED_S of stream time, scored against the ground truth exactly as
    `python -m perception.eval.stream_captions` scores its offline replay (the figures in docs/service.md)."""
    if not pipeline.trained:
        pytest.skip("needs the trained checkpoints/tiny (not in the repo yet)")
    deadline = time.monotonic() + 150
    while not pipeline.captions() or pipeline.captions()[-1]["end_s"] < JUDGED_S:
        assert time.monotonic() < deadline, f"captions did not reach {JUDGED_S} s of stream time in 150 s"
        await asyncio.sleep(0.5)
    stream = ShapesStream(seed=SEED, split=SPLIT, duration_s=DURATION, fps=30.0, size=64)
    caps = [Caption(c["start_s"], c["end_s"], c["text"]) for c in pipeline.captions()]
    detail = [(c.text, stream.segment_at((c.start_s + c.end_s) / 2).caption) for c in caps]
    return score(stream, caps, SEED), detail


async def test_caption_slots_match_ground_truth_for_most_segments(pipeline):
    """Per true segment that elapsed while captions were printed: the captions that mostly lie on it (an online
    segment can straddle a true boundary, or split one true segment in several) include one whose colour,
    shape and action all match it. The looser `mentioned` check: the stricter `described` (the one caption
    covering most of the segment) is the figure `perception eval` reports, not a bar for a 45 s run."""
    r, detail = await judged_captions(pipeline)
    assert r.segments + r.ambiguous >= 6 and r.segments >= 4, (r, detail)  # 7 elapsed, 2 of them ambiguous
    assert r.mentioned / r.segments > 0.5, (r, detail)


async def test_caption_colours_and_actions_match_ground_truth(pipeline):
    """Per caption, colour and action separately: a service that garbles frames, windows or cameras on the
    way to captions drops them to chance (1/6, 1/10). The bars sit under what the model itself reaches on
    whole streams (colour 0.83, action 0.53 per caption, docs/service.md), well above chance."""
    r, detail = await judged_captions(pipeline)
    assert r.colour / r.captions > 0.5 and r.action / r.captions > 0.25, (r, detail)


async def test_a_killed_node_is_restarted_and_the_pipeline_keeps_publishing(pipeline):
    before = await latest_stats(pipeline.config, "decoder")
    old_pid = int(before["pid"])
    os.kill(old_pid, signal.SIGKILL)
    after = await latest_stats(
        pipeline.config, "decoder", timeout=120, where=lambda c: int(c["pid"]) != old_pid and c["ready"] == 1
    )
    new_pid = int(after["pid"])
    assert new_pid != old_pid and psutil.pid_exists(new_pid)
    pipeline.record_children()
    n = len(pipeline.captions())
    deadline = time.monotonic() + 90
    while len(pipeline.captions()) <= n:  # captions come again, from the restarted decoder
        assert time.monotonic() < deadline, "no caption after the decoder restart"
        await asyncio.sleep(0.2)
    enc = await latest_stats(pipeline.config, "encoder")
    assert enc["uptime_s"] > after["uptime_s"]  # the encoder was not restarted with it


def spares(pipeline) -> list[psutil.Process]:
    out = []
    for child in psutil.Process(pipeline.proc.pid).children():
        with contextlib.suppress(psutil.Error):
            if child.name() == "spare:encoder":
                out.append(child)
    return out


async def test_a_killed_encoder_is_replaced_by_its_waiting_spare(pipeline):
    """supervisor.spares (default: encoder): a spare process waits with its model loaded; a killed encoder's
    place goes to it (same pid), and a new spare is started once it is ready."""
    deadline = time.monotonic() + 120
    while not spares(pipeline):
        assert time.monotonic() < deadline, "no spare:encoder process"
        await asyncio.sleep(0.2)
    (spare,) = spares(pipeline)
    pipeline.record_children()
    before = await latest_stats(pipeline.config, "encoder")
    os.kill(int(before["pid"]), signal.SIGKILL)
    after = await latest_stats(
        pipeline.config, "encoder", timeout=120, where=lambda c: int(c["pid"]) != int(before["pid"]) and c["ready"]
    )
    assert int(after["pid"]) == spare.pid  # the spare took over, no cold start
    while not spares(pipeline):  # the next spare, once the new encoder is ready
        assert time.monotonic() < deadline + 120, "no new spare after the take-over"
        await asyncio.sleep(0.2)
    assert spares(pipeline)[0].pid not in (spare.pid, int(before["pid"]))
    pipeline.record_children()  # the Ctrl-C test below checks none of them is left


async def test_a_second_pipeline_on_the_same_runtime_dir_is_refused_before_it_starts_anything(pipeline):
    """libzmq would rebind the live ipc paths and split the bus in two; the second `up` must say why and go."""
    before = await latest_stats(pipeline.config, "world")
    second = await asyncio.to_thread(perception, "up", str(pipeline.config_path), "--duration", "5")
    assert second.returncode == 2
    assert "another live process" in second.stderr
    after = await latest_stats(pipeline.config, "world", where=lambda c: c["uptime_s"] > before["uptime_s"])
    assert after["pid"] == before["pid"]  # the first pipeline's nodes are untouched


async def test_ctrl_c_leaves_no_process_behind(pipeline):
    pipeline.record_children()
    assert len(pipeline.pids) >= 6  # proxy + 5 nodes (+ the restarted decoder)
    pipeline.proc.send_signal(signal.SIGINT)
    rc = await asyncio.to_thread(pipeline.proc.wait, 60)
    assert rc == 0
    alive = [p for p in pipeline.pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    pipeline._reader.join(10)
    # on the way down events closed its open segment and the decoder captioned it before stopping
    last = max(s["segment_id"] for s in pipeline.segments())
    assert last in {c["segment_id"] for c in pipeline.captions()}
