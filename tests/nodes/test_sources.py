"""Camera kinds: each typed config validates and gets its reader; frame sources through their real backends
(synthetic streams, encoded video files) and their failure paths; the `--source` shorthand."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from perception.data.stream import ShapesStream
from perception.data.video_io import write_video
from perception.nodes.cameras import AnyCameraConfig
from perception.nodes.feed import Feed, Want, centre_crop, scaled
from perception.nodes.sources import (
    CAMERA_KINDS,
    CameraConfig,
    FileCameraConfig,
    FileSource,
    OpenCVCameraConfig,
    OpenCVSource,
    SourceUnavailableError,
    SyntheticCameraConfig,
    SyntheticSource,
    make_source,
    source_shorthand,
    with_source,
)
from perception.ros2.cameras import Ros2CameraConfig, Ros2Source, RosbagCameraConfig, RosbagSource

CAMERA = TypeAdapter(AnyCameraConfig)


def test_each_kind_gets_its_reader_from_its_config_class():
    assert isinstance(make_source(SyntheticCameraConfig()), SyntheticSource)
    assert isinstance(make_source(FileCameraConfig(path="clip.mp4")), FileSource)
    assert isinstance(make_source(OpenCVCameraConfig(index=0)), OpenCVSource)
    assert {t: (k.config, k.source) for t, k in CAMERA_KINDS.items()} == {
        "synthetic": (SyntheticCameraConfig, SyntheticSource),
        "file": (FileCameraConfig, FileSource),
        "opencv": (OpenCVCameraConfig, OpenCVSource),
        "rosbag": (RosbagCameraConfig, RosbagSource),
        "ros2": (Ros2CameraConfig, Ros2Source),
    }


@pytest.mark.parametrize(
    ("data", "cls", "own"),
    [
        (
            {"type": "synthetic", "seed": 3, "split": "train", "duration_s": 5, "size": 32},
            SyntheticCameraConfig,
            {"seed": 3, "split": "train", "duration_s": 5.0, "size": 32},
        ),
        ({"type": "file", "path": "clip.mp4"}, FileCameraConfig, {"path": "clip.mp4"}),
        (
            {"type": "file", "path": "rtsp://10.0.0.5:554/stream"},
            FileCameraConfig,
            {"path": "rtsp://10.0.0.5:554/stream"},
        ),
        ({"type": "opencv", "index": 2}, OpenCVCameraConfig, {"index": 2}),
        ({"type": "opencv"}, OpenCVCameraConfig, {"index": 0}),
        ({}, SyntheticCameraConfig, {"seed": 0, "size": 64}),  # no type: synthetic
    ],
)
def test_each_kind_validates_with_the_common_and_its_own_fields(data, cls, own):
    cam = CAMERA.validate_python({"name": "c1", "fps": 12, "loop": True, "retry_max_s": 3, **data})
    assert type(cam) is cls and isinstance(cam, CameraConfig)
    assert (cam.name, cam.fps, cam.loop, cam.realtime, cam.retry_max_s) == ("c1", 12.0, True, True, 3.0)
    assert {k: getattr(cam, k) for k in own} == own
    assert CAMERA.validate_json(CAMERA.dump_json(cam)) == cam  # the launcher hands configs to nodes as JSON


def test_kind_specific_checks_and_keys():
    with pytest.raises(ValidationError, match=r"index\n.*greater than or equal to 0"):
        CAMERA.validate_python({"type": "opencv", "index": -1})
    with pytest.raises(ValidationError, match=r"path\n.*Field required"):
        CAMERA.validate_python({"type": "file"})
    with pytest.raises(ValidationError) as err:  # another kind's key says which kind has it
        CAMERA.validate_python({"type": "file", "path": "a.mp4", "size": 32})
    assert "only cameras of type synthetic have 'size'; this one is type file" in str(err.value)
    assert SyntheticCameraConfig(size=32).frame_size_px == 32 and FileCameraConfig(path="a").frame_size_px is None
    assert FileCameraConfig(path="a").rate_from_source and not OpenCVCameraConfig().rate_from_source


def test_file_preflight_names_a_missing_file_but_not_a_url(tmp_path):
    assert FileCameraConfig(path=str(tmp_path / "no.mp4")).preflight() == {
        "path": f"video file not found: {tmp_path / 'no.mp4'}"
    }
    (tmp_path / "yes.mp4").write_bytes(b"")
    assert FileCameraConfig(path=str(tmp_path / "yes.mp4")).preflight() == {}
    assert FileCameraConfig(path="rtsp://10.0.0.5/x").preflight() == {}


def test_source_shorthand_maps_to_each_kind():
    assert source_shorthand("synthetic") == {"type": "synthetic"}
    assert source_shorthand("clip.mp4") == {"type": "file", "path": "clip.mp4"}
    assert source_shorthand("http://host/v.mp4") == {"type": "file", "path": "http://host/v.mp4"}
    assert source_shorthand("3") == {"type": "opencv", "index": 3}


def test_with_source_keeps_the_common_fields_and_drops_the_old_kinds():
    synthetic = SyntheticCameraConfig(name="left", fps=10, loop=True, size=32, seed=4).model_dump()
    as_file = CAMERA.validate_python(with_source(synthetic, "clip.mp4"))
    assert as_file == FileCameraConfig(name="left", fps=10, loop=True, path="clip.mp4")
    back = CAMERA.validate_python(with_source(as_file.model_dump(), "synthetic"))
    assert back == SyntheticCameraConfig(name="left", fps=10, loop=True)  # its own defaults again
    same = CAMERA.validate_python(with_source(synthetic, "synthetic"))
    assert (same.size, same.seed) == (32, 4)  # the same kind keeps its own keys
    assert CAMERA.validate_python(with_source(synthetic, "1")) == OpenCVCameraConfig(
        name="left", fps=10, loop=True, index=1
    )


def test_synthetic_frames_match_the_stream_and_seek():
    cfg = SyntheticCameraConfig(seed=3, duration_s=2.0, fps=10.0, size=32)
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
    src = SyntheticSource(SyntheticCameraConfig(duration_s=1.0))
    src.connect()
    with pytest.raises(RuntimeError, match="already connected"):
        src.connect()


def test_file_source_decodes_every_frame_with_times(tmp_path):
    frames = [np.full((32, 48, 3), 20 * i, dtype=np.uint8) for i in range(6)]
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=10.0)
    with FileSource(FileCameraConfig(path=str(path))) as src:
        assert src.fps == pytest.approx(10.0)
        got = []
        while (item := src.read()) is not None:
            got.append(item)
    assert [g.index for g in got] == list(range(6))
    assert [round(g.stream_s, 2) for g in got] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert got[0].image.shape == (32, 48, 3)
    assert abs(int(got[3].image.mean()) - 60) <= 3  # the right frame, up to codec loss


def test_a_file_source_converts_only_what_is_wanted_and_scales_in_the_conversion(tmp_path):
    """Real H.264: a frame nobody wants comes back without pixels; the encoder's copy has the model's
    short side and the clip's aspect; the full copy is the clip's size; indices and times stay the clip's."""
    rng = np.random.default_rng(0)
    frames = [np.repeat(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], 240, 0).repeat(3, 2) for _ in range(6)]
    frames = [np.clip(f.astype(int) + rng.integers(0, 3, f.shape), 0, 255).astype(np.uint8) for f in frames]
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=10.0)
    wants = [
        Want(feed=False),
        Want(side=32),
        Want(side=32, full=True),
        Want(feed=False, full=True),
        Want(side=None),
        Want(side=480),
    ]
    with FileSource(FileCameraConfig(path=str(path))) as src:
        got = [src.read(w) for w in wants]
    assert [g.index for g in got] == list(range(6)) and [round(g.stream_s, 2) for g in got] == [
        0.0,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
    ]
    assert got[0].image is None and got[0].full is None
    assert got[1].image.shape == (32, 43, 3) and got[1].full is None  # 240x320 -> short side 32
    assert got[2].image.shape == (32, 43, 3) and got[2].full.shape == (240, 320, 3)
    assert got[3].image is None and got[3].full.shape == (240, 320, 3)
    assert got[4].image.shape == (240, 320, 3) and got[5].image.shape == (240, 320, 3)  # never upscaled
    # the scaled copy is the full frame, smaller: its left-to-right ramp survives the area filter
    small, full = got[2].image.astype(float).mean(axis=(0, 2)), got[2].full.astype(float).mean(axis=(0, 2))
    assert (
        abs(small[0] - full[:8].mean()) < 12 and abs(small[-1] - full[-8:].mean()) < 12 and small[-1] > small[0] + 200
    )


def test_feed_sends_the_frames_windows_use_at_the_models_size():
    feed = Feed.of("encoder", frame_step=8, stride_frames=8, image_size=64, fps=30.0, full_fps=2.0)
    assert (feed.every, feed.side, feed.full_every) == (8, 64, 15)
    assert [i for i in range(40) if feed.want(i).feed] == [0, 8, 16, 24, 32]
    assert [i for i in range(40) if feed.want(i).full] == [0, 15, 30]
    assert not feed.want(3).pixels and feed.want(15).pixels
    assert Feed.of("encoder", 4, 6, 64, 30.0, None).every == 2 and Feed.of("all", 8, 8, 64, 30.0, None) == Feed(
        1, None, None
    )
    assert scaled(1080, 1920, 64) == (64, 114) and scaled(480, 640, 64) == (64, 85)
    assert scaled(64, 64, 64) is None and scaled(48, 64, 64) is None and scaled(100, 100, None) is None
    wide = np.arange(64 * 114 * 3, dtype=np.uint32).reshape(64, 114, 3).astype(np.uint8)
    assert np.array_equal(centre_crop(wide, 64), wide[:, 25:89]) and centre_crop(wide, 64).flags.c_contiguous
    assert centre_crop(wide, None) is wide and centre_crop(wide[:32], 64).shape == (32, 114, 3)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceUnavailableError, match="video file not found: .*nope.mp4"):
        FileSource(FileCameraConfig(path=str(tmp_path / "nope.mp4"))).connect()


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceUnavailableError, match="cannot open video .*bad.mp4"):
        FileSource(FileCameraConfig(path=str(bad))).connect()
    assert issubclass(SourceUnavailableError, ConnectionError)


def test_read_before_connect_is_an_error():
    with pytest.raises(SourceUnavailableError, match="read before connect"):
        FileSource(FileCameraConfig(path="x.mp4")).read()


def test_camera_that_cannot_open_is_a_clear_error():
    # index 99: no such device here (or OpenCV is absent); either way a SourceUnavailableError, not a crash
    with pytest.raises(SourceUnavailableError, match="camera 99"):
        OpenCVSource(OpenCVCameraConfig(index=99)).connect()
