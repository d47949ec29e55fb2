"""Watch phrases added at run time: their checks, the world's bounded list of them, and its small file.

The world node owns the list (`watch` / `unwatch` / `watches` on bus.rpc, perception/nodes/world.py) and
publishes it whole as a `WatchList` on watches/all; the events node scores what it receives
(perception/nodes/events.py). Configured watches (`pipeline.events.watch`) are listed beside them with the
id "config:<label>" and every camera; they are changed in the config, not here.

A runtime watch is (phrase, camera): phrase 1..MAX_PHRASE_CHARS characters after stripping, camera None
(every camera) or a camera name; enter/leave cosines in [-1, 1] with leave <= enter. Adding the same
(phrase, camera) again updates its thresholds and keeps its id. At most `max_per_scope` watches per camera
scope (None is the scope "*") and `max_scopes` scopes: camera names come from callers, so both bounds hold
the list (and the phrases the events node must embed) to a known size.

With `world.persist` set, the list lives in `<persist>.watches.json` (JSON, mode 0600, written to a temp
file, fsynced and renamed over the old one), reloaded at start; a file that cannot be read is a warning and
an empty list, an entry that does not pass the checks is skipped.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bus.reader_limits import WATCH_FILE_MAX_BYTES
from perception.messages import WatchItem, WatchList
from perception.nodes.config import WatchConfig
from perception.nodes.safe_files import read_bounded, replace_atomically
from perception.nodes.sections import NAME_PATTERN

MAX_PHRASE_CHARS = 200
MAX_CAMERA_CHARS = 64
DEFAULT_ENTER = WatchConfig.model_fields["enter"].default
DEFAULT_LEAVE = WatchConfig.model_fields["leave"].default
ALL_CAMERAS = "*"  # the scope of watches with camera None
FILE_VERSION = 1
MAX_FILE_BYTES = WATCH_FILE_MAX_BYTES  # bus/reader_limits.py
_CAMERA = re.compile(NAME_PATTERN)
_RUNTIME_ID = re.compile(r"^w-[0-9a-f]{8}$")


@dataclass(frozen=True)
class Watch:
    """A watch phrase as it is scored: configured ("config:<label>", every camera) or runtime ("w-<hex>")."""

    id: str
    phrase: str
    enter: float
    leave: float
    camera: str | None = None  # None: every camera
    source: str = "runtime"  # "config" or "runtime"

    @classmethod
    def configured(cls, w: WatchConfig) -> Watch:
        return cls(config_id(w.label), w.label, w.enter, w.leave, None, "config")

    def applies_to(self, cam: str) -> bool:
        return self.camera is None or self.camera == cam

    def item(self) -> WatchItem:
        return WatchItem(
            id=self.id, phrase=self.phrase, camera=self.camera, enter=self.enter, leave=self.leave, source=self.source
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "phrase": self.phrase,
            "camera": self.camera,
            "enter": self.enter,
            "leave": self.leave,
            "source": self.source,
        }


def config_id(label: str) -> str:
    return f"config:{label}"


# -- checks (RPC params, the file, a received WatchList) -----------------------------------------------------


def _number(v: Any) -> bool:
    return type(v) in (int, float) and -1.0 <= v <= 1.0  # NaN fails both comparisons


def check_camera(camera: Any) -> str | None:
    """None, or a camera name (NAME_PATTERN, at most MAX_CAMERA_CHARS); ValueError otherwise."""
    if camera is None:
        return None
    if type(camera) is not str or len(camera) > MAX_CAMERA_CHARS or not _CAMERA.match(camera):
        raise ValueError(
            f"'camera' must be null (every camera) or a camera name of at most {MAX_CAMERA_CHARS} "
            f"characters from [A-Za-z0-9_.-]"
        )
    return camera


def check_watch(phrase: Any, camera: Any, enter: Any, leave: Any) -> tuple[str, str | None, float, float]:
    """(phrase stripped, camera, enter, leave) of a runtime watch; ValueError saying what is wrong."""
    if type(phrase) is not str or not 1 <= len(phrase.strip()) <= MAX_PHRASE_CHARS:
        raise ValueError(f"'phrase' must be a string of 1..{MAX_PHRASE_CHARS} characters (after stripping)")
    camera = check_camera(camera)
    enter = DEFAULT_ENTER if enter is None else enter
    leave = DEFAULT_LEAVE if leave is None else leave
    if not (_number(enter) and _number(leave)):
        raise ValueError("'enter' and 'leave' must be numbers in [-1, 1] (cosine similarities)")
    if leave > enter:
        raise ValueError(f"'leave' ({leave}) must be <= 'enter' ({enter}): leave is where the phrase turns off")
    return phrase.strip(), camera, float(enter), float(leave)


def _getter(item: Any) -> Any:
    return item.get if isinstance(item, dict) else lambda k, d=None: getattr(item, k, d)


def runtime_watch(item: Any) -> Watch:
    """A runtime watch from a map or a WatchItem (a file entry, a received list); ValueError if it is none."""
    get = _getter(item)
    wid = get("id")
    if type(wid) is not str or not _RUNTIME_ID.match(wid):
        raise ValueError("a runtime watch id is 'w-' and 8 hex digits")
    phrase, camera, enter, leave = check_watch(get("phrase"), get("camera"), get("enter"), get("leave"))
    if phrase != get("phrase"):
        raise ValueError("a stored phrase is stripped")
    return Watch(wid, phrase, enter, leave, camera)


def runtime_watches(items: Iterable[Any], limit: int) -> tuple[list[Watch], int]:
    """The valid runtime entries of a received list (configured ones skipped), at most `limit`, ids unique;
    and how many were rejected."""
    out: dict[str, Watch] = {}
    rejected = 0
    for item in items:
        if _getter(item)("source") == "config":
            continue
        try:
            w = runtime_watch(item)
        except ValueError:
            rejected += 1
            continue
        if w.id in out or len(out) >= limit:
            rejected += 1
            continue
        out[w.id] = w
    return list(out.values()), rejected


# -- the world's list ---------------------------------------------------------------------------------------


class WatchLimit(Exception):
    """A new watch would exceed `max_per_scope` or `max_scopes`."""


class WatchRegistry:
    """The runtime watches, bounded per camera scope and in scopes, in the order they were added."""

    def __init__(self, configured: Sequence[WatchConfig], max_per_scope: int, max_scopes: int) -> None:
        self.configured = [Watch.configured(w) for w in configured]
        self.max_per_scope = max_per_scope
        self.max_scopes = max_scopes
        self.runtime: dict[str, Watch] = {}

    @property
    def max_total(self) -> int:
        return self.max_per_scope * self.max_scopes

    def _scopes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for w in self.runtime.values():
            key = w.camera or ALL_CAMERAS
            counts[key] = counts.get(key, 0) + 1
        return counts

    def find(self, phrase: str, camera: str | None) -> Watch | None:
        return next((w for w in self.runtime.values() if w.phrase == phrase and w.camera == camera), None)

    def add(self, phrase: str, camera: str | None, enter: float, leave: float) -> tuple[Watch, bool]:
        """(the watch, whether the list changed). Checked params; WatchLimit beyond the bounds."""
        old = self.find(phrase, camera)
        if old is not None:
            new = Watch(old.id, phrase, enter, leave, camera)
            self.runtime[old.id] = new
            return new, new != old
        scopes = self._scopes()
        scope = camera or ALL_CAMERAS
        if scopes.get(scope, 0) >= self.max_per_scope:
            raise WatchLimit(
                f"camera {scope!r} has {self.max_per_scope} runtime watches already "
                f"(pipeline.world.max_watches): unwatch one first"
            )
        if scope not in scopes and len(scopes) >= self.max_scopes:
            raise WatchLimit(
                f"runtime watches name {len(scopes)} camera scopes already (at most {self.max_scopes}: "
                f"pipeline.world.max_cameras + 1 for every camera): unwatch one first"
            )
        wid = new_id()
        while wid in self.runtime:
            wid = new_id()
        w = self.runtime[wid] = Watch(wid, phrase, enter, leave, camera)
        return w, True

    def remove(self, wid: str) -> Watch | None:
        return self.runtime.pop(wid, None)

    def all(self) -> list[Watch]:
        return [*self.configured, *self.runtime.values()]

    def applying_to(self, camera: str | None) -> list[Watch]:
        return [w for w in self.all() if camera is None or w.applies_to(camera)]

    def message(self) -> WatchList:
        return WatchList(watches=[w.item() for w in self.all()])

    def restore(self, watches: Iterable[Watch]) -> int:
        """Add checked runtime watches (from the file) within the bounds; returns how many did not fit."""
        skipped = 0
        for w in watches:
            if w.id in self.runtime or self.find(w.phrase, w.camera) is not None:
                skipped += 1
                continue
            scopes = self._scopes()
            scope = w.camera or ALL_CAMERAS
            if scopes.get(scope, 0) >= self.max_per_scope or (scope not in scopes and len(scopes) >= self.max_scopes):
                skipped += 1
                continue
            self.runtime[w.id] = w
        return skipped


def new_id() -> str:
    return "w-" + secrets.token_hex(4)


# -- the file ---------------------------------------------------------------------------------------------


def watch_file(persist: Path) -> Path:
    """Where the runtime watches live, beside the world's persist file."""
    return persist.with_name(persist.name + ".watches.json")


def encode_file(watches: Iterable[Watch]) -> bytes:
    entries = [{k: v for k, v in asdict(w).items() if k != "source"} for w in watches]
    return json.dumps({"version": FILE_VERSION, "watches": entries}, indent=1, allow_nan=False).encode() + b"\n"


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def decode_file(data: bytes) -> tuple[list[Watch], list[str]]:
    """(the valid entries, the reasons of those dropped); ValueError if the file is not a watch file."""
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {type(exc).__name__}") from None
    if type(doc) is not dict or doc.get("version") != FILE_VERSION or type(doc.get("watches")) is not list:
        raise ValueError(f"not a version {FILE_VERSION} watch file ({{'version': 1, 'watches': [...]}})")
    kept, dropped = [], []
    for k, entry in enumerate(doc["watches"]):
        try:
            kept.append(runtime_watch(entry))
        except (ValueError, TypeError) as exc:
            dropped.append(f"{k}: {str(exc)[:120]}")
    return kept, dropped


def read_file(path: Path) -> bytes:
    """The watch file's bytes: a regular file (no symlink followed) of at most MAX_FILE_BYTES, checked before
    reading. FileNotFoundError if absent, OSError if unreadable (a symlink: ELOOP), ValueError if too large
    or not a regular file."""
    return read_bounded(path, MAX_FILE_BYTES)


def write_file(path: Path, watches: Iterable[Watch]) -> None:
    """Replace `path` atomically and durably (a fresh O_EXCL temp 0600, fsync, rename, fsync the directory)."""
    replace_atomically(path, [encode_file(watches)])
