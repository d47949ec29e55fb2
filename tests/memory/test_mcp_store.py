"""`perception mcp --store URL`: the memory tools answer from the database alone, no pipeline running (a
planner querying a fleet's memory), through the official MCP SDK client over stdio."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

import yaml

from perception.memory.open import open_store
from perception.memory.records import Batch, CaptionRow, Place, SegmentRow, WatchRow
from tests.nodes.harness import embed
from tests.support import REPO, child_env

from .conftest import fresh_database

S = 10**9
TEXTS = ["a red cup on the kitchen table", "a blue box in the hallway"]


def fill(url: str, text_model) -> int:
    """Two robots' memories; returns t0."""
    t0 = time.time_ns() - 3600 * S
    e = embed(text_model, TEXTS)
    kitchen, hall = Place("map", 1.0, 1.0, 0.0, t0), Place("map", 30.0, 0.0, 0.0, t0)
    store = open_store(url, e.shape[1])
    store.write(
        Batch(
            segments=[
                SegmentRow("r1", "front", 1, t0, t0 + 3 * S, 0.0, 3.0, [{"label": "cup", "score": 0.8}], e[0], kitchen, kitchen),
                SegmentRow("r2", "front", 1, t0 + 600 * S, t0 + 603 * S, 0.0, 3.0, [], e[0], hall, hall),
                SegmentRow("r2", "front", 2, t0 + 900 * S, t0 + 903 * S, 3.0, 6.0, [], e[1], hall, hall),
            ],
            captions=[CaptionRow("r1", "front", 1, t0, t0 + 3 * S, TEXTS[0], 10.0)],
            watches=[
                WatchRow("r1", "front", 1, t0, t0 + 10 * S, "door open", None, True, 0.7, kitchen),
                WatchRow("r1", "front", 1, t0, t0 + 70 * S, "door open", None, False, 0.3, kitchen),
            ],
        )
    )  # fmt: skip
    store.close()
    return t0


def config_file(small_checkpoint) -> str:
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump({"model": {"checkpoint": str(small_checkpoint), "device": "cpu", "dtype": "float32"}}, f)
    f.close()
    return f.name


async def test_mcp_answers_from_the_store_alone(pg_server, small_checkpoint, text_model):
    # PostgreSQL here (SQLite's queries are the same SQL: tests/memory/test_store.py runs both)
    store_url = fresh_database(pg_server)
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    fill(store_url, text_model)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "perception.cli", "mcp", "--store", store_url, "--config", config_file(small_checkpoint)],
        env=child_env(),
        cwd=str(REPO),
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await asyncio.wait_for(session.initialize(), 60)
            names = {t.name for t in (await session.list_tools()).tools}
            assert names == {"recall", "last_seen", "what_was_at", "watch_durations", "segment", "memory"}

            async def ok(tool, **args):
                res = await asyncio.wait_for(session.call_tool(tool, args), 120)
                assert not res.is_error, res.content[0].text
                return res.structured_content

            mem = await ok("memory")
            assert mem["rows"]["segments"] == 3 and {c["robot"] for c in mem["cameras"]} == {"r1", "r2"}
            # where was the red cup last seen (any robot)? r2 in the hall, 10 minutes after r1 saw it
            last = (await ok("last_seen", text=TEXTS[0], min_score=0.9))["results"]
            assert [(h["robot"], h["place_end"]["x"]) for h in last] == [("r2", 30.0)]
            # the cup in the kitchen: text + place; the evidence names robot, time, caption, place, score
            hit = (await ok("recall", text=TEXTS[0], x=0.0, y=0.0, radius_m=3.0, frame_id="map"))["results"][0]
            assert hit["robot"] == "r1" and hit["caption"] == TEXTS[0] and hit["score"] > 0.99
            assert hit["place_start"] == {"frame": "map", "x": 1.0, "y": 1.0, "yaw": 0.0}
            assert 3590 < hit["ago_s"] < 3700
            # what was at the hall 50 to 40 minutes ago
            at = (await ok("recall", x=30.0, y=0.0, radius_m=1.0, since_s=-3300, until_s=-2400))["results"]
            assert [(h["robot"], h["segment_id"]) for h in at] == [("r2", 2), ("r2", 1)]
            spans = (await ok("watch_durations", watch="door open"))["spans"]
            assert [s["duration_s"] for s in spans] == [60.0]
            assert (await ok("segment", id=hit["id"]))["segment_id"] == 1
            res = await session.call_tool("recall", {"x": 1.0})
            assert res.is_error and "x, y and radius_m" in res.content[0].text


def test_a_store_that_is_not_there_is_one_line_exit_2(tmp_path, capsys):
    import argparse

    from perception.mcp.command import add_arguments, run

    p = argparse.ArgumentParser()
    p.add_argument("--config", default=None)
    add_arguments(p)
    assert run(p.parse_args(["--store", str(tmp_path / "none.db")])) == 2
    err = capsys.readouterr().err
    assert err.startswith("perception mcp: no memory store at") and err.count("\n") == 1
