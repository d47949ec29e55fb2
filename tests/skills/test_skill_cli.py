"""`perception skill` as a real process: the docs snippet, narrator with -n, --duration, planner without
a world node, and clear errors for unknown skills."""

from __future__ import annotations

import asyncio
import json
import re
import time

from skillkit import REPO, perception, wait_line

import skills.messages  # noqa: F401  (registers Alert so this test can decode alerts)
from bus.pubsub import Publisher, Subscriber
from perception.messages import Caption


def caption(text: str, seg: int, cam: str = "cam0") -> Caption:
    t = time.time_ns()
    return Caption(
        cam=cam,
        segment_id=seg,
        text=text,
        start_ns=t,
        end_ns=t,
        start_s=seg * 2.0,
        end_s=seg * 2.0 + 2.0,
        t_capture_ns=t,
        latency_ms=1.0,
    )


def docs_snippet() -> str:
    text = (REPO / "docs" / "skills.md").read_text()
    block = re.search(r"## Write one \(copy this\)\n\n```python\n(.*?)```", text, re.S).group(1)
    assert 15 <= len(block.strip().splitlines()) <= 30  # "a 20-line skill"
    return block


async def test_docs_snippet_runs(proxy, config_file, tmp_path, app_config):
    path = tmp_path / "red_spotter.py"
    path.write_text(docs_snippet())
    alerts = await Subscriber(app_config.bus, ["alerts/"], name="t").start()
    proc = await perception("skill", str(path), "--config", str(config_file), "-n", "3", "--rpc-timeout", "0.2")
    await wait_line(proc, "skill red-spotter ready")
    async with Publisher(app_config.bus, src="t") as pub:
        for i, text in enumerate(["the blue square shrinks", "the red circle grows", "the green star moves"]):
            await pub.publish("captions/cam0", caption(text, i))
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    got = await alerts.recv(timeout=5)
    assert got.topic == "alerts/cam0" and got.msg.phrase == "red" and got.msg.end_s == 4.0
    counters = json.loads(out.decode().strip().splitlines()[-1])["counters"]
    assert counters["handled.on_caption"] == 3 and counters["published"] == 1
    assert "no world node on this bus" in err.decode()  # the query timed out, the skill went on
    alerts.close()


async def test_narrator_prints_n_captions_and_exits(proxy, config_file, app_config):
    proc = await perception("skill", "narrator", "--config", str(config_file), "-n", "2")
    await wait_line(proc, "skill narrator ready")
    async with Publisher(app_config.bus, src="t") as pub:
        for i, text in enumerate(["the red circle grows", "the blue square shrinks", "not printed"]):
            await pub.publish("captions/cam0", caption(text, i))
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = out.decode().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} cam0 \[ +0\.00- +2\.00s\] the red circle grows", lines[0])
    assert lines[1].endswith("[   2.00-   4.00s] the blue square shrinks")
    assert "not printed" not in out.decode()


async def test_raising_skill_file_keeps_running_and_logs_context(proxy, config_file, app_config, tmp_path):
    path = tmp_path / "boom.py"
    path.write_text(
        "from skills import Skill\n"
        "class Boom(Skill):\n"
        "    name = 'boom'\n"
        "    def on_caption(self, c):\n"
        "        if 'boom' in c.text: raise ValueError('planted ' + c.text)\n"
        "        print('ok', c.text, flush=True)\n"
    )
    proc = await perception("skill", f"{path}:Boom", "--config", str(config_file), "-n", "3")
    await wait_line(proc, "skill boom ready")
    async with Publisher(app_config.bus, src="t") as pub:
        for i, text in enumerate(["boom one", "fine", "still fine"]):
            await pub.publish("captions/cam0", caption(text, i))
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert "ok fine" in out.decode() and "ok still fine" in out.decode()
    failure = next(json.loads(x) for x in err.decode().splitlines() if "skill handler failed" in x)
    assert failure["handler"] == "on_caption" and failure["topic"] == "captions/cam0" and failure["seq"] == 0
    assert "planted boom one" in failure["error"]


async def test_duration_without_messages_and_planner_without_world(proxy, config_file):
    t0 = time.monotonic()
    proc = await perception(
        "skill", "planner", "--config", str(config_file), "--duration", "3", "--rpc-timeout", "0.2", "--interval", "0.5"
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    decisions = [json.loads(x) for x in out.decode().splitlines() if x.startswith('{"goal"')]
    assert decisions and all(d["decision"] == "wait" and "now" in d["errors"] for d in decisions)
    assert time.monotonic() - t0 < 45


async def test_unknown_skill_is_a_clear_error():
    proc = await perception("skill", "nosuch")
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "unknown skill 'nosuch'" in err.decode() and "narrator" in err.decode()


def docs_test_snippet() -> str:
    text = (REPO / "docs" / "skills.md").read_text()
    return re.search(r"## Test one \(`perception.testing`\).*?```python\n(.*?)```", text, re.S).group(1)


async def test_docs_harness_snippet_passes(tmp_path, monkeypatch):
    """The skill-author's test in docs/skills.md, run on the docs' own skill: the harness in public use. It
    is self-contained: it imports the skill from red_spotter.py beside it and marks itself asyncio."""
    (tmp_path / "red_spotter.py").write_text(docs_snippet())
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {}
    exec(compile(docs_test_snippet(), "test_red_spotter.py", "exec"), namespace)
    await namespace["test_red_spotter_alerts_on_red_only"]()
