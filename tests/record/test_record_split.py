"""Split recordings (`--split-size`, `--split-duration`): each file complete and readable by the official mcap
reader, every message in exactly one file (seqs continuous across the boundaries), a closed file's writer
released, and bad arguments or leftover files refused with one line and exit 2."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import weakref

import msgpack
import pytest
from mcap.reader import make_reader

from bus.pubsub import Publisher
from bus.record import Recorder, SplitPolicy, split_path, split_paths
from perception.commands.record import parse_size
from tests.record.conftest import perception, perception_run, sample_blob, wait_line


def read_file(path) -> tuple[list[tuple[str, int]], dict[str, dict[str, str]], object]:
    """(topic, seq) of every message, the metadata by name and the summary, through the official reader only."""
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()  # None for a file without its summary (not closed)
        meta = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        rows = [
            (channel.topic, msgpack.unpackb(message.data, raw=False)[0]["seq"])
            for _s, channel, message in reader.iter_messages(log_time_order=False)
        ]
    return rows, meta, summary


def log_time_span(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        st = make_reader(f).get_summary().statistics
    return st.message_start_time, st.message_end_time


def check_split(out, n_files_min: int) -> tuple[list[list[tuple[str, int]]], list[dict]]:
    files = split_paths(out)
    assert len(files) >= n_files_min, files
    assert files == [split_path(out, i) for i in range(len(files))]  # OUT_0, OUT_1, ... with no hole
    assert not out.exists()  # OUT itself is only the name
    rows, metas = [], []
    for i, path in enumerate(files):
        r, meta, summary = read_file(path)
        assert summary is not None and summary.statistics.message_count == len(r), path  # complete, footer
        split = meta["split"]
        assert int(split["index"]) == i and int(split["messages"]) == len(r)
        assert split["next"] == (files[i + 1].name if i + 1 < len(files) else "")  # "" on the last
        assert int(meta["session"]["split_index"]) == i  # every file says what it is
        rows.append(r)
        metas.append(meta)
    assert "recording" in metas[-1] and all("recording" not in m for m in metas[:-1])
    assert json.loads(metas[-1]["recording"]["files"]) == [p.name for p in files]
    return rows, metas


async def test_split_by_size_keeps_every_message_once_and_releases_closed_files(proxy, bus_config, runtime_dir):
    out = runtime_dir / "sized.mcap"
    opened: list[weakref.ref] = []

    class Watched(Recorder):
        def _open_file(self):
            writer = super()._open_file()
            opened.append(weakref.ref(writer._writer))  # the mcap Writer: it holds the chunk indexes
            return writer

    split = 200_000
    recorder = Watched(bus_config, out, topics=["demo/"], chunk_size=32 * 1024, compression="none", split_size=split)
    task = asyncio.create_task(recorder.run())
    await recorder.ready.wait()
    pub = Publisher(bus_config, src="sizer")
    await pub.ready()
    n = 90  # ~2.3 MB of blobs (9-67 KB each): about a dozen files of 200 KB
    for i in range(n):
        await pub.publish("demo/blob", sample_blob(i))
        await asyncio.sleep(0.002)
    async with asyncio.timeout(30):
        while recorder.stats.messages < n:
            await asyncio.sleep(0.01)
    gc.collect()  # while still recording: every closed file's writer is gone, the open one is alive
    alive = [ref() is not None for ref in opened]
    pub.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    rows, _ = check_split(out, 5)
    seqs = [seq for r in rows for topic, seq in r if topic == "demo/blob"]
    assert seqs == list(range(n))  # in order across the boundaries: none lost, none twice
    for path in split_paths(out)[:-1]:  # a closed file exceeds the size by at most one chunk and its summary
        assert split <= path.stat().st_size < split + 32 * 1024 + 67_300 + 16_384, path
    assert recorder.stats.files == [str(p) for p in split_paths(out)]
    assert alive == [False] * (len(opened) - 1) + [True]  # no closed file's index state outlives it


async def test_split_by_duration_from_the_command_line(proxy, bus_config, config_file, runtime_dir):
    out = runtime_dir / "timed.mcap"
    rec = await perception(
        "record", str(out), "--topics", "demo/", "--split-duration", "1", "--config", str(config_file)
    )
    try:
        line = await wait_line(rec, "recording")
        assert "timed_0.mcap" in line
        pub = Publisher(bus_config, src="timer")
        await pub.ready()
        n = 0
        t_end = asyncio.get_running_loop().time() + 3.5
        while asyncio.get_running_loop().time() < t_end:  # ~3.5 s at ~50 Hz: at least 3 files
            await pub.publish("demo/blob", sample_blob(n % 2 + 1))  # the small blobs
            n += 1
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        pub.close()
    finally:
        rec.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(rec.communicate(), 30)
    assert rec.returncode == 0, stderr.decode()[-2000:]
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    rows, metas = check_split(out, 3)
    assert summary["files"] == [str(p) for p in split_paths(out)]
    seqs = [seq for r in rows for _topic, seq in r]
    assert seqs == list(range(n)) and summary["by_topic"] == {"demo/blob": n}
    spans = [log_time_span(path) for path in split_paths(out)]
    for start, end in spans[:-1]:
        assert end - start < 1e9  # each file holds less than --split-duration of receive time
    assert all(prev[1] < nxt[0] for prev, nxt in zip(spans, spans[1:]))  # in order, no overlap

    # the files exist now: the same command is refused, --force replaces them all (none of the old left)
    code, _, err = await perception_run("record", str(out), "--split-duration", "1", "--config", str(config_file))
    assert code == 2 and "timed_0.mcap exists" in err and "Traceback" not in err
    code, _, err = await perception_run(
        "record", str(out), "--split-size", "1GB", "--duration", "0.5", "--force", "--config", str(config_file)
    )
    assert code == 0, err
    assert "removed" in err and split_paths(out) == [split_path(out, 0)]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--split-size", "12XB"], "expected a number of bytes"),
        (["--split-size", "0"], "split size must be > 0"),
        (["--split-duration", "0.1"], "split duration must be >= 1"),
    ],
)
async def test_bad_split_arguments_are_one_line_and_exit_2(config_file, runtime_dir, args, says):
    code, _, err = await perception_run("record", str(runtime_dir / "x.mcap"), *args, "--config", str(config_file))
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_sizes_and_policy():
    assert parse_size("1000000") == 10**6 and parse_size("512MB") == 512 * 10**6
    assert parse_size("512MiB") == 512 * 2**20 and parse_size("1.5G") == 1_500_000_000 and parse_size("2kib") == 2048
    policy = SplitPolicy(size=100, duration_s=2.0)
    assert not policy.due(10**9, None, 10**12)  # an empty file is never left for a new one
    assert policy.due(100, 0, 1) and policy.due(0, 0, 2 * 10**9) and not policy.due(99, 0, 2 * 10**9 - 1)
    assert not SplitPolicy().enabled and split_path("/r/a.mcap", 3).name == "a_3.mcap"
