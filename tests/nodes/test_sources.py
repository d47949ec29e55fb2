"""Frame sources through their real backends: synthetic streams, encoded video files, failure paths."""

from __future__ import annotations

import numpy as np
import pytest

from perception.data.stream import ShapesStream
from perception.data.video_io import write_video
from perception.nodes.config import CameraConfig
from perception.nodes.sources import (
    CameraSource,
    FileSource,
    SourceUnavailableError,
    SyntheticSource,
    make_source,
)


def test_kind_from_source_string():
    assert isinstance(make_source(CameraConfig()), SyntheticSource)
    assert isinstance(make_source(CameraConfig(source="clip.mp4")), FileSource)
    assert isinstance(make_source(CameraConfig(source="0")), CameraSource)


def test_synthetic_frames_match_the_stream_and_seek():
    cfg = CameraConfig(seed=3, duration_s=2.0, fps=10.0, size=32)
    with make_source(cfg) as src:
        first = src.read()
        ref = ShapesStream(seed=3, split="heldout", duration_s=2.0, fps=10.0, size=32)
        assert first.index == 0 and np.array_equal(first.image, ref.frame_at(0))
        src.seek(5)
        f5 = src.read()
        assert f5.index == 5 and f5.stream_s == pytest.approx(0.5)
        src.seek(ref.num_frames)
        assert src.read() is None  # end of a finite stream


def test_synthetic_double_connect_is_an_error():
    src = SyntheticSource(CameraConfig(duration_s=1.0))
    src.connect()
    with pytest.raises(RuntimeError, match="already connected"):
        src.connect()


def test_file_source_decodes_every_frame_with_times(tmp_path):
    frames = [np.full((32, 48, 3), 20 * i, dtype=np.uint8) for i in range(6)]
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=10.0)
    with FileSource(CameraConfig(source=str(path))) as src:
        assert src.fps == pytest.approx(10.0)
        got = []
        while (item := src.read()) is not None:
            got.append(item)
    assert [g.index for g in got] == list(range(6))
    assert [round(g.stream_s, 2) for g in got] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert got[0].image.shape == (32, 48, 3)
    assert abs(int(got[3].image.mean()) - 60) <= 3  # the right frame, up to codec loss


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceUnavailableError, match="video file not found: .*nope.mp4"):
        FileSource(CameraConfig(source=str(tmp_path / "nope.mp4"))).connect()


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceUnavailableError, match="cannot open video .*bad.mp4"):
        FileSource(CameraConfig(source=str(bad))).connect()
    assert issubclass(SourceUnavailableError, ConnectionError)


def test_read_before_connect_is_an_error():
    with pytest.raises(SourceUnavailableError, match="read before connect"):
        FileSource(CameraConfig(source="x.mp4")).read()


def test_camera_that_cannot_open_is_a_clear_error():
    # index 99: no such device here (or OpenCV is absent); either way a SourceUnavailableError, not a crash
    with pytest.raises(SourceUnavailableError, match="camera 99"):
        CameraSource(CameraConfig(source="99")).connect()
