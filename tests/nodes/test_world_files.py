"""Issue 32: the world's watch and persist files are read within a limit known before reading, never through
a symlink, and replaced through a fresh O_EXCL temp file, so a planted `<file>.tmp` symlink overwrites
nothing (before: a symlink to /dev/zero was read whole, MemoryError in setup; a planted
`<persist>.watches.json.tmp` symlink overwrote its target)."""

from __future__ import annotations

import errno
import os
import sys

import pytest

from bus.reader_limits import WATCH_FILE_MAX_BYTES
from perception.nodes.safe_files import NotRegularFile, read_bounded
from perception.nodes.watches import Watch, decode_file, read_file, watch_file, write_file
from perception.nodes.world_store import PersistFile, encode_line, read_lines
from tests.hostile.file_bombs import run_measured
from tests.support import child_env

WATCH = Watch("w-0123abcd", "a red square", 0.5, 0.4, "cam0")


def test_a_watch_file_symlinked_to_dev_zero_is_refused_unread(tmp_path):
    path = watch_file(tmp_path / "world.jsonl")
    path.symlink_to("/dev/zero")
    with pytest.raises(OSError) as err:
        read_file(path)
    assert err.value.errno == errno.ELOOP
    with pytest.raises(NotRegularFile):  # the device itself, named directly
        read_bounded(type(path)("/dev/zero"), WATCH_FILE_MAX_BYTES)


def test_a_huge_watch_file_is_refused_from_its_size_in_bounded_memory(tmp_path):
    path = watch_file(tmp_path / "world.jsonl")
    with open(path, "wb") as f:
        f.truncate(4 << 30)  # 4 GiB, sparse: costs no disk
    code = (
        "import sys\nfrom pathlib import Path\nfrom perception.nodes.watches import read_file\n"
        "try:\n    read_file(Path(sys.argv[1]))\nexcept ValueError as exc:\n    print('refused', exc)\n"
    )
    rc, out, err, peak = run_measured([sys.executable, "-c", code, str(path)], env=child_env())
    assert rc == 0 and out.startswith("refused larger than 1048576 bytes"), out + err
    assert peak < 300, peak


def test_a_planted_watch_temp_symlink_overwrites_nothing(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    path = watch_file(tmp_path / "world.jsonl")
    path.with_name(path.name + ".tmp").symlink_to(victim)  # the old fixed temp name
    write_file(path, [WATCH])
    assert victim.read_text() == "precious\n"
    assert decode_file(read_file(path)) == ([WATCH], [])
    assert path.stat().st_mode & 0o777 == 0o600
    # the watch file itself a symlink: replaced by the rename, its target untouched
    path.unlink()
    path.symlink_to(victim)
    write_file(path, [WATCH])
    assert victim.read_text() == "precious\n" and not path.is_symlink()


def test_a_planted_persist_temp_symlink_overwrites_nothing(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    persist = tmp_path / "world.jsonl"
    persist.with_name(persist.name + ".tmp").symlink_to(victim)
    store = PersistFile(persist, fsync_interval_s=0)
    line = encode_line({"kind": "event", "cam": "cam0", "t_ns": 1}, None)
    store.rewrite([line])
    store.append(line)
    store.close()
    assert victim.read_text() == "precious\n"
    assert persist.read_bytes() == line * 2 and persist.stat().st_mode & 0o777 == 0o600
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp") and p != "world.jsonl.tmp"]


def test_a_persist_file_that_is_a_symlink_is_neither_read_nor_appended(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    persist = tmp_path / "world.jsonl"
    persist.symlink_to(victim)
    with pytest.raises(OSError) as err:
        list(read_lines(persist, 8))
    assert err.value.errno == errno.ELOOP
    with pytest.raises(OSError):
        PersistFile(persist, fsync_interval_s=0).open_append(0)
    assert victim.read_text() == "precious\n"
