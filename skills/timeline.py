"""timeline: a recorded (MCAP) or live session rendered as one PNG, easier to read than logs.

One panel per camera, stream time (s) on x:
- top band: closed segments as coloured bars (one colour per top label), the caption written in each;
- lower plot: per-window scores of the watch phrases (cosine of the phrase's S_Y to each window's S^_Y,
  needs the model's Y-encoder) and `change` = 1 - cosine to the previous window (no model needed), with
  the events node's watch crossings as markers.

    perception skill timeline --input session.mcap --out timeline.png [--watch "a purple triangle appears"]
    perception skill timeline --out live.png --duration 30        # live: collect, then render on exit
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bus.bounded import BoundedDict
from bus.codec import decode
from perception.messages import Caption, Embedding, Event
from skills.sdk import Skill

MAX_WINDOWS = 20_000  # per camera: ~80 min at 4 windows/s; older ones fall off the left edge
MAX_CAMERAS = 64  # camera names come from whoever publishes: a bound, least recently seen fall out


@dataclass
class CameraTrack:
    """What one camera's session holds, in stream seconds; each list keeps its newest `max_items`."""

    max_items: int = MAX_WINDOWS
    segments: collections.deque[tuple[int, float, float, str]] = field(init=False)  # (id, start_s, end_s, label)
    captions: BoundedDict[int, str] = field(init=False)  # segment_id -> text
    windows: collections.deque[tuple[float, np.ndarray]] = field(init=False)  # (end_s, S^_Y [D])
    watch: collections.deque[tuple[float, str, bool, float]] = field(init=False)  # (end_s, phrase, active, score)

    def __post_init__(self) -> None:
        self.segments = collections.deque(maxlen=self.max_items)
        self.captions = BoundedDict(self.max_items)
        self.windows = collections.deque(maxlen=self.max_items)
        self.watch = collections.deque(maxlen=self.max_items)


class Session:
    """A timeline's data, bounded: a live timeline may collect for days (`max_windows` per camera and
    per kind, `max_cameras` cameras)."""

    def __init__(self, *, max_windows: int = MAX_WINDOWS, max_cameras: int = MAX_CAMERAS) -> None:
        self.max_windows = max_windows
        self.cameras: BoundedDict[str, CameraTrack] = BoundedDict(max_cameras)

    def track(self, cam: str) -> CameraTrack:
        return self.cameras.setdefault(cam, lambda: CameraTrack(self.max_windows))

    def add(self, msg: Any) -> bool:
        """Take one decoded message; False if it is not part of a timeline."""
        if isinstance(msg, Embedding):
            self.track(msg.cam).windows.append((msg.end_s, np.asarray(msg.embedding, np.float32).copy()))
        elif isinstance(msg, Caption):
            self.track(msg.cam).captions[msg.segment_id] = msg.text
        elif isinstance(msg, Event) and msg.kind == "segment":
            label = msg.labels[0].label if msg.labels else "?"
            self.track(msg.cam).segments.append((msg.segment_id, msg.start_s, msg.end_s, label))
        elif isinstance(msg, Event) and msg.kind == "watch":
            score = msg.labels[0].score if msg.labels else float("nan")
            self.track(msg.cam).watch.append((msg.end_s, msg.watch or "?", bool(msg.active), score))
        else:
            return False
        return True

    @property
    def watch_phrases(self) -> list[str]:
        return sorted({p for t in self.cameras.values() for _, p, _, _ in t.watch})


def load_session(path: str | Path, cameras: Iterable[str] | None = None, max_windows: int = MAX_WINDOWS) -> Session:
    """Read embeddings/, events/ and captions/ of a recording (bad messages are skipped and counted)."""
    from bus.mcapfile import iter_messages

    session, bad = Session(max_windows=max_windows), 0
    wanted = set(cameras or [])
    for stored in iter_messages(path, topics=["embeddings/", "events/", "captions/"]):
        try:
            msg = decode(stored.parts()).msg
        except ValueError:
            bad += 1
            continue
        if not wanted or getattr(msg, "cam", None) in wanted:
            session.add(msg)
    session.bad_messages = bad  # type: ignore[attr-defined]
    return session


def label_colour(label: str, cmap) -> tuple:
    """A stable colour per label (same label, same colour, across runs and panels)."""
    return cmap(int(hashlib.sha1(label.encode()).hexdigest()[:6], 16) % cmap.N)


def render(
    session: Session, out: str | Path, *, phrase_scores: dict[str, dict[str, np.ndarray]] | None = None, title: str = ""
) -> Path:
    """Write the PNG; `phrase_scores[cam][phrase]` are per-window cosines aligned with the camera's windows."""
    import matplotlib

    from perception.plots import pyplot, save_figure

    plt = pyplot()

    cams = sorted(session.cameras) or ["(empty)"]
    fig, axes = plt.subplots(
        2 * len(cams),
        1,
        figsize=(14, 4.2 * len(cams)),
        squeeze=False,
        gridspec_kw={"height_ratios": [1, 2.2] * len(cams)},
    )
    seg_cmap = matplotlib.colormaps["tab20"]
    for i, cam in enumerate(cams):
        band, plot = axes[2 * i][0], axes[2 * i + 1][0]
        track = session.cameras.get(cam, CameraTrack())
        prev_end = float("-inf")
        for seg_id, start, end, label in sorted(track.segments):
            # a segment spans its first window's first frame to its last window's last frame, so neighbours
            # overlap by one window length: draw each from where the previous one ended
            start, prev_end = max(start, min(prev_end, end)), end
            band.barh(
                0,
                max(end - start, 0.05),
                left=start,
                height=0.8,
                color=label_colour(label, seg_cmap),
                edgecolor="black",
                linewidth=0.5,
            )
            text = track.captions.get(seg_id, label)
            band.text((start + end) / 2, 0, text, ha="center", va="center", fontsize=7, rotation=12, clip_on=True)
        band.set_yticks([])
        band.set_title(f"{cam}: segments (colour = top label) and captions", fontsize=9, loc="left")
        if track.windows:
            t = np.array([w[0] for w in track.windows])  # [N]
            x = np.stack([w[1] for w in track.windows])  # [N, D]
            x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
            change = np.r_[0.0, 1.0 - np.sum(x[1:] * x[:-1], axis=1)]  # [N]
            plot.plot(t, change, color="0.4", linewidth=1, label="change (1 - cos to previous window)")
            for phrase, scores in (phrase_scores or {}).get(cam, {}).items():
                plot.plot(t, scores, linewidth=1.6, label=f"score: {phrase}")
        markers = {True: ("^", "tab:red"), False: ("v", "tab:blue")}
        for end_s, _phrase, active, score in track.watch:
            m, c = markers[active]
            plot.scatter([end_s], [score], marker=m, color=c, s=50, zorder=3)
        if track.watch:
            plot.scatter([], [], marker="^", color="tab:red", label="watch on (events node)")
            plot.scatter([], [], marker="v", color="tab:blue", label="watch off")
        plot.set_xlabel("stream time (s)")
        plot.set_ylabel("cosine")
        plot.grid(alpha=0.3)
        if plot.get_legend_handles_labels()[0]:
            plot.legend(fontsize=7, loc="upper right")
        lo = min([s[1] for s in track.segments] + [w[0] for w in track.windows] or [0.0])
        hi = max([s[2] for s in track.segments] + [w[0] for w in track.windows] or [1.0])
        for ax in (band, plot):
            ax.set_xlim(lo, max(hi, lo + 1e-3))
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out, dpi=90)


def score_phrases(session: Session, phrases: list[str], model) -> dict[str, dict[str, np.ndarray]]:
    """Per camera and phrase, the cosine of the phrase's S_Y to each window's S^_Y."""
    if not phrases:
        return {}
    q = model.embed_text(phrases).float().cpu().numpy()  # [P, D]
    out: dict[str, dict[str, np.ndarray]] = {}
    for cam, track in session.cameras.items():
        if not track.windows:
            continue
        x = np.stack([w[1] for w in track.windows])  # [N, D]
        if x.shape[1] != q.shape[1]:
            raise ValueError(f"{cam}: window embeddings have D={x.shape[1]}, the model's text side D={q.shape[1]}")
        x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
        out[cam] = {p: x @ q[k] for k, p in enumerate(phrases)}  # [N] each
    return out


class Timeline(Skill):
    """Render a recorded or live session as a PNG timeline."""

    name = "timeline"
    teardown_timeout_s = 120.0  # rendering may load the model first

    def __init__(
        self,
        config=None,
        *,
        out: str | Path = "timeline.png",
        input: str | Path | None = None,
        watch: list[str] | None = None,
        max_windows: int = MAX_WINDOWS,
        **kw: Any,
    ) -> None:
        super().__init__(config, **kw)
        self.out, self.input, self.watch = Path(out), input, list(watch or [])
        self.max_windows = max_windows
        self.session = Session(max_windows=max_windows)
        self.uses_bus = input is None
        self.written: Path | None = None

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--input", default=None, help="an MCAP recording (default: collect live until stopped)")
        parser.add_argument("--out", default="timeline.png", help="PNG to write")
        parser.add_argument(
            "--watch", nargs="*", default=[], help="phrases to score per window (default: the session's watch phrases)"
        )
        parser.add_argument(
            "--max-windows",
            type=int,
            default=MAX_WINDOWS,
            help="windows (and segments, captions, crossings) kept per camera: the newest",
        )

    @classmethod
    def from_args(cls, config, args) -> Timeline:
        return cls(
            config,
            out=args.out,
            input=args.input,
            watch=args.watch,
            max_windows=args.max_windows,
            camera=args.camera,
            rpc_timeout=args.rpc_timeout,
        )

    # live mode: collect everything, render on the way out
    async def on_embedding(self, emb: Embedding) -> None:
        self.session.add(emb)

    async def on_event(self, ev: Event) -> None:
        self.session.add(ev)

    async def on_caption(self, caption: Caption) -> None:
        self.session.add(caption)

    async def main(self) -> None:
        if self.input is None:
            await super().main()  # live: wait until stopped; teardown renders
            return
        self.session = await asyncio.to_thread(
            load_session, self.input, [self.camera] if self.camera else None, self.max_windows
        )

    async def teardown(self) -> None:
        await asyncio.to_thread(self.render)

    def render(self) -> Path:
        phrases = self.watch or self.session.watch_phrases
        scores = {}
        if phrases and any(t.windows for t in self.session.cameras.values()):
            from perception.nodes.models import load_model

            model, _ = load_model(self.config.model, 1)
            scores = score_phrases(self.session, phrases, model)
        source = str(self.input) if self.input else "live"
        self.written = render(self.session, self.out, phrase_scores=scores, title=f"session: {source}")
        n = {c: len(t.windows) for c, t in self.session.cameras.items()}
        self.log.info("timeline written", out=str(self.written), windows=n)
        print(f"timeline {self.written}", flush=True)
        return self.written
