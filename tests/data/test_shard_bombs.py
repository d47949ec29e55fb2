"""Issue 32: a sparse-tar bomb (a 10 KB shard whose member expands to 2 GiB) is refused from its size, in
`perception data check` and in training's ShardStream, within bus/reader_limits.py (before: 2.38 GB RSS)."""

from __future__ import annotations

import io
import sys
import tarfile

import pytest

from bus.reader_limits import SHARD_MAX_JSON_BYTES, SHARD_MAX_MEMBER_BYTES
from perception.data.shards import ShardError, ShardStream, check_shards, iter_shard
from tests.hostile.file_bombs import GiB, run_measured, sparse_tar, write_shard_dir
from tests.support import child_env

RSS_BOUND_MB = 600  # the CLI imports torch (~300 MB); the bomb alone was 2.4 GB


@pytest.fixture
def bomb_dir(tmp_path):
    data = sparse_tar(2 * GiB)
    assert len(data) <= 16 * 1024
    return write_shard_dir(tmp_path / "bomb", data)


def test_check_lists_the_bomb_as_a_problem_in_bounded_memory(bomb_dir):
    code, out, err, peak = run_measured(
        [sys.executable, "-m", "perception.cli", "data", "check", str(bomb_dir)], env=child_env()
    )
    assert code == 1 and "sparse member that expands to 2147483648 bytes" in out, out + err
    assert "Traceback" not in err and peak < RSS_BOUND_MB, (peak, err[-2000:])


def test_training_stream_stops_with_the_member_named(bomb_dir):
    stream = ShardStream(bomb_dir, decode=False, shuffle_buffer=1)
    with pytest.raises(ShardError, match=r"000000000\.mp4: a sparse member .* over the 268435456 limit"):
        next(iter(stream))


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_an_oversized_json_and_too_many_members_are_refused(tmp_path):
    big = tmp_path / "big.tar"
    big.write_bytes(_tar({"k.json": b" " * (SHARD_MAX_JSON_BYTES + 1)}))
    with pytest.raises(ShardError, match="k.json: a member of"):
        list(iter_shard(big))
    many = tmp_path / "many.tar"
    many.write_bytes(_tar({f"k.{i}": b"x" for i in range(40)}))
    with pytest.raises(ShardError, match="members"):
        list(iter_shard(many))


def test_a_real_member_declaring_more_than_the_file_holds_is_an_error(tmp_path):
    """A plain (not sparse) member whose header claims 2 GiB: refused from the header, nothing read."""
    data = bytearray(_tar({"k.mp4": b"x" * 10}))
    info = tarfile.TarInfo("k.mp4")
    info.size = 2 * GiB
    data[:512] = info.tobuf(format=tarfile.GNU_FORMAT)[:512]
    path = tmp_path / "liar.tar"
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="2147483648 bytes, over"):
        list(iter_shard(path))
    assert SHARD_MAX_MEMBER_BYTES < 2 * GiB


def test_good_shards_still_check(tmp_path):
    d = write_shard_dir(tmp_path / "ok", _tar({"k.json": b'{"start": 0, "end": 1}', "k.mp4": b"not a video"}))
    rep = check_shards(d)
    assert rep.samples == 1 and not rep.index_problems and rep.unreadable[0]["key"] == "k"
