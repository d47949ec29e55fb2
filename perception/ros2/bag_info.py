"""`perception info BAG`: a rosbag2 bag's topics, types, counts and rates (a directory with metadata.yaml,
or an .mcap whose channels carry CDR, as ROS 2 writes them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perception.ros2.bag import Bag, BagError, bag_path


def is_ros_bag(path: str | Path) -> bool:
    """A rosbag2 bag rather than one of our recordings: a bag directory, or an MCAP whose channels are CDR."""
    p = Path(path)
    if p.is_dir():
        return (p / "metadata.yaml").is_file()
    if p.suffix != ".mcap" or not p.is_file():
        return False
    if bag_path(p) != p:
        return True
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    try:
        with p.open("rb") as f:
            summary = make_reader(f).get_summary()
    except (McapError, OSError, ValueError):
        return False
    channels = summary.channels.values() if summary is not None else []
    return any(c.message_encoding == "cdr" for c in channels)


def describe_bag(path: str | Path) -> dict[str, Any]:
    with Bag(path) as bag:
        duration = bag.duration_s()
        return {
            "path": str(path),
            "ros_bag": True,
            "duration_s": round(duration, 3),
            "topics": [
                {
                    "topic": t.name,
                    "type": t.type,
                    "count": t.count,
                    "rate_hz": round((t.count - 1) / duration, 2) if t.count > 1 and duration > 0 else 0.0,
                }
                for t in bag.topics
            ],
        }


def render(info: dict[str, Any]) -> str:
    lines = [f"rosbag2:   {info['path']}", f"duration:  {info['duration_s']:.3f} s", ""]
    width = max([len(t["topic"]) for t in info["topics"]] + [5])
    twidth = max([len(t["type"]) for t in info["topics"]] + [4])
    lines.append(f"{'topic':<{width}}  {'type':<{twidth}}  {'count':>7}  {'rate Hz':>8}")
    for t in info["topics"]:
        lines.append(f"{t['topic']:<{width}}  {t['type']:<{twidth}}  {t['count']:>7}  {t['rate_hz']:>8.2f}")
    return "\n".join(lines)


__all__ = ["BagError", "describe_bag", "is_ros_bag", "render"]
