"""planner: an example agent loop over the world node: now -> search -> ask -> a logged decision.

Every `--interval` s: read the current state (`now`), look for the goal in memory (`search`), ask the
camera a multiple-choice question (`ask`), and decide: `approach` when the best-matching segment for the
goal is the latest closed one and scores at least `--goal-threshold`, `explore` otherwise. Each decision
is printed as one JSON line, logged and published as a `SkillEvent` on skills/planner. A world node that
does not answer in time, or an `ask` the encoder cannot serve, is part of the decision (`errors`), never
a crash: a robot's planner must keep going when perception is degraded.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from typing import IO, Any

from bus.component import Output
from bus.rpc import RpcError
from skills.messages import SkillEvent
from skills.sdk import Skill
from skills.world import WorldUnavailable


class Planner(Skill):
    """Example agent loop: now -> search -> ask -> decision."""

    name = "planner"
    outputs = {"decisions": Output("skills/{skill}", SkillEvent)}

    def __init__(
        self,
        config=None,
        *,
        goal: str = "the red circle",
        question: str = "what colour is the shape?",
        choices: list[str] | None = None,
        interval: float = 2.0,
        goal_threshold: float = 0.5,
        decisions: int | None = None,
        out: IO[str] | None = None,
        keep: int = 100,
        **kw: Any,
    ) -> None:
        super().__init__(config, **kw)
        self.goal, self.question, self.interval = goal, question, interval
        self.choices = choices or ["red", "green", "blue", "yellow", "purple", "orange"]
        self.goal_threshold = goal_threshold
        self.max_decisions = decisions
        self.out = out or sys.stdout
        # the latest `keep` decisions only: a planner runs for days, every decision is printed and published
        self.decisions: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self.n_decisions = 0

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--goal", default="the red circle", help="what the robot is looking for")
        parser.add_argument("--question", default="what colour is the shape?")
        parser.add_argument("--choices", default="red,green,blue,yellow,purple,orange", help="comma-separated")
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between decisions")
        parser.add_argument("--goal-threshold", type=float, default=0.5, help="search score that counts as found")
        parser.add_argument("--decisions", type=int, default=None, help="stop after N decisions")

    @classmethod
    def from_args(cls, config, args) -> Planner:
        return cls(
            config,
            goal=args.goal,
            question=args.question,
            choices=[c.strip() for c in args.choices.split(",") if c.strip()],
            interval=args.interval,
            goal_threshold=args.goal_threshold,
            decisions=args.decisions,
            camera=args.camera,
            rpc_timeout=args.rpc_timeout,
        )

    async def decide(self) -> dict[str, Any]:
        """One turn of the loop; every query failure is recorded in `errors` instead of raised."""
        d: dict[str, Any] = {"goal": self.goal, "camera": self.camera, "errors": {}}
        try:
            now = await self.world.now(self.camera)
            cams = now["cameras"]
            cam = self.camera or (sorted(cams)[0] if cams else None)
            state = cams.get(cam) or {}
            d["camera"] = cam
            d["caption"] = (state.get("latest_caption") or {}).get("text")
            d["last_segment"] = (state.get("last_segment") or {}).get("segment_id")
            d["active_watch"] = state.get("active_watch", [])
        except (WorldUnavailable, RpcError) as exc:
            d["errors"]["now"] = str(exc)
            d["decision"] = "wait"  # no world state: do nothing rash
            return d
        try:
            hits = await self.world.search(self.goal, d["camera"], k=3)
            d["best_match"] = hits[0] if hits else None
        except (WorldUnavailable, RpcError) as exc:
            d["errors"]["search"], d["best_match"] = str(exc), None
        try:
            ans = await self.world.ask(self.question, self.choices, d["camera"])
            d["answer"], d["answer_scores"] = ans.get("answer"), ans.get("scores")
        except (WorldUnavailable, RpcError) as exc:
            d["errors"]["ask"], d["answer"] = str(exc), None
        best = d["best_match"]
        found = (
            best is not None
            and best.get("score", -1) >= self.goal_threshold
            and best.get("segment_id") == d["last_segment"]
        )
        d["decision"] = "approach" if found else "explore"
        return d

    async def main(self) -> None:
        while self.max_decisions is None or self.n_decisions < self.max_decisions:
            d = await self.decide()
            self.decisions.append(d)
            self.n_decisions += 1
            self.counters["decisions"] += 1
            self.counters[f"decisions.{d['decision']}"] += 1
            if d["errors"]:
                self.counters["degraded"] += 1
            print(json.dumps(d, default=str), file=self.out, flush=True)
            self.log.info(
                "decision",
                decision=d["decision"],
                camera=d["camera"],
                answer=d.get("answer"),
                errors=sorted(d["errors"]),
            )
            self.publish(
                SkillEvent(
                    skill=self.name, name="decision", text=d["decision"], data=json.loads(json.dumps(d, default=str))
                )
            )
            if self.max_decisions is None or self.n_decisions < self.max_decisions:
                await asyncio.sleep(self.interval)
