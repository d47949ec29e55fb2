"""The bus CLI against a live bus: real proxy and talker processes, real `perception` subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import pytest
import yaml

from bus.config import BusConfig

REPO = Path(__file__).resolve().parent.parent
PERCEPTION = [sys.executable, "-m", "perception.cli"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PERCEPTION_LOG_LEVEL"] = "WARNING"
    return env


def _popen(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def live_bus():
    """A config file, a proxy process and a talker (100 Hz text, frames) on a private runtime dir."""
    rdir = Path(tempfile.mkdtemp(prefix="bus-", dir="/tmp"))
    cfg_path = rdir / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump({"name": "test", "bus": {"runtime_dir": str(rdir)}}))
    bus_json = BusConfig.local(rdir).model_dump_json()
    demo = [sys.executable, "-m", "benchmarks.bus.demo"]
    proxy = _popen(demo + ["proxy", "--bus-json", bus_json])
    talker = _popen(demo + ["talker", "--bus-json", bus_json, "--rate", "100", "--src", "cli-talker"])
    yield cfg_path
    for p in (talker, proxy):
        p.terminate()
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
    shutil.rmtree(rdir, ignore_errors=True)


def test_topics_echo_hz_against_a_live_bus(live_bus):
    cfg = ["--config", str(live_bus)]
    # the three commands run side by side: each pays the CLI's start-up once
    topics = _popen(PERCEPTION + ["topics", *cfg, "--duration", "3", "--json"])
    echo = _popen(PERCEPTION + ["echo", "demo/text", *cfg, "-n", "5", "--duration", "60"])
    hz = _popen(PERCEPTION + ["hz", "demo/text", *cfg, "--duration", "4.5", "--json"])
    t_out, t_err = topics.communicate(timeout=120)
    e_out, e_err = echo.communicate(timeout=120)
    h_out, h_err = hz.communicate(timeout=120)
    assert topics.returncode == 0, t_err
    assert echo.returncode == 0, e_err
    assert hz.returncode == 0, h_err

    by_topic = {r["topic"]: r for r in json.loads(t_out)["topics"]}
    assert by_topic["demo/text"]["type"] == "Text"
    assert by_topic["demo/text"]["publishers"] == ["cli-talker"]
    assert by_topic["frames/demo"]["type"] == "Blob"
    assert by_topic["stats/bus"]["type"] == "Stats"
    assert 20 < by_topic["demo/text"]["rate_hz"] < 200  # a 100 Hz talker on a busy 2-core machine

    rows = [json.loads(x) for x in e_out.splitlines()]
    assert len(rows) == 5
    assert all(r["topic"] == "demo/text" and r["type"] == "Text" for r in rows)
    seqs = [r["seq"] for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert rows[0]["msg"]["text"] == f"hello {seqs[0]}"

    reports = [json.loads(x) for x in h_out.splitlines()]
    measured = [r for r in reports if r.get("window", 0) >= 10]
    assert measured, h_out
    last = measured[-1]
    assert 20 < last["rate_hz"] < 200
    assert 0 < last["min_s"] <= 1 / last["rate_hz"] <= last["max_s"]
    assert last["std_s"] >= 0


def test_echo_summarises_arrays(live_bus):
    out = subprocess.run(
        PERCEPTION + ["echo", "frames/demo", "--config", str(live_bus), "-n", "1", "--duration", "60"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.splitlines()[0])
    assert row["msg"]["data"] == "<ndarray uint8 (48, 64, 3)>"


def nested(depth: int) -> dict:
    value: object = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value  # type: ignore[return-value]


def deep_raw(topic: str, depth: int, seq: int) -> list[bytes]:
    """A SkillEvent whose `data` is `depth` maps deep, packed by hand (msgpack's packer refuses > 511)."""
    pk = msgpack.packb
    body = (
        b"\x84"
        + pk("skill")
        + pk("deep")
        + pk("name")
        + pk("n")
        + pk("text")
        + pk("")
        + pk("data")
        + b"\x81\xa1a" * depth
        + pk("leaf")
    )
    header = (
        b"\x86"
        + pk("type")
        + pk("SkillEvent")
        + pk("v")
        + pk(1)
        + pk("seq")
        + pk(seq)
        + pk("src")
        + pk("deep-talker")
        + pk("t")
        + pk(time.time_ns())
        + pk("body")
        + body
    )
    return [topic.encode(), header]


async def test_echo_survives_deeply_nested_messages(live_bus):
    from bus.codec import DecodeError, decode, encode
    from bus.pubsub import Publisher
    from skills.messages import SkillEvent

    config = BusConfig.local(live_bus.parent)
    deep = SkillEvent(skill="deep", name="n", data=nested(30))  # just under bus.max_depth (32)
    assert decode(encode("deep/x", deep, seq=0, src="s", t_ns=1)).msg == deep  # the codec takes it
    with pytest.raises(DecodeError, match="too_deep"):  # ... and refuses the 600-deep one
        decode(deep_raw("deep/x", 600, 0))

    echo = await asyncio.create_subprocess_exec(
        *PERCEPTION,
        "echo",
        "deep/",
        "--config",
        str(live_bus),
        "-n",
        "4",
        "--duration",
        "120",
        cwd=REPO,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    pub = Publisher(config, src="deep-talker")
    await pub.ready()
    seq = 0
    try:
        async with asyncio.timeout(120):
            while echo.returncode is None:  # rounds until echo has printed 4 lines (it joins when it joins)
                pub.publish_raw(encode("deep/x", deep, seq=seq, src="deep-talker", t_ns=time.time_ns()))
                pub.publish_raw(deep_raw("deep/x", 600, seq + 1))
                pub.publish_raw(
                    encode(
                        "deep/x",
                        SkillEvent(skill="deep", name="after"),
                        seq=seq + 2,
                        src="deep-talker",
                        t_ns=time.time_ns(),
                    )
                )
                seq += 3
                try:
                    await asyncio.wait_for(asyncio.shield(echo.wait()), 0.2)
                except TimeoutError:
                    pass
            out, err = await echo.communicate()
    finally:
        pub.close()
        if echo.returncode is None:
            echo.kill()
            await echo.communicate()
    assert echo.returncode == 0, err.decode()[-2000:]
    assert b"Traceback" not in err and b"RecursionError" not in err
    rows = [json.loads(x) for x in out.decode().splitlines()]
    assert len(rows) == 4
    seqs = [r["seq"] for r in rows]
    assert all(s % 3 != 1 for s in seqs)  # the 600-deep ones are refused by the decoder, not printed
    names = [r["msg"]["name"] for r in rows]
    assert names in (["n", "after"] * 2, ["after", "n", "after", "n"])
    printed = next(r for r in rows if r["msg"]["name"] == "n")["msg"]["data"]
    assert "nested deeper than" in json.dumps(printed)  # summarise cut it: bounded output
    assert seqs[-1] - seqs[0] >= 2  # a 600-deep message went by between printed ones


def test_echo_without_a_bus_fails_clearly(tmp_path):
    rdir = Path(tempfile.mkdtemp(prefix="bus-", dir="/tmp"))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"bus": {"runtime_dir": str(rdir), "ready_timeout_s": 0.5}}))
    out = subprocess.run(
        PERCEPTION + ["echo", "x/", "--config", str(cfg)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    shutil.rmtree(rdir, ignore_errors=True)
    assert out.returncode == 1
    assert "no proxy answered" in out.stderr


def test_keys_writes_a_key_pair(tmp_path):
    out = subprocess.run(
        PERCEPTION + ["keys", str(tmp_path / "k"), "--name", "robot1"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "k" / "robot1.key").exists() and (tmp_path / "k" / "robot1.key_secret").exists()
    assert "robot1.key_secret" in out.stdout


def _keys(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        PERCEPTION + ["keys", *args], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120, check=False
    )


def test_keys_are_private_from_the_start_and_never_replaced_without_force(tmp_path):
    where = tmp_path / "k"
    old_umask = os.umask(0)  # the child inherits a umask that would leave new files world-readable
    try:
        first = _keys(str(where), "--name", "srv")
    finally:
        os.umask(old_umask)
    assert first.returncode == 0, first.stderr
    secret, public = where / "srv.key_secret", where / "srv.key"
    assert secret.stat().st_mode & 0o777 == 0o600
    before = (secret.read_bytes(), public.read_bytes())

    again = _keys(str(where), "--name", "srv")
    assert again.returncode == 2
    assert "exists" in again.stderr and "--force" in again.stderr and "Traceback" not in again.stderr
    assert (secret.read_bytes(), public.read_bytes()) == before  # untouched

    forced = _keys(str(where), "--name", "srv", "--force")
    assert forced.returncode == 0, forced.stderr
    assert secret.read_bytes() != before[0] and public.read_bytes() != before[1]
    assert secret.stat().st_mode & 0o777 == 0o600

    bad = _keys(str(where), "--name", "../outside")
    assert bad.returncode == 2 and "--name" in bad.stderr
    assert not (tmp_path / "outside.key").exists()


# `perception up` now runs the real pipeline (perception/nodes/launcher.py); its no-orphans, restart and
# output tests live in tests/nodes/test_pipeline.py.
