"""Downstream subscribers: narrator, watcher, planner, timeline, and the SDK to write your own.

from skills import Skill, on, run_skill
"""

from bus.component import Output
from skills.messages import Alert, SkillEvent
from skills.sdk import Skill, on, run_skill
from skills.world import WorldClient, WorldUnavailable

__all__ = ["Alert", "Output", "Skill", "SkillEvent", "WorldClient", "WorldUnavailable", "on", "run_skill"]
