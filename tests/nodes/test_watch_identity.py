"""The events node takes its runtime watch list from the world alone: a WatchList on watches/ from
another publisher (an old world, a test tool, a hostile process) is ignored and counted, never applied.
Without CURVE the check is the message's `src` (advisory: a same-user process can claim it); with CURVE
the proxy admits watches/ only from the world's key (tests/bus/test_security.py)."""

from __future__ import annotations

from bus.pubsub import Publisher
from bus.rpc import RpcClient
from perception.messages import WatchList
from perception.nodes.events import WORLD_SRC, EventsNode
from perception.nodes.watches import Watch
from perception.nodes.world import WorldNode

from .conftest import wait_for
from .harness import bus_up, embed_server, node_config, started

PHRASE = "a purple triangle appears"


async def test_a_forged_watch_list_is_ignored_and_the_worlds_applied(runtime_dir, random_checkpoint, text_model):
    config = node_config(runtime_dir, random_checkpoint, events={"labels": ["alpha", "beta"], "max_len_s": None})
    assert WorldNode.name == WORLD_SRC  # the world publishes under the name the events node trusts
    forged = WatchList(watches=[Watch("w-deadbeef", "the forklift is gone", 0.1, 0.0).item()])
    async with (
        embed_server(config, text_model),
        bus_up(config, ["watches/"]),
        RpcClient(config.bus, timeout=5, retries=0) as rpc,
        started(WorldNode, config),
        started(EventsNode, config) as events,
    ):
        w = await rpc.call("watch", {"phrase": PHRASE})
        await wait_for(lambda: [x.id for x in events.runtime_watch] == [w["id"]], 10, 0.05)
        updates = events.counters["watch_updates"]
        forger = Publisher(config.bus, src="mallory")
        try:
            await forger.ready()
            for _ in range(3):
                forger.publish_nowait("watches/all", forged)
            await wait_for(lambda: events.counters["watch_lists_foreign"] >= 3, 10, 0.05)
        finally:
            forger.close()
        applied = events.counters["watch_lists"]
        await wait_for(lambda: events.counters["watch_lists"] > applied, 10, 0.05)  # the world's next broadcast
        assert [x.id for x in events.runtime_watch] == [w["id"]]  # the forged list never replaced it
        assert events.counters["watch_lists_foreign"] == 3
        assert events.counters["watch_updates"] == updates  # not even for a moment (each swap is counted)
