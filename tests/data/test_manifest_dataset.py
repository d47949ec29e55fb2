import json
from pathlib import Path

import numpy as np
import pytest

from perception.data.manifest import ManifestDataset, ManifestError, VideoDecodeError, read_manifest
from perception.data.shapesworld import sample_clip
from perception.data.stream import ShapesStream
from perception.data.video_io import write_clip_set, write_stream, write_video
from perception.data.vocab import parse_slots


def _hwc(video):
    return video.permute(0, 2, 3, 1).numpy().astype(int)  # [T, C, H, W] -> [T, H, W, C]


def test_encoded_clips_decode_close_to_rendered(tmp_path: Path):
    manifest = write_clip_set(tmp_path, count=3, seed=4, frames=8, size=64, fps=8)
    ds = ManifestDataset(manifest, frames=8, size=64)
    captions = [i for i in range(len(ds)) if "text" in ds.entries[i][1].model_fields_set]
    assert len(captions) == 3 and len(ds) == 3 * 6  # one caption + five questions per clip
    for k, index in enumerate(captions):
        item = ds[index]
        spec = sample_clip(4, k)
        assert item["text"] == spec.caption and parse_slots(item["text"]) == spec.slots
        assert item["video"].shape == (8, 3, 64, 64)
        error = np.abs(_hwc(item["video"]) - spec.render(8, 64).astype(int))
        assert error.mean() < 6, error.mean()  # h264 at crf 16: small, except on 1 px outlines
    qa = ds[1]
    assert qa["query"] == spec_q(4, 0) and qa["answer"] in qa["candidates"]


def spec_q(seed, index):
    return sample_clip(seed, index).qa[0].question


def test_resampling_to_fewer_frames_and_smaller_size(tmp_path: Path):
    manifest = write_clip_set(tmp_path, count=1, seed=0, frames=8, size=64, fps=8, qa=False)
    item = ManifestDataset(manifest, frames=4, size=32)[0]
    assert item["video"].shape == (4, 3, 32, 32)
    # Uniform sampling over [0, 1 s] with 4 samples picks source frames 1, 3, 5, 7.
    full = ManifestDataset(manifest, frames=8, size=32)[0]["video"]
    assert np.abs(_hwc(item["video"]) - _hwc(full[1::2])).mean() < 1.0


def test_stream_segments_decode_from_the_middle_of_a_file(tmp_path: Path):
    stream = ShapesStream(3, duration_s=20, fps=10)
    ds = ManifestDataset(write_stream(tmp_path, stream), frames=8, size=64)
    assert len(ds) == len(stream.segments)
    for k in (1, len(ds) - 1):
        seg, item = stream.segments[k], ds[k]
        assert item["text"] == seg.caption
        times = seg.start_s + (np.arange(8) + 0.5) * (min(seg.end_s, stream.duration_s) - seg.start_s) / 8
        idx = np.minimum(np.floor(times * stream.fps + 1e-9).astype(int), stream.num_frames - 1)
        expected = np.stack([stream.frame_at(i) for i in idx]).astype(int)
        assert np.abs(_hwc(item["video"]) - expected).mean() < 6


def test_non_square_video_is_resized_on_its_short_side_and_centre_cropped(tmp_path: Path):
    frame = np.zeros((64, 96, 3), dtype=np.uint8)
    frame[:, :32] = (255, 0, 0)
    frame[:, 32:64] = (0, 255, 0)
    frame[:, 64:] = (0, 0, 255)
    write_video(tmp_path / "wide.mp4", [frame] * 4, fps=4)
    (tmp_path / "m.jsonl").write_text(json.dumps({"video": "wide.mp4", "start": 0, "end": 1, "text": "x"}))
    video = _hwc(ManifestDataset(tmp_path / "m.jsonl", frames=2, size=32)[0]["video"])
    assert video.shape == (2, 32, 32, 3)
    # 96x64 -> 48x32, crop columns 8..40: red | green (16 px, centred) | blue; a stretch would give thirds.
    assert video[:, :, :6, 0].mean() > 200 and video[:, :, :6, 1].mean() < 60
    assert video[:, :, 10:22, 1].mean() > 200 and video[:, :, 10:22, 0].mean() < 60
    assert video[:, :, 26:, 2].mean() > 200 and video[:, :, 26:, 1].mean() < 60


def test_bad_lines_are_all_reported_with_line_numbers(tmp_path: Path):
    lines = [
        json.dumps({"video": "a.mp4", "start": 0, "end": 1, "text": "ok"}),
        "{not json",
        json.dumps({"video": "a.mp4", "start": 0, "text": "no end"}),
        "",
        json.dumps({"video": "a.mp4", "start": 2, "end": 1, "text": "backwards"}),
        json.dumps({"video": "a.mp4", "start": 0, "end": 1, "text": "t", "query": "q", "answer": "a"}),
        json.dumps({"video": "a.mp4", "start": 0, "end": 1, "query": "q", "answer": "a", "candidates": ["b"]}),
        json.dumps(["a list"]),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    message = str(err.value)
    assert "6 bad line(s)" in message
    for number, why in [
        (2, "invalid JSON"),
        (3, "end"),
        (5, "start < end"),
        (6, "either"),
        (7, "not among candidates"),
        (8, "JSON object"),
    ]:
        assert f"bad.jsonl:{number}:" in message and why in message, (number, why)
    assert "bad.jsonl:1:" not in message and "bad.jsonl:4:" not in message


def test_missing_or_empty_manifest(tmp_path: Path):
    with pytest.raises(ManifestError, match="cannot read"):
        ManifestDataset(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ManifestError, match="no samples"):
        ManifestDataset(tmp_path / "empty.jsonl")


def test_unreadable_missing_and_out_of_range_videos(tmp_path: Path):
    write_video(tmp_path / "good.mp4", sample_clip(0, 0).render(8, 64), fps=8)
    (tmp_path / "garbage.mp4").write_bytes(b"this is not a video" * 50)
    rows = [
        {"video": "garbage.mp4", "start": 0, "end": 1, "text": "x"},
        {"video": "missing.mp4", "start": 0, "end": 1, "text": "x"},
        {"video": "good.mp4", "start": 5, "end": 6, "text": "x"},  # the file is 1 s long
        {"video": "good.mp4", "start": 0, "end": 1, "text": "x"},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = ManifestDataset(tmp_path / "m.jsonl")
    for index, why in [(0, "cannot open"), (1, "cannot open"), (2, "no frames")]:
        with pytest.raises(VideoDecodeError, match=why) as err:
            ds[index]
        assert f"m.jsonl:{index + 1}:" in str(err.value)
    assert ds[3]["video"].shape == (8, 3, 64, 64)  # one bad item does not spoil the others
