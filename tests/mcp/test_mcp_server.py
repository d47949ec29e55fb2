"""`perception mcp` as a real child process, driven by the official MCP SDK's own client over stdio and
over streamable HTTP, against one live `perception up` (synthetic camera, the small random model) shared
by the module.

- no pipeline: every tool is a tool error that says to start one, fast (--timeout 1), never a hang;
- HTTP: a non-loopback address without a token is refused before anything starts; with a token, a request
  without it is answered 401 and the SDK client with it lists and calls tools;
- live: every tool answers with its evidence (times, captions, scores), an unknown camera and a bad
  argument are tool errors, a new caption arrives as a resources/updated notification;
- watches, deterministically: a recorded session whose window embeddings are the model's own text
  embeddings of known captions (tests/skills/skillkit.py) is replayed onto camera "rec0" by
  `perception replay`; a runtime watch on the planted caption is pushed as a log notification naming its
  watch id, one on an unrelated phrase (checked to score below the threshold on every window) is not.

Set PERCEPTION_MCP_TRANSCRIPT=FILE to keep the live session's transcript (docs/agents.md shows one).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.nodes.conftest import interrupt, pipeline_config, popen_perception, write_config
from tests.skills.skillkit import PLANTED, SCRIPT, UNRELATED, write_session
from tests.support import REPO, child_env, perception_child, short_tmp, wait_line

TOOLS = {"now", "cameras", "history", "search", "ask", "watch", "unwatch", "watches"} | {
    "recall", "last_seen", "what_was_at", "watch_durations", "segment", "memory"  # the world's store (tests/memory)
}  # fmt: skip
THRESHOLD = 0.9  # the planted phrase's windows score 1.0; the unrelated one is checked to stay below
REPLAY_CAM = "rec0"


# -- the client side ------------------------------------------------------------------------------------


class Client:
    """One MCP client session (the SDK's ClientSession) and what the server pushed to it."""

    def __init__(self, session, errlog) -> None:
        self.session = session
        self.errlog = errlog
        self.logs: list = []  # LoggingMessageNotificationParams
        self.updates: list[str] = []  # URIs of notifications/resources/updated
        self.transcript: list[dict] = []

    async def on_log(self, params) -> None:
        self.logs.append(params)
        self.transcript.append({"notification": "notifications/message", "params": _dump(params)})

    async def on_message(self, message) -> None:
        from mcp import types

        if isinstance(message, types.ResourceUpdatedNotification):
            self.updates.append(str(message.params.uri))
            if len(self.updates) <= 2:  # the transcript shows the first few, not every caption
                self.transcript.append(
                    {"notification": "notifications/resources/updated", "params": _dump(message.params)}
                )

    async def call(self, tool: str, **arguments):
        """(is_error, structured result or error text), recorded in the transcript."""
        res = await self.session.call_tool(tool, arguments)
        text = res.content[0].text if res.content else ""
        self.transcript.append({"call": tool, "arguments": arguments, "isError": bool(res.is_error), "result": text})
        return bool(res.is_error), (text if res.is_error else res.structured_content)

    async def ok(self, tool: str, **arguments) -> dict:
        err, out = await self.call(tool, **arguments)
        assert not err, f"{tool}({arguments}): {out}\n{self.stderr()}"
        return out

    async def subscribe(self, uri: str) -> None:
        """resources/subscribe: the handshake-era way, which desktop agents use (the SDK warns it is gone
        from the 2026-07-28 protocol, where `subscriptions/listen` replaces it)."""
        from mcp.shared.exceptions import MCPDeprecationWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await self.session.subscribe_resource(uri)

    def stderr(self) -> str:
        if self.errlog is None:
            return ""
        self.errlog.seek(0)
        return self.errlog.read()[-3000:]


def _dump(model) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


@asynccontextmanager
async def stdio_client(config_path: Path, *extra: str):
    """`perception mcp --config CONFIG` spawned by the SDK's stdio client, initialised."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client as sdk_stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "perception.cli", "mcp", "--config", str(config_path), *extra],
        env=child_env(),
        cwd=str(REPO),
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with sdk_stdio_client(params, errlog=errlog) as (read, write):
            client = Client(None, errlog)
            async with ClientSession(
                read, write, logging_callback=client.on_log, message_handler=client.on_message
            ) as session:
                client.session = session
                await asyncio.wait_for(session.initialize(), 60)
                yield client


async def until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        await asyncio.sleep(interval)
    return value


# -- no pipeline -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_config():
    """A config whose bus nobody serves."""
    rdir = short_tmp("mcp0-")
    path = write_config(rdir / "cfg.yaml", {"bus": {"runtime_dir": str(rdir)}})
    yield path
    shutil.rmtree(rdir, ignore_errors=True)


async def test_no_pipeline_tools_listed_and_errors_are_fast(bare_config, pipeline_boot):
    async with stdio_client(bare_config, "--timeout", "1") as c:
        tools = {t.name: t for t in (await c.session.list_tools()).tools}
        assert set(tools) == TOOLS
        for t in tools.values():
            assert len(t.description) > 60 and t.input_schema["type"] == "object", t.name
        props = tools["history"].input_schema["properties"]
        assert {"camera", "since_s", "until_s", "kinds", "limit"} <= set(props)
        assert "one minute ago" in props["since_s"]["description"]
        assert tools["search"].input_schema["required"] == ["text"]
        assert tools["ask"].input_schema["required"] == ["question"]
        assert tools["watch"].input_schema["required"] == ["phrase"]
        assert tools["unwatch"].input_schema["required"] == ["id"]
        assert tools["now"].annotations.read_only_hint and not tools["watch"].annotations.read_only_hint

        calls = {
            "now": {},
            "cameras": {},
            "history": {"since_s": -60},
            "search": {"text": "a red circle"},
            "ask": {"question": "what colour is the circle?", "choices": ["red", "blue"]},
            "watch": {"phrase": "a person enters"},
            "unwatch": {"id": "w-00000000"},
            "watches": {},
        }

        async def timed(tool: str, args: dict) -> tuple[bool, str, float]:
            t0 = time.monotonic()
            err, text = await c.call(tool, **args)
            return err, text, time.monotonic() - t0

        for (err, text, took), tool in zip(await asyncio.gather(*(timed(*kv) for kv in calls.items())), calls):
            assert err and "no perception pipeline answers on ipc://" in text and "perception up" in text, text
            assert took < 3.0, f"{tool} took {took:.1f}s"
        for bad in (1e300, -1e300):  # was an OverflowError: the agent saw "Error executing tool history" only
            err, text = await c.call("history", since_s=bad)
            assert err and f"time {bad!r} is not a number of seconds within" in text, text
        from mcp.shared.exceptions import MCPError

        with pytest.raises(MCPError, match="no perception pipeline answers"):
            await c.session.read_resource("perception://captions/latest")


async def test_http_refuses_a_network_address_without_a_token(bare_config, pipeline_boot):
    env = child_env()
    env.pop("PERCEPTION_MCP_TOKEN", None)
    cases = {
        ("--http", "0.0.0.0:0"): "non-loopback address without a token",
        ("--http", "127.0.0.1:0", "--token", "short"): "at least 16",
        ("--http", "nope"): "expected [HOST:]PORT",
    }

    async def run(args: tuple[str, ...]) -> tuple[int, bytes, str]:
        proc = await perception_child("mcp", "--config", str(bare_config), *args, env=env)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode, out, err.decode()

    for (rc, out, err), (args, expect) in zip(await asyncio.gather(*map(run, cases)), cases.items()):
        assert rc == 2 and expect in err, (args, err[-2000:])
        assert b"mcp http" not in out


# -- the live pipeline --------------------------------------------------------------------------------


class LivePipeline:
    """`perception up --json` with its stdout JSON lines collected by a reader thread."""

    def __init__(self, proc, config_path: Path) -> None:
        self.proc = proc
        self.config_path = config_path
        self.lines: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def captions(self) -> list[dict]:
        return [x for x in self.lines if x["type"] == "Caption"]


@pytest.fixture(scope="module")
def checkpoint(small_checkpoint) -> Path:
    """The small random model; PERCEPTION_MCP_TRAINED=1 uses checkpoints/tiny (captions that make sense,
    for the transcript in docs/agents.md)."""
    return REPO / "checkpoints" / "tiny" if os.environ.get("PERCEPTION_MCP_TRAINED") == "1" else small_checkpoint


@pytest.fixture(scope="module")
def pipeline_boot(checkpoint):
    """The module's one `perception up`, started (not yet waited for): the tests without a pipeline request
    it too, so that its start-up (model loads in four processes) overlaps them."""
    rdir = short_tmp("mcp-")
    trained = checkpoint.name == "tiny"
    pipe = {
        "cameras": [{"name": "cam0", "seed": 5, "split": "train", "duration_s": 300.0, "size": 64 if trained else 32}],
        "encoder": {"threads": 1},
        "events": {"max_len_s": 6.0 if trained else 2.7},
        "decoder": {"threads": 1},
    }
    cfg = write_config(rdir / "cfg.yaml", pipeline_config(rdir, checkpoint, **pipe))
    proc = popen_perception("up", str(cfg), "--json")
    yield LivePipeline(proc, cfg)
    interrupt(proc)
    shutil.rmtree(rdir, ignore_errors=True)


@pytest.fixture(scope="module")
def pipeline(pipeline_boot):
    """The pipeline, once it publishes captions."""
    deadline = time.monotonic() + 180
    while not pipeline_boot.captions():
        assert pipeline_boot.proc.poll() is None, (
            f"perception up exited early: {pipeline_boot.proc.stderr.read()[-3000:]}"
        )
        assert time.monotonic() < deadline, "no caption within 180 s"
        time.sleep(0.2)
    return pipeline_boot


def check_when(ev: dict) -> None:
    """Every piece of evidence says where (stream seconds) and when (ISO time, seconds ago)."""
    start, end = ev["stream_s"]
    assert 0 <= start <= end, ev
    assert ev["time"].endswith("Z") and ev["ago_s"] > -60, ev


async def test_tools_answer_with_evidence_over_stdio(pipeline):
    async with stdio_client(pipeline.config_path) as c:
        await c.subscribe("perception://captions/latest")
        await c.subscribe("perception://captions/cam0")

        cams = await c.ok("cameras")
        assert [x["camera"] for x in cams["cameras"]] == ["cam0"]
        assert cams["cameras"][0]["latest_caption"]

        now = (await c.ok("now", camera="cam0"))["cameras"]["cam0"]
        assert now["current_segment"]["stream_s"][1] >= now["last_segment"]["stream_s"][1]
        cap = now["latest_caption"]
        assert cap["kind"] == "caption" and cap["caption"].strip()
        check_when(cap)
        seg = now["last_segment"]
        check_when(seg)
        assert 1 <= len(seg["labels"]) <= 3 and all(-1 <= x["score"] <= 1 for x in seg["labels"])
        assert "embedding" not in json.dumps(now)

        hist = await c.ok("history", camera="cam0", since_s=-600, kinds=["caption"], limit=5)
        assert 1 <= hist["returned"] <= 5 and hist["total"] >= hist["returned"]
        assert all(x["kind"] == "caption" and x["caption"] for x in hist["items"])
        for x in hist["items"]:
            check_when(x)
        assert (await c.ok("history", since_s=time.time() + 3600))["returned"] == 0  # absolute: the future

        found = await c.ok("search", text=cap["caption"], camera="cam0", k=3)
        res = found["results"]
        assert 1 <= len(res) <= 3 and res[0]["score"] >= res[-1]["score"]
        assert all(r["kind"] == "segment" and "labels" in r for r in res)
        check_when(res[0])

        answer = await c.ok("ask", question="what colour is the circle?", choices=["red", "green", "blue"])
        assert answer["answer"] in ("red", "green", "blue") and set(answer["scores"]) == {"red", "green", "blue"}
        assert answer["camera"] == "cam0"
        check_when(answer["evidence"])

        listed = await c.ok("watches")
        assert isinstance(listed["watches"], list)

        err, text = await c.call("now", camera="nope")
        assert err and "unknown camera" in text and "cam0" in text, text
        err, text = await c.call("history", limit=0)
        assert err and "limit" in text, text
        err, text = await c.call("search", text="")
        assert err and "text" in text, text

        got = await c.session.read_resource("perception://captions/cam0")
        body = json.loads(got.contents[0].text)
        assert body["cameras"]["cam0"]["caption"] and body["source"] == "world"
        from mcp.shared.exceptions import MCPError

        with pytest.raises(MCPError, match="unknown camera"):
            await c.session.read_resource("perception://captions/nope")
        events = json.loads((await c.session.read_resource("perception://events")).contents[0].text)
        assert events["events"] and {e["kind"] for e in events["events"]} <= {"segment", "watch"}

        await until(
            lambda: {"perception://captions/latest", "perception://captions/cam0"} <= set(c.updates),
            30,
            "a resources/updated notification for a new caption",
        )
        _save_transcript(c.transcript, "tools")


async def test_a_2026_client_gets_resource_updates_on_a_listen_stream(pipeline):
    """The SDK's high-level Client negotiates the 2026-07-28 protocol (server/discover), where change
    notifications travel on `subscriptions/listen` streams instead of resources/subscribe."""
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "perception.cli", "mcp", "--config", str(pipeline.config_path)],
        env=child_env(),
        cwd=str(REPO),
    )
    async with Client(params) as client:
        assert client.session.protocol_version == "2026-07-28"
        res = await client.call_tool("cameras", {})
        assert not res.is_error and res.structured_content["cameras"][0]["camera"] == "cam0"
        async with client.listen(resource_subscriptions=["perception://captions/latest"]) as sub:
            async with asyncio.timeout(30):
                event = await anext(aiter(sub))
        assert event.uri == "perception://captions/latest"


async def test_watch_pushes_the_planted_phrase_and_not_an_unrelated_one(pipeline, checkpoint, tmp_path):
    from perception.model import VLJepa

    model = VLJepa.load(checkpoint, device="cpu", dtype="float32")
    vecs = model.embed_text([t for t, _ in SCRIPT] + [UNRELATED]).float().numpy()
    unrelated_max = float(np.max(vecs[:-1] @ vecs[-1]))
    assert unrelated_max < THRESHOLD, f"precondition: the unrelated phrase scores {unrelated_max} on this model"

    async with stdio_client(pipeline.config_path) as c:
        await c.subscribe("perception://events")
        other = await c.ok("watch", phrase=UNRELATED, camera=REPLAY_CAM, enter=THRESHOLD, leave=0.8)
        planted = await c.ok("watch", phrase=PLANTED, camera=REPLAY_CAM, enter=THRESHOLD, leave=0.8)
        assert planted["id"] != other["id"] and planted["source"] == "runtime" and planted["camera"] == REPLAY_CAM
        listed = {w["id"]: w for w in (await c.ok("watches", camera=REPLAY_CAM))["watches"]}
        assert {planted["id"], other["id"]} <= set(listed) and listed[planted["id"]]["phrase"] == PLANTED

        def crossings(watch_id: str) -> list[dict]:
            return [x.data for x in c.logs if x.logger == "perception.watch" and x.data.get("watch_id") == watch_id]

        for attempt in range(4):  # the events node takes the new watches from the world within ~1 s
            session = tmp_path / f"session{attempt}.mcap"
            write_session(session, model, cam=REPLAY_CAM)
            proc = await perception_child("replay", str(session), "--config", str(pipeline.config_path), "--rate", "0")
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()[-2000:]
            try:
                await until(lambda: crossings(planted["id"]), 5, "a watch notification")
                break
            except AssertionError:
                if attempt == 3:
                    raise
        await asyncio.sleep(1.0)  # anything the unrelated watch would push has arrived by now
        hit = next(x for x in crossings(planted["id"]) if x["state"] == "entered")
        assert hit["phrase"] == PLANTED and hit["camera"] == REPLAY_CAM and hit["active"] is True
        assert hit["score"] == pytest.approx(1.0, abs=1e-3)
        level = next(x.level for x in c.logs if x.data is hit)
        assert level == "notice"
        assert crossings(other["id"]) == []
        assert "perception://events" in c.updates

        hist = await c.ok("history", camera=REPLAY_CAM, kinds=["watch"], since_s=-600)
        assert any(x["watch_id"] == planted["id"] and x["active"] for x in hist["items"]), hist
        assert not any(x["watch_id"] == other["id"] for x in hist["items"])

        assert (await c.ok("unwatch", id=planted["id"]))["removed"] is True
        assert (await c.ok("unwatch", id=other["id"]))["removed"] is True
        assert (await c.ok("unwatch", id=other["id"]))["removed"] is False
        _save_transcript(c.transcript, "watch")


async def test_tools_over_http_with_a_bearer_token(pipeline):
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    token = "t-" + "x" * 30
    proc = await perception_child(
        "mcp", "--config", str(pipeline.config_path), "--http", "127.0.0.1:0", env=child_env(PERCEPTION_MCP_TOKEN=token)
    )
    try:
        url = (await wait_line(proc, "mcp http://", timeout=60)).split()[1]
        async with httpx2.AsyncClient(timeout=10) as raw:
            for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}):
                r = await raw.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)
                assert r.status_code == 401, r.text
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300))
        async with http, streamable_http_client(url, http_client=http) as (read, write):
            c = Client(None, None)
            async with ClientSession(read, write, logging_callback=c.on_log, message_handler=c.on_message) as session:
                c.session = session
                await asyncio.wait_for(session.initialize(), 30)
                assert {t.name for t in (await session.list_tools()).tools} == TOOLS
                await c.subscribe("perception://captions/latest")
                cams = await c.ok("cameras")
                assert cams["cameras"][0]["camera"] == "cam0"
                assert (await c.ok("now", camera="cam0"))["cameras"]["cam0"]["latest_caption"]
                err, text = await c.call("history", camera="nope")
                assert err and "unknown camera" in text, text
                # notifications reach an HTTP client too (on its GET stream)
                await until(lambda: "perception://captions/latest" in c.updates, 30, "a caption update over HTTP")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()


def _save_transcript(items: list[dict], part: str) -> None:
    """Append this session's requests, results and notifications to $PERCEPTION_MCP_TRANSCRIPT (if set)."""
    out = os.environ.get("PERCEPTION_MCP_TRANSCRIPT")
    if not out:
        return
    with open(out, "a") as f:
        f.write(yaml.safe_dump({part: items}, sort_keys=False, allow_unicode=True, width=120))
