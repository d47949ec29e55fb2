"""rosbag2 recordings, read with `rosbags` (pure Python; reads rosbag2 MCAP and SQLite storage, a bare
.mcap or the bag directory with metadata.yaml, split files, zstd per file or per message, zstd/lz4 MCAP
chunks, and decodes CDR with its own typestore), so no ROS installation is needed.

Why rosbags rather than mcap-ros2-support: it reads what `ros2 bag record` writes as a whole (the bag
directory, its split files and both rosbag2 compression modes, which live in metadata.yaml and are
invisible to an MCAP-only reader), it has a rosbag2 *writer* that tests use to make real bags, and its
typestore carries every ROS 2 distro's standard messages, so a bag whose MCAP lacks a schema still decodes.

A bag is data: nothing in it is imported or executed; its types are decoded with the typestore's
definitions of the standard messages we read (the bag's own definitions only name them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perception.ros2 import names


class BagError(ValueError):
    """A bag that cannot be read, or that lacks what was asked of it (a one-line message for the user)."""


@dataclass(frozen=True)
class BagTopic:
    name: str
    type: str  # canonical: sensor_msgs/msg/Image
    count: int


def is_bag(path: str | Path) -> bool:
    """A rosbag2 bag: a directory with metadata.yaml, or an .mcap file."""
    p = Path(path)
    return (p.is_dir() and (p / "metadata.yaml").is_file()) or p.suffix == ".mcap"


def bag_path(path: str | Path) -> Path:
    """What to open for `path`: a .mcap file inside a bag directory is read with the directory (its
    metadata.yaml says whether messages are compressed, and lists the other split files)."""
    p = Path(path)
    if p.is_file() and (p.parent / "metadata.yaml").is_file():
        return p.parent
    return p


def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)  # the standard messages we read are the same in every distro


class Bag:
    """An open rosbag2 bag: its topics, and its messages on some of them in log-time order, decoded."""

    def __init__(self, path: str | Path) -> None:
        from rosbags.rosbag2 import Reader, ReaderError

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {path}")
        self._reader = Reader(bag_path(self.path))
        try:
            self._reader.open()
        except (ReaderError, OSError, ValueError, KeyError) as exc:
            raise BagError(f"cannot read bag {path}: {exc}") from exc
        self._store = typestore()

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def topics(self) -> list[BagTopic]:
        counts: dict[tuple[str, str], int] = {}
        for c in self._reader.connections:
            key = (c.topic, names.canonical_type(c.msgtype))
            counts[key] = counts.get(key, 0) + c.msgcount
        return [BagTopic(t, ty, n) for (t, ty), n in sorted(counts.items())]

    def duration_s(self) -> float:
        return self._reader.duration / 1e9

    def listing(self) -> str:
        """`/camera/image_raw (sensor_msgs/msg/Image)`, ... for error messages."""
        return ", ".join(f"{t.name} ({t.type})" for t in self.topics) or "none"

    def require(self, topic: str | None, types: tuple[str, ...], what: str) -> BagTopic:
        """The topic to read: `topic` when the bag has it with one of `types`; without `topic`, the bag's
        only topic of those types. BagError, naming the bag's topics, otherwise."""
        topics = self.topics
        if topic is None:
            fitting = [t for t in topics if t.type in types]
            if len(fitting) != 1:
                which = "no" if not fitting else "several"
                raise BagError(f"bag {self.path} has {which} {what} topics; name one; its topics: {self.listing()}")
            return fitting[0]
        found = [t for t in topics if t.name == topic]
        if not found:
            raise BagError(f"bag {self.path} has no topic {topic}; its topics: {self.listing()}")
        if found[0].type not in types:
            raise BagError(
                f"bag {self.path}: topic {topic} is {found[0].type}, not {' or '.join(types)}; "
                f"its topics: {self.listing()}"
            )
        return found[0]

    def messages(self, topics: list[str]) -> Iterator[tuple[str, str, int, Any]]:
        """(topic, canonical type, log time ns, message) on `topics`, in log-time order. A message that
        does not decode is yielded as its ValueError instead (the caller counts it and goes on); damage
        to the file itself raises BagError."""
        from rosbags.rosbag2 import ReaderError

        conns = [c for c in self._reader.connections if c.topic in topics]
        try:
            for conn, t_ns, raw in self._reader.messages(connections=conns):
                msgtype = names.canonical_type(conn.msgtype)
                try:
                    msg = self._store.deserialize_cdr(raw, msgtype)
                except Exception as exc:  # rosbags raises several kinds on truncated or garbled CDR
                    msg = ValueError(f"{msgtype} on {conn.topic} does not decode: {type(exc).__name__}: {exc}")
                yield conn.topic, msgtype, t_ns, msg
        except (ReaderError, OSError) as exc:
            raise BagError(f"cannot read bag {self.path}: {exc}") from exc
