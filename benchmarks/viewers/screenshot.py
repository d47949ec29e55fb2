"""The picture in docs/viewers.md: Rerun's web viewer showing a recorded session, shot by headless Chromium.

    python -m benchmarks.viewers.screenshot SESSION.mcap docs/viewers-rerun.png [--config C] [--wait 40]

Runs `perception view SESSION.mcap --web` (the web viewer and its gRPC server on 127.0.0.1), opens the
viewer's URL in headless Chromium (WebGL on SwiftShader, no GPU needed) driven over the DevTools protocol,
waits until the viewer has drawn the session, and writes a PNG. A documentation tool, not a test: it needs
Chromium (`apt-get install chromium`), which `make test` machines do not have.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--no-first-run",
    "--use-angle=swiftshader",  # software WebGL: the viewer renders without a GPU
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def start_view(session: str, config: str | None, web_port: int, grpc_port: int, labels: str | None):
    cmd = [sys.executable, "-m", "perception.cli", "view", session, "--web"]
    cmd += ["--web-port", str(web_port), "--grpc-port", str(grpc_port), "--max-fps", "15"]
    if config:
        cmd += ["--config", config]
    if labels:
        cmd += ["--labels", labels]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    url = None
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # "rerun URL", then the summary once the whole session is logged
        if line.startswith("rerun "):
            url = line.split()[1]
        elif line.startswith("{") and url:
            print(f"logged: {line.strip()}", file=sys.stderr)
            return proc, url
        if time.monotonic() > deadline:
            break
    proc.terminate()
    raise RuntimeError("perception view --web did not start")


def start_chromium(width: int, height: int) -> tuple[subprocess.Popen, str, Path]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    profile = Path(tempfile.mkdtemp(prefix="shot-"))
    proc = subprocess.Popen(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text().strip():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("Chromium did not open its DevTools port")
        time.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list").read())
    page = next(t for t in targets if t["type"] == "page")
    return proc, page["webSocketDebuggerUrl"], profile


class DevTools:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params):
        self.next_id += 1
        mid = self.next_id
        await self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})


async def shoot(ws_url: str, url: str, width: int, height: int, wait_s: float) -> bytes:
    import websockets

    async with websockets.connect(ws_url, max_size=None) as ws:
        cdp = DevTools(ws)
        await cdp.call("Page.enable")
        await cdp.call(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
        )
        await cdp.call("Page.navigate", url=url)
        # the viewer downloads its wasm, connects to the gRPC server and ingests the session: give it
        # `wait_s`, then keep the last of two shots that agree (nothing still loading or animating)
        await asyncio.sleep(wait_s)
        previous = b""
        for _ in range(10):
            shot = base64.b64decode((await cdp.call("Page.captureScreenshot", format="png"))["data"])
            if shot == previous:
                break
            previous = shot
            await asyncio.sleep(3)
        return previous


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.viewers.screenshot", description=__doc__)
    p.add_argument("session", help="an MCAP recording (perception record)")
    p.add_argument("out", help="the PNG to write")
    p.add_argument("--config", default=None)
    p.add_argument("--labels", default=None, help="as perception view --labels")
    p.add_argument("--size", default="1600x1000", help="viewport WxH (default 1600x1000)")
    p.add_argument("--wait", type=float, default=40.0, help="seconds to let the viewer load (default 40)")
    p.add_argument("--web-port", type=int, default=9190)
    p.add_argument("--grpc-port", type=int, default=9976)
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    view, url = start_view(args.session, args.config, args.web_port, args.grpc_port, args.labels)
    chromium = profile = None
    try:
        chromium, ws_url, profile = start_chromium(width, height)
        Path(args.out).write_bytes(asyncio.run(shoot(ws_url, url, width, height, args.wait)))
        print(f"wrote {args.out} ({url})")
    finally:
        for proc in (chromium, view):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
