"""Agents find the pipeline whatever their environment (issue 34).

What the user saw: a desktop agent starts `perception mcp` with the MCP SDK's default (minimal)
environment, without XDG_RUNTIME_DIR, so it looked for the bus under /tmp while `perception up` in the
terminal had bound it under $XDG_RUNTIME_DIR: every tool answered "no perception pipeline answers on
ipc:///tmp/vljepa-<uid>/rpc". Now the default bus dir is read from the file system, never from the
environment, and `--name` gives a second concurrent pipeline its own; clients pick it with the same flag.

Driven by the official MCP Python SDK's stdio client with `env=None` (its `get_default_environment()`),
against a pipeline started with XDG_RUNTIME_DIR set to a directory of its own.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.nodes.conftest import perception, write_config
from tests.support import REPO, child_env, perception_child, short_tmp, wait_line


def default_runtime_dir(name: str | None = None) -> Path:
    """bus.config.default_runtime_dir as the CLI sees it (in a child: in this process `bus` is tests/bus)."""
    code = f"from bus.config import default_runtime_dir as d; print(d({name!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


@pytest.fixture
def named_pipeline(small_checkpoint):
    """`perception up --name NAME` with XDG_RUNTIME_DIR set, on the default bus dir of that name."""
    name = f"t{uuid.uuid4().hex[:8]}"
    xdg = short_tmp("xdg-")
    cfg = {
        "bus": {"stats_interval_s": 0.5, "ready_timeout_s": 10.0},  # no runtime_dir: the default one
        "model": {"checkpoint": str(small_checkpoint), "device": "cpu", "dtype": "float32"},
        "pipeline": {"cameras": [{"name": "cam7", "seed": 3, "size": 32, "loop": True}]},
    }
    path = write_config(xdg / "cfg.yaml", cfg)
    yield name, path, xdg
    shutil.rmtree(xdg, ignore_errors=True)
    shutil.rmtree(default_runtime_dir(name), ignore_errors=True)


async def test_mcp_with_the_sdk_default_environment_finds_a_pipeline_started_with_xdg(named_pipeline):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import get_default_environment, stdio_client

    name, config, xdg = named_pipeline
    assert "XDG_RUNTIME_DIR" not in get_default_environment()  # what a desktop agent's server starts with
    up = await perception_child("up", str(config), "--name", name, env=child_env(XDG_RUNTIME_DIR=str(xdg)))
    try:
        await wait_line(up, "[cam7", timeout=120)  # a caption: the pipeline is up and encoding
        assert default_runtime_dir(name).is_dir() and not any(xdg.glob("vljepa-*"))
        # cwd=REPO: `python -m` imports this checkout's code, with no PYTHONPATH in the minimal environment
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "perception.cli", "mcp", "--name", name], env=None, cwd=str(REPO)
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await asyncio.wait_for(session.initialize(), 60)
            res = await asyncio.wait_for(session.call_tool("cameras", {}), 30)
            assert not res.is_error, res.content
            assert "cam7" in res.content[0].text
        # the unnamed default is another pipeline: the same client without --name does not reach this one
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "perception.cli", "mcp", "--timeout", "1"],
            env={**get_default_environment(), "PERCEPTION_NAME": "nobody-here"},
            cwd=str(REPO),
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await asyncio.wait_for(session.initialize(), 60)
            res = await asyncio.wait_for(session.call_tool("cameras", {}), 30)
            text = res.content[0].text
            assert res.is_error and "no perception pipeline answers" in text, text
            assert f"--name {name}" in text and "whatever XDG_RUNTIME_DIR says" in text, text  # where it looked
    finally:
        if up.returncode is None:
            up.send_signal(2)
            try:
                await asyncio.wait_for(up.wait(), 30)
            except TimeoutError:
                up.kill()


def test_pipeline_names_are_checked():
    out = perception("topics", "--name", "../etc")
    assert out.returncode == 2 and "--name: pipeline name '../etc'" in out.stderr, out.stderr
    assert default_runtime_dir("b") == default_runtime_dir().with_name(default_runtime_dir().name + "-b")
