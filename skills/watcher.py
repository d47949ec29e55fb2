"""watcher: publishes an Alert on alerts/<cam> when a phrase given on the command line is detected.

Two ways to detect, chosen with `--via`:
- `embedding` (default): the skill's own threshold. It embeds the phrase once with the model's Y-encoder
  (`embed_text`, the same model the pipeline runs) and scores every window's S^_Y by cosine; rising to
  `--threshold` raises an alert, falling to `--release` re-arms it (hysteresis, per camera).
- `events`: the events node's watch list (`pipeline.events.watch` in the config); an alert follows each
  `Event(kind="watch", active=True)` for the phrase. No model is loaded.
"""

from __future__ import annotations

import asyncio
import sys
from typing import IO, Any, Literal

import numpy as np

from bus.bounded import BoundedDict
from bus.component import Input, Output
from perception.messages import Embedding, Event
from skills.messages import Alert
from skills.sdk import Skill

MAX_CAMERAS = 256


class Watcher(Skill):
    """Alert on alerts/<cam> when a phrase is detected."""

    name = "watcher"
    outputs = {"alerts": Output("alerts/{cam}", Alert)}

    def __init__(
        self,
        config=None,
        phrase: str = "",
        *,
        threshold: float = 0.5,
        release: float | None = None,
        via: Literal["embedding", "events"] = "embedding",
        out: IO[str] | None = None,
        **kw: Any,
    ) -> None:
        if not phrase.strip():
            raise ValueError("watcher needs a non-empty phrase")
        if via not in ("embedding", "events"):
            raise ValueError(f"via must be 'embedding' or 'events', got {via!r}")
        release = threshold - 0.1 if release is None else release
        if release > threshold:
            raise ValueError(f"release ({release}) must be <= threshold ({threshold})")
        super().__init__(config, **kw)
        self.phrase, self.threshold, self.release, self.via = phrase, threshold, release, via
        self.out = out or sys.stdout
        # per camera; camera names come from the messages, so bounded (least recently seen out)
        self.active: BoundedDict[str, bool] = BoundedDict(MAX_CAMERAS)
        self.max_score: BoundedDict[str, float] = BoundedDict(MAX_CAMERAS)
        self.query: np.ndarray | None = None  # [D] the phrase's S_Y

    def inputs(self) -> list[Input]:
        """Only the handler `via` picks: embeddings (own threshold) or events (the events node's list)."""
        wanted = "on_embedding" if self.via == "embedding" else "on_event"
        return [i for i in super().inputs() if i.handler == wanted]

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("phrase", help='what to watch for, e.g. "a purple triangle appears"')
        parser.add_argument("--threshold", type=float, default=0.5, help="cosine that raises an alert (embedding)")
        parser.add_argument(
            "--release", type=float, default=None, help="cosine that re-arms it (default threshold-0.1)"
        )
        parser.add_argument(
            "--via",
            choices=["embedding", "events"],
            default="embedding",
            help="own threshold on embeddings (default) or the events node's watch list",
        )

    @classmethod
    def from_args(cls, config, args) -> Watcher:
        return cls(
            config,
            args.phrase,
            threshold=args.threshold,
            release=args.release,
            via=args.via,
            camera=args.camera,
            rpc_timeout=args.rpc_timeout,
        )

    async def setup(self) -> None:
        if self.via == "events":
            listed = [w.label for w in self.config.pipeline.events.watch]
            if self.phrase not in listed:
                self.log.warning(
                    "phrase is not in the events node's watch list: no alert can come",
                    phrase=self.phrase,
                    watch_list=listed,
                )
            return
        from perception.nodes.models import load_model

        model, model_id = await asyncio.to_thread(load_model, self.config.model, 1)
        self.query = model.embed_text([self.phrase])[0].float().cpu().numpy()  # [D], L2-normalised
        self.log.info("watching", phrase=self.phrase, threshold=self.threshold, model=model_id)

    async def on_embedding(self, emb: Embedding) -> None:
        x = np.asarray(emb.embedding, dtype=np.float32)  # [D]
        if x.shape != self.query.shape:
            raise ValueError(f"embedding dim {x.shape} != phrase dim {self.query.shape}: another model's stream?")
        score = float(x @ self.query / (np.linalg.norm(x) + 1e-12))
        self.max_score[emb.cam] = max(score, self.max_score.get(emb.cam, -1.0))
        active = self.active.get(emb.cam, False)
        if not active and score >= self.threshold:
            self.active[emb.cam] = True
            await self._alert(emb.cam, score, "embedding", emb.start_ns, emb.end_ns, emb.start_s, emb.end_s)
        elif active and score <= self.release:
            self.active[emb.cam] = False

    async def on_event(self, ev: Event) -> None:
        if ev.kind != "watch" or ev.watch != self.phrase or not ev.active:
            return
        score = ev.labels[0].score if ev.labels else float("nan")
        await self._alert(ev.cam, score, "events", ev.start_ns, ev.end_ns, ev.start_s, ev.end_s)

    async def _alert(self, cam: str, score: float, via: str, *span: Any) -> None:
        start_ns, end_ns, start_s, end_s = span
        alert = Alert(
            cam=cam,
            phrase=self.phrase,
            score=round(score, 4),
            via=via,
            start_ns=start_ns,
            end_ns=end_ns,
            start_s=start_s,
            end_s=end_s,
            skill=self.name,
        )
        self.publish(alert)
        self.counters["alerts"] += 1
        print(f"ALERT {cam} {self.phrase!r} score={score:.3f} at {end_s:.2f}s (via {via})", file=self.out, flush=True)
        self.log.info("alert", camera=cam, phrase=self.phrase, score=round(score, 4), end_s=end_s)
