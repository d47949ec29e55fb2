"""Find a skill class by name: a shipped skill, `package.module:Class`, or `path/to/file.py:Class`."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from skills.sdk import Skill

SHIPPED: dict[str, str] = {
    "narrator": "skills.narrator:Narrator",
    "watcher": "skills.watcher:Watcher",
    "planner": "skills.planner:Planner",
    "timeline": "skills.timeline:Timeline",
}


class SkillNotFound(LookupError):
    """No skill by that name; the message lists the shipped ones and the accepted forms."""


def _hint(name: str) -> str:
    return (
        f"unknown skill {name!r}: shipped skills are {sorted(SHIPPED)}; "
        "or give module:Class (importable) or path/to/file.py[:Class]"
    )


def _from_file(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(f"user_skill_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise SkillNotFound(f"cannot import skill file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_skill_class(name: str) -> type[Skill]:
    """`narrator` -> skills.narrator.Narrator; `mod:Cls`; `file.py` (its only Skill subclass) or `file.py:Cls`."""
    target = SHIPPED.get(name, name)
    module_part, _, attr = target.partition(":")
    if module_part.endswith(".py"):
        path = Path(module_part).expanduser()
        if not path.is_file():
            raise SkillNotFound(f"skill file not found: {path}")
        module = _from_file(path)
    else:
        if not attr:
            raise SkillNotFound(_hint(name))
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            raise SkillNotFound(f"{_hint(name)} ({exc})") from exc
    if attr:
        cls = getattr(module, attr, None)
        if not (inspect.isclass(cls) and issubclass(cls, Skill)):
            raise SkillNotFound(f"{module_part} has no Skill subclass named {attr!r}")
        return cls
    found = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, Skill) and c is not Skill and c.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise SkillNotFound(
            f"{module_part} defines {len(found)} Skill subclasses "
            f"({[c.__name__ for c in found]}); name one as {module_part}:Class"
        )
    return found[0]
