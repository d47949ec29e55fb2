"""Issue 32: an MCAP decompression bomb (33 KB of zstd, 4 MB of lz4, each chunk inflating to 1 GiB) is a
clear error within bus/reader_limits.py, never 2.4 GB of RSS: `info`, `info --export foxglove`, `replay`.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from bus.mcapfile import RecordingError, ScanResult, iter_messages, load_metadata, scan
from bus.reader_limits import MCAP_MAX_CHUNK_BYTES
from tests.hostile.file_bombs import GiB, MiB, mcap_bomb, mcap_small, run_measured
from tests.support import child_env

RSS_BOUND_MB = 600  # the CLI imports torch and friends (~300-400 MB); a bomb that went off adds 1-2 GiB


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bombs")
    out = {}
    for name, comp, declared in [
        ("zstd", "zstd", None),  # declares 1 GiB honestly
        ("zstd_lying", "zstd", 4096),  # declares 4 KiB, inflates to 1 GiB
        ("lz4", "lz4", None),
        ("lz4_lying", "lz4", 4096),
    ]:
        path = d / f"{name}.mcap"
        path.write_bytes(mcap_bomb(comp, GiB, declared))
        out[name] = path
    return out


@pytest.mark.parametrize("name", ["zstd", "zstd_lying", "lz4", "lz4_lying"])
def test_every_reader_refuses_a_bomb_chunk(bombs, name):
    path = bombs[name]
    result = ScanResult()
    assert list(scan(path, result)) == [] and "RecordingError" in result.damage
    assert ("declares 1024 MiB" in result.damage) if "lying" not in name else ("more than the 4096" in result.damage)
    with pytest.raises(RecordingError, match="chunk"):
        list(iter_messages(path))
    assert load_metadata(path)["session"] == {"config": "{}"}  # through the index: nothing inflated


def test_small_files_of_every_compression_still_read(tmp_path):
    for comp in ("zstd", "lz4", ""):
        path = tmp_path / f"ok{comp}.mcap"
        path.write_bytes(mcap_small(comp, messages=4))
        assert [m.seq for m in iter_messages(path)] == [0, 1, 2, 3]
        result = ScanResult()
        assert len(list(scan(path, result))) == 4 and result.complete and result.damage is None


def test_the_limit_is_below_what_a_bomb_asks():
    assert 16 * MiB <= MCAP_MAX_CHUNK_BYTES < GiB


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "perception.cli", *args]


@pytest.mark.parametrize("name", ["zstd", "lz4_lying"])
def test_info_on_a_bomb_reports_damage_in_bounded_memory(bombs, name):
    code, out, err, peak = run_measured(cli("info", str(bombs[name])), env=child_env())
    assert code == 1 and "INCOMPLETE" in out and "chunk" in out, out + err
    assert "Traceback" not in err and peak < RSS_BOUND_MB, (peak, err[-2000:])


def test_info_export_foxglove_of_a_bomb_is_one_line_exit_2(bombs, tmp_path):
    code, out, err, peak = run_measured(
        cli("info", str(bombs["zstd"]), "--export", "foxglove", str(tmp_path / "fox.mcap")), env=child_env()
    )
    assert code == 2 and "perception info:" in err and "1024 MiB" in err, out + err
    assert "Traceback" not in err and peak < RSS_BOUND_MB, (peak, err[-2000:])


async def test_replay_of_a_bomb_is_one_line_exit_2(bombs, proxy, config_file):
    argv = cli("replay", str(bombs["lz4"]), "--rate", "0", "--config", str(config_file))
    code, out, err, peak = await asyncio.to_thread(run_measured, argv, env=child_env())
    assert code == 2 and "perception replay:" in err and "1024 MiB" in err, out + err
    assert "Traceback" not in err and peak < RSS_BOUND_MB, (peak, err[-2000:])
