"""Both viewers on one live synthetic pipeline (`perception up`, the small random model, shared by the module):

- a WebSocket client speaking the Foxglove protocol (the SDK's `foxglove.sdk.v1` subprotocol: serverInfo,
  advertise, subscribe, binary messageData) subscribes to `perception foxglove` and receives a frame (PNG),
  a caption the pipeline published, and each window's watch scores;
- `perception view --save` on the same pipeline writes an .rrd with frames, captions, watch scores and the
  label heat-map (the labels embedded by the pipeline's own encoder).

The bridge and the Rerun viewer start together as soon as the pipeline captures, so the module costs one
pipeline start and one viewing window.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import threading
import time

import pytest
import pytest_asyncio
import websockets

from bus.pubsub import BusNotReady, Subscriber
from perception.config import load_config
from perception.viewers.rerun_sink import slug
from tests.nodes.conftest import interrupt, pipeline_config, popen_perception, write_config
from tests.support import perception_child, short_tmp, wait_line

from .conftest import decode_image, protobuf_fields

SUBPROTOCOL = "foxglove.sdk.v1"  # what foxglove-sdk's server speaks (the ws-protocol spec's messages)
WATCH = "the red circle grows"
VIEW_S = 6.0  # how long `perception view` watches the live pipeline


pytestmark = pytest.mark.asyncio(loop_scope="module")


class Pipeline:
    """A running `perception up --json`; a thread reads its stdout (a full pipe would stall the launcher)."""

    def __init__(self, proc, config_path):
        self.proc = proc
        self.config = load_config(config_path)
        self.config_path = config_path
        self.captions: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{") and '"Caption"' in line:
                self.captions.append(json.loads(line)["text"])


@pytest.fixture(scope="module")
def live(small_checkpoint):
    rdir = short_tmp("vw-")
    pipe = {
        "cameras": [{"name": "cam0", "seed": 5, "split": "train", "duration_s": 120.0, "size": 32, "loop": False}],
        "encoder": {"threads": 1},
        "events": {"max_len_s": 2.0, "watch": [{"label": WATCH, "enter": 0.9, "leave": 0.5}]},
        "decoder": {"threads": 1},
    }
    cfg = write_config(rdir / "cfg.yaml", pipeline_config(rdir, small_checkpoint, **pipe))
    proc = popen_perception("up", str(cfg), "--json")
    yield Pipeline(proc, cfg)
    interrupt(proc)
    shutil.rmtree(rdir, ignore_errors=True)


async def first_frame(config, timeout_s: float = 120.0) -> None:
    """Wait until the pipeline captures (every node is up before capture starts)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with Subscriber(config.bus, ["frames/"], name="test") as sub:
                await sub.recv(timeout=max(1.0, deadline - time.monotonic()))
                return
        except (BusNotReady, TimeoutError):
            assert time.monotonic() < deadline, "the pipeline captured no frame"
            await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def viewers(live, tmp_path_factory):
    """`perception foxglove` and `perception view --save` on the live pipeline, started together."""
    cfg = live.config_path
    await first_frame(live.config)
    rrd = tmp_path_factory.mktemp("live") / "live.rrd"
    bridge = await perception_child("foxglove", "--config", str(cfg), "--port", "0", "--max-fps", "15")
    view = await perception_child("view", "--config", str(cfg), "--save", str(rrd), "--duration", str(VIEW_S))
    url = (await wait_line(bridge, "foxglove ", timeout=60)).split()[1]
    log: list[bytes] = []

    async def drain() -> None:  # the bridge's log, read as it comes (a full pipe would stall it)
        while line := await bridge.stderr.readline():
            log.append(line)

    reader = asyncio.create_task(drain())
    yield {"url": url, "view": view, "rrd": rrd, "bridge": bridge, "bridge_log": log}
    reader.cancel()
    for child in (bridge, view):
        if child.returncode is None:
            child.terminate()
            await asyncio.wait_for(child.wait(), 20)


class FoxgloveClient:
    """The client side of the protocol, as the Foxglove app speaks it (text JSON ops, binary data)."""

    def __init__(self, ws):
        self.ws = ws
        self.server_info: dict | None = None
        self.channels: dict[int, dict] = {}  # channel id -> advertised channel
        self.subscriptions: dict[int, int] = {}  # subscription id -> channel id
        self.next_id = 0

    async def next(self) -> tuple[str, bytes] | None:
        """Handle one server message; returns (topic, payload) for message data, None otherwise."""
        msg = await self.ws.recv()
        if isinstance(msg, str):
            op = json.loads(msg)
            if op["op"] == "serverInfo":
                self.server_info = op
            elif op["op"] == "advertise":
                for ch in op["channels"]:
                    self.channels[ch["id"]] = ch
            elif op["op"] == "status" and op.get("message", "").startswith("Unknown channel ID: "):
                # the server advertised a new channel a moment before it could take subscriptions to it
                # (foxglove-sdk registers a channel with each client after sending its advertisement):
                # forget that subscription, so the next `subscribe` asks again
                cid = int(op["message"].rsplit(" ", 1)[1])
                self.subscriptions = {s: c for s, c in self.subscriptions.items() if c != cid}
            return None
        assert msg[0] == 0x01, f"unexpected binary opcode {msg[0]}"  # messageData
        sub_id, _receive_ns = struct.unpack_from("<IQ", msg, 1)
        return self.channels[self.subscriptions[sub_id]]["topic"], bytes(msg[13:])

    async def subscribe(self, topics: set[str]) -> None:
        new = []
        for cid, ch in self.channels.items():
            if ch["topic"] in topics and cid not in self.subscriptions.values():
                self.next_id += 1
                sid = self.next_id
                self.subscriptions[sid] = cid
                new.append({"id": sid, "channelId": cid})
        if new:
            await self.ws.send(json.dumps({"op": "subscribe", "subscriptions": new}))


async def test_foxglove_client_receives_frames_captions_and_watch_scores(live, viewers):
    wanted = {"/frames/cam0", "/captions/cam0", "/watch_scores/cam0"}
    got: dict[str, list[bytes]] = {}
    async with websockets.connect(viewers["url"], subprotocols=[SUBPROTOCOL], max_size=None) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        client = FoxgloveClient(ws)
        try:
            async with asyncio.timeout(90):
                while not all(got.get(t) for t in wanted):
                    item = await client.next()
                    await client.subscribe(wanted)  # channels are advertised as their first message comes
                    if item is not None:
                        got.setdefault(item[0], []).append(item[1])
        except TimeoutError:
            advertised = sorted(ch["topic"] for ch in client.channels.values())
            bridge_log = b"".join(viewers["bridge_log"]).decode()[-3000:]
            pytest.fail(
                f"in 90 s got {sorted(got)} of {sorted(wanted)}; advertised {advertised}; pipeline captions: "
                f"{len(live.captions)}; the bridge's log: {bridge_log}"
            )
    assert client.server_info is not None and client.server_info["name"] == "vljepa-perception"
    by_topic = {ch["topic"]: ch for ch in client.channels.values()}
    assert (by_topic["/frames/cam0"]["encoding"], by_topic["/frames/cam0"]["schemaName"]) == (
        "protobuf",
        "foxglove.CompressedImage",
    )
    assert by_topic["/captions/cam0"]["schemaName"] == "foxglove.Log"
    assert by_topic["/watch_scores/cam0"]["schemaName"] == "perception.WatchScores"

    frame = protobuf_fields(got["/frames/cam0"][0])
    assert frame[3] == [b"png"] and frame[4] == [b"cam0"]
    assert decode_image(frame[2][0], "png").shape == (32, 32, 3)

    caption = protobuf_fields(got["/captions/cam0"][0])[3][0].decode()
    async with asyncio.timeout(10):  # the same caption, as `perception up --json` printed it
        while caption not in live.captions:
            await asyncio.sleep(0.05)

    scores = json.loads(got["/watch_scores/cam0"][0])
    assert [w["phrase"] for w in scores["watches"]] == [WATCH]
    assert -1.0 <= scores["watches"][0]["score"] <= 1.0 and scores["watches"][0]["enter"] == 0.9


async def test_view_save_records_the_live_pipeline(viewers):
    from .conftest import column, rrd_rows

    view = viewers["view"]
    out, err = await asyncio.wait_for(view.communicate(), VIEW_S + 60)
    assert view.returncode == 0, err.decode()[-3000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    rows = rrd_rows(viewers["rrd"])
    assert {"/cam0/frame", "/cam0/similarity", f"/cam0/watch/{slug(WATCH)}", "/labels"} <= set(rows), sorted(rows)
    frames = sum(rb.num_rows for rb in rows["/cam0/frame"])
    assert 0 < frames <= VIEW_S * 10 + 1  # --max-fps 10 (the default) of the camera's 30
    assert summary["frames_sent"] == frames
    heat = column(rows["/cam0/similarity"], "Tensor:data")[-1][0]
    assert heat["shape"][0] == 16  # the default labels: ShapesWorld's 6 colours and 10 actions
    assert summary["texts_embedded"] >= 17  # 16 labels + the watch phrase, by the pipeline's encoder
