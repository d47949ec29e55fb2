"""Where each camera was, recently: `pose/<cam>` messages kept per camera so segments and watch crossings
get the pose nearest their time (joined at write time; a camera with no pose stores none)."""

from __future__ import annotations

import bisect
import collections
import math

from bus.bounded import BoundedDict
from perception.memory.records import Place
from perception.messages import Pose

POSES_KEPT = 4096  # per camera: minutes at odometry rates; a segment closes within max_len_s of its start
MAX_FRAME_CHARS = 256


def check_pose(msg: Pose) -> Place:
    """The planar place of a pose message; ValueError if it is not finite or has no frame."""
    if not msg.frame_id or len(msg.frame_id) > MAX_FRAME_CHARS:
        raise ValueError(f"frame_id must be 1..{MAX_FRAME_CHARS} characters")
    if not all(math.isfinite(v) for v in (msg.x, msg.y, msg.yaw)):
        raise ValueError("x, y and yaw must be finite")
    return Place(msg.frame_id, float(msg.x), float(msg.y), float(msg.yaw), int(msg.stamp_ns))


class PoseTrack:
    """The last POSES_KEPT poses of at most `max_cameras` cameras (least recently heard out)."""

    def __init__(self, max_cameras: int, max_gap_s: float) -> None:
        self.max_gap_ns = int(max_gap_s * 1e9)
        self._cams: BoundedDict[str, collections.deque] = BoundedDict(max_cameras)

    def add(self, cam: str, place: Place) -> None:
        track = self._cams.setdefault(cam, lambda: collections.deque(maxlen=POSES_KEPT))
        if track and place.stamp_ns < track[-1].stamp_ns:
            return  # out of order (a replayed bag rewinding): the track stays sorted; ignored
        track.append(place)

    def at(self, cam: str, t_ns: int) -> Place | None:
        """The pose of `cam` nearest `t_ns`, if one is within max_gap_s."""
        track = self._cams.get(cam)
        if not track:
            return None
        stamps = [p.stamp_ns for p in track]  # deque: no bisect on it; at most POSES_KEPT per lookup
        k = bisect.bisect_left(stamps, t_ns)
        best = min((track[j] for j in (k - 1, k) if 0 <= j < len(track)), key=lambda p: abs(p.stamp_ns - t_ns))
        return best if abs(best.stamp_ns - t_ns) <= self.max_gap_ns else None
