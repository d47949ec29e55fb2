"""Damaged or forged recordings end in one line and exit 2, never a traceback (issue 32, row "low"):
channel metadata `v: "x"` (`info`, `view`), array references with a bad nd / dtype / shape
(`info --export json`), frames no image encoder takes (float32, 4 channels; `--export foxglove`, `view`),
and a bad `--against` file (`test`). A 1x70000 frame is no error at all: it goes as PNG."""

from __future__ import annotations

import subprocess
from pathlib import Path

import msgpack
import numpy as np
import pytest

from bus.codec import encode
from bus.mcapfile import LAYOUT, MESSAGE_ENCODING, BusMcapWriter, pack_message
from perception.messages import Frame


def frame_parts(image: np.ndarray) -> list:
    return encode("frames/cam0", Frame(cam="cam0", index=7, t_capture_ns=1, image=image), seq=0, src="x", t_ns=1)


def write(path: Path, parts: list, *, v: str | None = None, header: bytes | None = None, meta=None) -> Path:
    w = BusMcapWriter(path)
    w.metadata("session", meta or {"test": True})
    data = pack_message(parts[1] if header is None else header, parts[2:])
    if v is None:
        w.write("frames/cam0", "Frame", 1, seq=0, t_pub=1, t_log=2, data=data)
    else:  # a channel whose metadata names version `v`
        cid = w._writer.register_channel(
            "frames/cam0", MESSAGE_ENCODING, 0, {"layout": LAYOUT, "type": "Frame", "v": v}
        )
        w._writer.add_message(cid, log_time=2, data=data, publish_time=1, sequence=0)
    w.close()
    return path


def with_ref(ref) -> bytes:
    ok = frame_parts(np.zeros((8, 8, 3), np.uint8))
    header = msgpack.unpackb(ok[1], raw=False)
    header["body"]["image"] = ref
    return msgpack.packb(header)


@pytest.fixture
def cli(monkeypatch, capsys):
    def run(*args: str) -> subprocess.CompletedProcess:
        from perception.cli import main

        capsys.readouterr()
        rc = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out, err)

    return run


def one_line_error(res: subprocess.CompletedProcess, needle: str) -> None:
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("perception ")]
    assert errors and needle in errors[-1], res.stderr[-3000:]


def test_a_channel_version_that_is_not_a_number(tmp_path, cli):
    rec = write(tmp_path / "v.mcap", frame_parts(np.zeros((8, 8, 3), np.uint8)), v="x")
    one_line_error(cli("info", str(rec)), "metadata v = 'x' is not a message version")
    one_line_error(cli("info", str(rec), "--export", "json", str(tmp_path / "o.mcap")), "metadata v = 'x'")


@pytest.mark.parametrize(
    ("ref", "needle"),
    [
        ({"nd": 9, "dtype": "uint8", "shape": [8, 8, 3]}, "array index 9"),
        ({"nd": "a", "dtype": "uint8", "shape": [8, 8, 3]}, "array index 'a'"),
        ({"nd": 0, "dtype": "object", "shape": [8, 8, 3]}, "dtype 'object' not allowed"),
        ({"nd": 0, "dtype": "zz", "shape": [8, 8, 3]}, "dtype 'zz' not allowed"),
        ({"nd": 0, "dtype": "uint8", "shape": [7, 7, 7]}, "needs 343"),
        ({"nd": 0, "dtype": "uint8", "shape": "abc"}, "shape must be a list"),
    ],
)
def test_a_forged_array_reference_in_export_json(tmp_path, cli, ref, needle):
    rec = write(tmp_path / "ref.mcap", frame_parts(np.zeros((8, 8, 3), np.uint8)), header=with_ref(ref))
    one_line_error(cli("info", str(rec), "--export", "json", str(tmp_path / "o.mcap")), needle)


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        (np.zeros((8, 8, 3), np.float32), "must be uint8, got float32"),
        (np.zeros((8, 8, 4), np.uint8), "must be [H, W, 3] or [H, W], got [8, 8, 4]"),
    ],
)
def test_a_frame_no_encoder_takes(tmp_path, cli, image, needle):
    rec = write(tmp_path / "f.mcap", frame_parts(image))
    res = cli("info", str(rec), "--export", "foxglove", str(tmp_path / "o.mcap"))
    one_line_error(res, f"frames/cam0 frame #7: a frame to encode {needle}")


def test_a_frame_wider_than_jpeg_goes_as_png(tmp_path, cli):
    for shape in ((1, 70000, 3), (1, 70000)):
        rec = write(tmp_path / "wide.mcap", frame_parts(np.zeros(shape, np.uint8)))
        res = cli("info", str(rec), "--export", "foxglove", str(tmp_path / "o.mcap"))
        assert res.returncode == 0 and "1 frame(s)" in res.stdout, res.stdout + res.stderr[-2000:]


def test_a_bad_against_file(tmp_path, cli):
    rec = write(tmp_path / "s.mcap", frame_parts(np.zeros((8, 8, 3), np.uint8)))
    bad = write(tmp_path / "b.mcap", frame_parts(np.zeros((8, 8, 3), np.uint8)), meta={"offline": "{not json"})
    one_line_error(cli("test", str(rec), "--against", str(bad)), "`offline` is not valid JSON")
    (tmp_path / "junk.mcap").write_bytes(b"\x00" * 100)
    one_line_error(cli("test", str(rec), "--against", str(tmp_path / "junk.mcap")), "junk.mcap")


def test_view_says_what_is_wrong_with_the_recording(tmp_path, cli):
    pytest.importorskip("rerun")
    rec = write(tmp_path / "v.mcap", frame_parts(np.zeros((8, 8, 3), np.uint8)), v="x")
    one_line_error(cli("view", str(rec), "--save", str(tmp_path / "o.rrd")), "metadata v = 'x'")
    rec = write(tmp_path / "f.mcap", frame_parts(np.zeros((8, 8, 4), np.uint8)))
    one_line_error(cli("view", str(rec), "--save", str(tmp_path / "o.rrd")), "got [8, 8, 4]")
