"""`perception view [SESSION.mcap]`: a live pipeline or a recording, logged to Rerun (rerun-sdk).

Where it goes (any combination):
- `--save OUT.rrd`: a file, for headless machines (`rerun OUT.rrd` opens it later);
- `--web`: Rerun's web viewer and its gRPC server, both bound to 127.0.0.1 (the SDK's own `serve_*` bind
  every interface, so the wheel's `rerun` binary serves them, started here with `--bind 127.0.0.1`);
- neither: the native viewer, spawned by the SDK (needs a display).

Live, the viewer is a bus subscriber (perception/viewers/live.py) and its label texts are embedded by the
encoder node; from a recording, every message is logged at its own stream time and the texts are embedded
by the checkpoint's Y-encoder here (`--checkpoint`, default: the recorded session's model, else the
config's). What each entity shows: perception/viewers/rerun_sink.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bus.logs import get_logger
from perception.config import AppConfig
from perception.viewers import defaults
from perception.viewers.feed import DEFAULT_MAX_FPS, Feed
from perception.viewers.live import LiveViewer
from perception.viewers.recording import recorded_messages, session_config
from perception.viewers.rerun_sink import DEFAULT_HISTORY, RerunSink
from perception.viewers.texts import CheckpointTexts, TextTable, WatchSet

log = get_logger("viewers.rerun")

APP_ID = "vljepa-perception"
WEB_PORT = defaults.RERUN_WEB_PORT
GRPC_PORT = defaults.RERUN_GRPC_PORT
LOOPBACK = "127.0.0.1"


class ViewerUnavailableError(RuntimeError):
    """Rerun's viewer (native or web) could not be started; the message says what to use instead."""


def _pdeathsig() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child die with us (PR_SET_PDEATHSIG), resolved here, in the parent.

    The child runs it between fork and exec as a copy of a threaded process: an import or a dlopen there
    can wait forever on a lock another thread held at the fork. So only the foreign call is left for it."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    sigterm = int(signal.SIGTERM)
    return lambda: prctl(1, sigterm)  # PR_SET_PDEATHSIG: gone with `perception view`


def _wait_listening(port: int, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise ViewerUnavailableError(f"the rerun web viewer exited at start (code {proc.returncode})")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ViewerUnavailableError(
                    f"the rerun web viewer did not listen on {LOOPBACK}:{port} in {timeout_s:g} s"
                ) from None
            time.sleep(0.05)


def rerun_binary() -> str:
    """The `rerun` executable the rerun-sdk wheel ships (its `rerun_cli` package; RERUN_CLI_PATH overrides it,
    as the wheel's own wrapper does). Run directly, not through the wrapper, so that stopping it (and the
    death signal) reaches the server itself."""
    override = os.environ.get("RERUN_CLI_PATH")
    if override:
        return override
    import rerun_cli

    path = Path(rerun_cli.__file__).parent / "rerun"
    if not path.is_file():
        raise ViewerUnavailableError(f"the rerun-sdk wheel has no viewer binary at {path}")
    return str(path)


@dataclass
class WebViewer:
    """`rerun --serve-web --bind 127.0.0.1` as a child process: the web viewer plus the gRPC server the SDK
    streams to. Stopped (SIGTERM, then SIGKILL) on `close`, and by the kernel if this process dies."""

    web_port: int = WEB_PORT
    grpc_port: int = GRPC_PORT
    memory_limit: str = "1GiB"
    proc: subprocess.Popen | None = field(default=None, repr=False)
    _err: Any = field(default=None, repr=False)

    @property
    def grpc_url(self) -> str:
        return f"rerun+http://{LOOPBACK}:{self.grpc_port}/proxy"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}/?url={self.grpc_url.replace('+', '%2B')}"

    def start(self, timeout_s: float = 30.0) -> WebViewer:
        cmd = [
            rerun_binary(),
            "--serve-web",
            "--bind",
            LOOPBACK,
            "--port",
            str(self.grpc_port),
            "--web-viewer-port",
            str(self.web_port),
            "--server-memory-limit",
            self.memory_limit,
        ]
        self._err = tempfile.TemporaryFile()  # not a pipe: nobody reads it while the viewer runs
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err, preexec_fn=_pdeathsig()
        )
        try:
            _wait_listening(self.grpc_port, self.proc, timeout_s)
            _wait_listening(self.web_port, self.proc, timeout_s)
        except ViewerUnavailableError as exc:
            err = self._stop()
            raise ViewerUnavailableError(f"{exc}: {err[-500:]}") from None
        log.info("rerun web viewer", url=self.url, grpc=self.grpc_url)
        return self

    def _stop(self) -> str:
        if self.proc is None:
            return ""
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._err.seek(0)
        err = self._err.read().decode(errors="replace")
        self._err.close()
        return err

    def close(self) -> None:
        self._stop()


def open_stream(*, save: Path | None, web: WebViewer | None, recording_id: str | None = None) -> Any:
    """A RecordingStream with its sinks: the file, the web viewer, or (neither) a spawned native viewer."""
    import rerun as rr

    rec = rr.RecordingStream(APP_ID, recording_id=recording_id)
    sinks = []
    if save is not None:
        sinks.append(rr.FileSink(str(save)))
    if web is not None:
        sinks.append(rr.GrpcSink(web.grpc_url))
    if sinks:
        rec.set_sinks(*sinks)
        return rec
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and sys.platform.startswith("linux"):
        raise ViewerUnavailableError("no display for the native Rerun viewer: use --save OUT.rrd or --web")
    try:
        rec.spawn()
    except Exception as exc:
        raise ViewerUnavailableError(f"could not spawn the Rerun viewer ({exc}): use --save OUT.rrd or --web") from exc
    return rec


class RerunViewer(LiveViewer):
    """The live pipeline into a RecordingStream (labels embedded by the encoder node)."""

    name: ClassVar[str] = "rerun"

    def __init__(
        self,
        config: AppConfig,
        rec: Any,
        *,
        labels: list[str],
        max_fps: float = DEFAULT_MAX_FPS,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        super().__init__(config)
        cameras = [c.name for c in config.pipeline.cameras]
        sink = RerunSink(rec, history=history, cameras=cameras)
        watches = WatchSet(config.pipeline.events.watch)
        self.feed = Feed(sink, labels=labels, max_fps=max_fps, watches=watches, counters=self.counters)


def view_recording(
    path: str | Path,
    rec: Any,
    *,
    config: AppConfig,
    labels: list[str],
    checkpoint: str | None = None,
    max_fps: float = DEFAULT_MAX_FPS,
    history: int = DEFAULT_HISTORY,
) -> Counter:
    """Log the recording `path` into `rec`; returns the counts (messages, frames_sent, windows_scored...).

    Texts are embedded offline by the checkpoint's Y-encoder: `checkpoint`, else the recorded session's
    model (when this version reads its config), else `config`'s. A model whose embeddings have another
    dimension than the recording's scores nothing (`label_dim_mismatch`) and says so."""
    session = session_config(path)
    model_section = (session or config).model
    watches = WatchSet((session or config).pipeline.events.watch)
    counters: Counter = Counter()
    texts = TextTable()
    sink = RerunSink(rec, history=history)
    feed = Feed(sink, labels=labels, max_fps=max_fps, watches=watches, texts=texts, counters=counters)
    encoder: CheckpointTexts | None = None
    no_encoder = False  # True once the text encoder could not be loaded: no scores, no retry
    model_ids: set[str] = set()
    for item in recorded_messages(path, counters):
        if encoder is None and not no_encoder and feed.wanted_texts:
            try:
                encoder = CheckpointTexts(model_section, checkpoint)
            except FileNotFoundError as exc:  # the recorded session's checkpoint is not on this machine
                if checkpoint is not None:
                    raise
                no_encoder = True
                log.warning("no text encoder: no label or watch scores (pass --checkpoint DIR)", error=str(exc))
        if encoder is not None:
            encoder.fill(texts, feed.wanted_texts)  # labels at once, a runtime watch phrase when it appears
        if getattr(item.msg, "model_id", None) and item.msg.model_id not in model_ids:
            model_ids.add(item.msg.model_id)
            if encoder is not None and item.msg.model_id != encoder.model_id:
                log.warning(
                    "the recording's embeddings come from another model than the text encoder here: "
                    "similarities may mean nothing (pass --checkpoint)",
                    recorded=item.msg.model_id,
                    text_encoder=encoder.model_id,
                )
        feed.push(item.topic, item.msg, item.log_time_ns)
    if counters["label_dim_mismatch"]:
        log.warning(
            "label embeddings have another dimension than the recording's: no similarity heat-map (pass --checkpoint)",
            windows=counters["label_dim_mismatch"],
            text_dim=texts.dim,
        )
    sink.close()
    return counters
