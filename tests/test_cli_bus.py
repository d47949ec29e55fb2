"""The bus CLI against a live bus: real proxy and talker processes, real `perception` subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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
    demo = [sys.executable, "-m", "bus.demo"]
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
    out = subprocess.run(PERCEPTION + ["echo", "frames/demo", "--config", str(live_bus), "-n", "1",
                                       "--duration", "60"], cwd=REPO, env=_env(), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.splitlines()[0])
    assert row["msg"]["data"] == "<ndarray uint8 (48, 64, 3)>"


def test_echo_without_a_bus_fails_clearly(tmp_path):
    rdir = Path(tempfile.mkdtemp(prefix="bus-", dir="/tmp"))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"bus": {"runtime_dir": str(rdir), "ready_timeout_s": 0.5}}))
    out = subprocess.run(PERCEPTION + ["echo", "x/", "--config", str(cfg)], cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=120)
    shutil.rmtree(rdir, ignore_errors=True)
    assert out.returncode == 1
    assert "no proxy answered" in out.stderr


def test_keys_writes_a_key_pair(tmp_path):
    out = subprocess.run(PERCEPTION + ["keys", str(tmp_path / "k"), "--name", "robot1"], cwd=REPO,
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "k" / "robot1.key").exists() and (tmp_path / "k" / "robot1.key_secret").exists()
    assert "robot1.key_secret" in out.stdout


# `perception up` now runs the real pipeline (perception/nodes/launcher.py); its no-orphans, restart and
# output tests live in tests/nodes/test_pipeline.py.
