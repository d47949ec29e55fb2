"""WebDataset tar shards (perception/data/shards.py): exact round trip, disjoint splits, resume, checks."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

from perception.data.manifest import ManifestDataset
from perception.data.shards import ShardIndex, ShardStream, check_shards, iter_shard, write_shards
from perception.data.video_io import write_clip_set
from perception.train.workers import loader_context
from tests.support import REPO, child_env


def shard_set(tmp_path: Path, shard_size: int = 5) -> tuple[Path, Path]:
    manifest = write_clip_set(tmp_path / "clips", count=3, seed=2, frames=8, size=32, fps=8)  # 3 x 6 lines
    return manifest, tmp_path / "shards"


def test_shards_round_trip_a_manifest_exactly(tmp_path: Path):
    manifest, out = shard_set(tmp_path)
    idx = write_shards(manifest, out, shard_size=5)
    assert [n for _, n in idx.shards] == [5, 5, 5, 3] and ShardIndex.read(out).samples == 18
    ds = ManifestDataset(manifest, frames=4, size=32)
    items = sorted(ShardStream(out, shuffle_buffer=1, frames=4, size=32), key=lambda it: it["line"])
    assert [it["line"] for it in items] == [line for line, _ in ds.entries]  # every line once
    for it in items:
        want = ds[it["line"] - 1]
        assert torch.equal(it["video"], want["video"])  # the same bytes decoded the same way
        for key in ("text", "query", "answer", "candidates"):
            assert it.get(key) == want.get(key)
        assert it["extra"] == want["extra"]


def keys_of(stream: ShardStream, workers: int) -> list[str]:
    loader = torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=workers, multiprocessing_context=loader_context(workers)
    )
    return [item["key"] for item in loader]


def test_two_ranks_by_two_workers_read_disjoint_samples_covering_the_set(tmp_path: Path):
    manifest, out = shard_set(tmp_path)
    write_shards(manifest, out, shard_size=4)  # 5 shards over 4 slots: uneven on purpose
    seen = [keys_of(ShardStream(out, rank=r, world_size=2, seed=3, decode=False), workers=2) for r in (0, 1)]
    flat = seen[0] + seen[1]
    assert len(flat) == len(set(flat)) == 18
    assert all(seen)  # both ranks got samples


def test_resume_mid_epoch_continues_with_the_next_unseen_sample(tmp_path: Path):
    manifest, out = shard_set(tmp_path)
    write_shards(manifest, out, shard_size=5)
    full = [it["key"] for it in ShardStream(out, seed=7, shuffle_buffer=6, decode=False)]
    assert full != sorted(full)  # shuffled
    resumed = [it["key"] for it in ShardStream(out, seed=7, shuffle_buffer=6, decode=False, skip=7)]
    assert resumed == full[7:]
    other_epoch = [it["key"] for it in ShardStream(out, seed=7, epoch=1, shuffle_buffer=6, decode=False)]
    assert sorted(other_epoch) == sorted(full) and other_epoch != full


def corrupt(shard: Path, key: str) -> None:
    """Rewrite one shard with `key`'s video replaced by bytes no decoder reads."""
    samples = list(iter_shard(shard))
    with tarfile.open(shard, "w") as tar:
        for k, parts in samples:
            for ext, data in parts.items():
                data = b"not a video" * 10 if (k == key and ext != "json") else data
                info = tarfile.TarInfo(f"{k}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_check_lists_every_unreadable_sample_and_index_problems(tmp_path: Path):
    manifest, out = shard_set(tmp_path)
    write_shards(manifest, out, shard_size=5)
    assert check_shards(out).ok and check_shards(out).readable == 18
    corrupt(out / "shard-000001.tar", "000000006")
    (out / "shard-000003.tar").unlink()
    rep = check_shards(out)
    assert [(u["shard"], u["key"]) for u in rep.unreadable] == [("shard-000001.tar", "000000006")]
    assert rep.readable == 14 and rep.samples == 15
    assert rep.index_problems == ["shard-000003.tar: listed in index.json, not on disk"]


def test_the_commands_shard_and_check(tmp_path: Path):
    manifest, out = shard_set(tmp_path)

    def perception(*argv: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "perception.cli", "data", *argv]
        return subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)

    made = perception("shard", str(manifest), str(out), "--shard-size", "8")
    assert made.returncode == 0 and "wrote 18 sample(s) in 3 shard(s)" in made.stdout, made.stderr
    ok = perception("check", str(out), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["readable"] == 18
    corrupt(out / "shard-000000.tar", "000000002")
    bad = perception("check", str(out))
    assert bad.returncode == 1 and "unreadable shard-000000.tar:000000002:" in bad.stdout
    missing = perception("check", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "cannot read the shard index" in missing.stderr
