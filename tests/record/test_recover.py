"""--recover on files cut at arbitrary points: every flushed chunk comes back, in order, nothing invented."""

from __future__ import annotations

import pytest

from bus.codec import encode
from bus.mcap_info import describe
from bus.mcapfile import BusMcapWriter, RecordingError, iter_messages, load_metadata, pack_message, recover
from tests.record.conftest import sample_blob


def write_flushed(path, n=40, every=5):
    """n Blobs, flushed every `every` messages; returns the file size after each flush."""
    w = BusMcapWriter(path)
    w.metadata("session", {"who": "test"})
    sizes = []
    for i in range(n):
        parts = encode("demo/a", sample_blob(i), seq=i, src="s", t_ns=i + 1)
        w.write("demo/a", "Blob", 1, seq=i, t_pub=i + 1, t_log=i + 2, data=pack_message(parts[1], parts[2:]))
        if (i + 1) % every == 0:
            w.flush()
            sizes.append(path.stat().st_size)
    w.close()
    return sizes


@pytest.mark.parametrize("cut", [0, 1, 7, 1000, 30000], ids=lambda c: f"cut-{c}B-after-flush")
def test_truncated_file_recovers_every_flushed_message(tmp_path, cut):
    full = tmp_path / "full.mcap"
    sizes = write_flushed(full)
    data = full.read_bytes()
    k = 3  # cut inside the 4th chunk: the first 3 flushes (15 messages) must survive
    end = min(sizes[k - 1] + cut, sizes[k] - 1)
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(data[:end])
    assert not describe(broken).complete

    fixed = tmp_path / "fixed.mcap"
    res = recover(broken, fixed)
    got = list(iter_messages(fixed))
    assert res.messages == len(got) >= 15
    assert [m.seq for m in got] == list(range(len(got)))
    for m in got:
        assert bytes(m.buffers[0]) == sample_blob(m.seq).data.tobytes()
    meta = load_metadata(fixed)
    assert meta["session"] == {"who": "test"} and meta["recovery"]["input_complete"] == "false"


def test_recover_of_a_complete_file_is_a_faithful_copy(tmp_path):
    full = tmp_path / "full.mcap"
    write_flushed(full, n=10)
    res = recover(full, tmp_path / "copy.mcap")
    assert res.complete and res.damage is None and res.messages == 10
    a = [(m.seq, m.header, [bytes(b) for b in m.buffers]) for m in iter_messages(full)]
    b = [(m.seq, m.header, [bytes(b) for b in m.buffers]) for m in iter_messages(tmp_path / "copy.mcap")]
    assert a == b


def test_recover_rejects_non_mcap_input(tmp_path):
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(RecordingError, match="not an MCAP file"):
        recover(junk, tmp_path / "out.mcap")
    assert not (tmp_path / "out.mcap").exists()


def corrupt_chunk(path, k: int) -> None:
    """Flip bytes inside the compressed data of the k-th chunk (its length stays intact: only its CRC fails)."""
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader

    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        reader = StreamReader(f, emit_chunks=True, skip_magic=False)
        chunks = [r for r in reader.records if isinstance(r, Chunk)]
    target = bytes(chunks[k].data)
    at = bytes(data).index(target) + len(target) // 2
    data[at : at + 8] = bytes(b ^ 0xFF for b in data[at : at + 8])
    path.write_bytes(bytes(data))


def test_a_chunk_that_fails_its_crc_is_flagged_and_recover_keeps_the_chunks_after_it(tmp_path):
    """Issue 34: a file failing its CRC ran through `perception test` with no warning, and --recover kept
    only what came before the bad chunk (163 of 521 messages). Now every reader refuses it with the
    reason, as `info` flags it, and --recover skips only the bad chunk."""
    path = tmp_path / "crc.mcap"
    write_flushed(path, n=40, every=5)  # 8 chunks of 5 messages
    corrupt_chunk(path, 2)
    info = describe(path)
    assert not info.complete and "CRC" in (info.damage or ""), info.damage
    with pytest.raises(RecordingError, match="damaged .*CRC.*--recover"):
        list(iter_messages(path))
    res = recover(path, tmp_path / "fixed.mcap")
    assert res.skipped_chunks == 1 and res.messages == 35, res
    got = [m.seq for m in iter_messages(tmp_path / "fixed.mcap")]
    assert got == [*range(10), *range(15, 40)]  # chunk 2 (seq 10-14) lost, everything after it kept


def test_test_view_and_replay_refuse_a_file_that_fails_its_crc(tmp_path):
    """Issue 34: such a file ran through `perception test` and printed `differences: 9` with no warning;
    now test, replay and view refuse it with exit 2, naming the damage and --recover, as `info` flags it."""
    import subprocess
    import sys

    from tests.support import REPO, child_env

    path = tmp_path / "crc.mcap"
    write_flushed(path, n=40, every=5)
    corrupt_chunk(path, 2)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"bus: {{runtime_dir: {tmp_path}}}\n")
    for args in (
        ["test", str(path)],
        ["replay", str(path), "--config", str(cfg)],
        ["view", str(path), "--save", str(tmp_path / "x.rrd")],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "perception.cli", *args], cwd=REPO, env=child_env(), capture_output=True,
            text=True, timeout=180,
        )  # fmt: skip
        assert out.returncode == 2, (args, out.stderr[-2000:])
        assert "is damaged" in out.stderr and "CRC" in out.stderr and "--recover" in out.stderr, out.stderr[-2000:]
