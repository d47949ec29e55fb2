"""The world's methods on the command line, and what the CLI says with no pipeline (issue 34).

What the user saw: `now`, `history`, `search`, `watch`/`unwatch`/`watches` reachable only over MCP or
Python; `perception topics` and `echo` with no bus exiting 0 with no output; `perception ask` before the
first window answering "no window encoded yet for camera None". Now each is a command printing the
world's JSON; no bus is one line saying no pipeline answers (and where it looked), exit 1; an early ask
names the camera and says to wait.

The pipeline here runs the encoder and the world without a capture node: no window ever comes, so the
"before the first window" answer is deterministic.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support import child_env, perception_child

from .conftest import perception, pipeline_config, write_config


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await perception_child(*args)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def no_capture_config(runtime_dir, random_checkpoint):
    cfg = pipeline_config(runtime_dir, random_checkpoint, nodes=["encoder", "world"])
    return write_config(runtime_dir / "cfg.yaml", cfg)


async def test_world_commands_and_an_ask_before_the_first_window(no_capture_config):
    cfg = str(no_capture_config)
    up = await perception_child("up", cfg, env=child_env(log_level="INFO"))
    try:
        async with asyncio.timeout(120):
            while b"pipeline up" not in (line := await up.stderr.readline()):
                assert line, "perception up exited before it was up"
        drain = asyncio.create_task(up.stderr.read())  # keep its stderr pipe from filling

        # independent calls side by side (each is a CLI process start)
        (
            (c_ask, o_ask, _),
            (c_watch, o_watch, e_watch),
            (c_now, o_now, e_now),
            (c_hist, o_hist, e_hist),
            (
                c_search,
                o_search,
                e_search,
            ),
        ) = await asyncio.gather(
            cli("ask", "what colour is the circle?", "--config", cfg),
            cli("watch", "a red circle appears", "--enter", "0.8", "--leave", "0.6", "--config", cfg),
            cli("now", "--config", cfg),
            cli("history", "--since", "30", "--config", cfg),
            cli("search", "a red circle", "--config", cfg),
        )
        assert c_ask == 1, o_ask
        assert "no window encoded yet for camera 'cam0'" in o_ask and "wait for its first caption" in o_ask, o_ask
        assert c_watch == 0, e_watch
        added = json.loads(o_watch)
        assert added["phrase"] == "a red circle appears" and added["id"].startswith("w-"), added
        assert c_now == 0 and isinstance(json.loads(o_now), dict), e_now
        assert c_hist == 0 and json.loads(o_hist)["items"] == [], (o_hist, e_hist)  # nothing captured: empty
        assert c_search == 0 and json.loads(o_search)["results"] == [], (o_search, e_search)

        code, out, err = await cli("watches", "--config", cfg)
        assert code == 0 and added["id"] in [w["id"] for w in json.loads(out)["watches"]], (out, err)
        code, out, err = await cli("unwatch", added["id"], "--config", cfg)
        assert code == 0 and json.loads(out) == {"id": added["id"], "removed": True}, (out, err)
        drain.cancel()
    finally:
        if up.returncode is None:
            up.send_signal(2)
            try:
                await asyncio.wait_for(up.wait(), 30)
            except TimeoutError:
                up.kill()


def test_no_pipeline_is_said_with_exit_1(runtime_dir, random_checkpoint):
    path = write_config(runtime_dir / "cfg.yaml", pipeline_config(runtime_dir, random_checkpoint))
    for args in (["topics"], ["echo", "captions/", "--duration", "1"], ["now", "--timeout", "1"]):
        out = perception(*args, "--config", str(path))
        assert out.returncode == 1 and out.stdout == "", (args, out.stdout, out.stderr)
        assert "no pipeline answers" in out.stderr or "no perception pipeline answers" in out.stderr, out.stderr
        assert "looked at ipc://" in out.stderr and str(runtime_dir) in out.stderr, out.stderr
