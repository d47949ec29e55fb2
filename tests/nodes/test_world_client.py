"""perception's one world client against a real world node: the watch methods return what the RPC answers
(`watches` the list it holds), an error reply is the world's RpcError, and no world is WorldUnavailable."""

from __future__ import annotations

import pytest

from perception.nodes.world import WorldNode
from perception.world_client import RpcError, WorldClient, WorldUnavailable

from .harness import bus_up, node_config, started

PHRASE = "a purple triangle appears"


async def test_the_world_client_watches_unwatches_and_lists(runtime_dir, random_checkpoint):
    config = node_config(runtime_dir, random_checkpoint, world={"max_watches": 2})
    async with bus_up(config, ["watches/"]), started(WorldNode, config):
        async with WorldClient(config.bus, timeout=5, retries=0) as world:
            w = await world.watch(PHRASE, "cam1", enter=0.8, leave=0.1)
            assert w == {
                "id": w["id"],
                "phrase": PHRASE,
                "camera": "cam1",
                "enter": 0.8,
                "leave": 0.1,
                "source": "runtime",
            }
            assert [x["id"] for x in await world.watches("cam1")] == [w["id"]]
            assert await world.watches("cam0") == []
            assert await world.unwatch(w["id"]) == {"id": w["id"], "removed": True}
            assert await world.unwatch(w["id"]) == {"id": w["id"], "removed": False}
            assert await world.watches() == []
            with pytest.raises(RpcError) as err:
                await world.watch("   ")
            assert err.value.code == "bad_request"
            with pytest.raises(RpcError) as err:  # a world run without a memory store has no memory queries
                await world.memory()
            assert err.value.code == "unknown_method"


async def test_no_world_is_world_unavailable(runtime_dir, random_checkpoint):
    config = node_config(runtime_dir, random_checkpoint)
    async with WorldClient(config.bus, timeout=0.2, retries=0) as world:
        with pytest.raises(WorldUnavailable, match="no reply"):
            await world.watches()
