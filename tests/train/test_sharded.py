"""The sharded recipe (perception/train/sharded.py) on tiny configs of the vitl preset's real classes
(VJEPA2, Llama, Gemma3): two simulated nodes of two gloo ranks under torchrun with a loopback rendezvous,
a resume on one rank with the same losses, FSDP2 against DDP, and cached X-encoder features."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from perception.data.shards import write_shards
from perception.data.video_io import write_clip_set
from perception.model import VLJepa
from perception.model.tiny_real import tiny_real_model_section, write_tiny_pretrained
from perception.train.config import ShardedTrainConfig
from perception.train.sample_streams import StreamLayoutError
from perception.train.sharded import ShardedTrainer, train_sharded
from tests.support import child_env

SAMPLES = 24  # 4 clips x (1 caption + 5 questions), in 8 shards of 3: 4 streams x 2 shards, 6 samples each


def base_config(dirs: dict[str, Path], shards: Path, **over) -> dict:
    cfg = {
        "recipe": "sharded",
        "seed": 0,
        "threads": 1,
        "model": tiny_real_model_section(dirs),
        "data": {"shards": str(shards), "streams": 4, "num_workers": 1, "shuffle_buffer": 4},
        "steps": 4,
        "global_batch": 8,
        "micro_batch": 8,
        "lr": 1e-3,
        "log_every": 1,
        "checkpoint_every": 2,
        "keep_checkpoints": 5,
        "log_samples": True,
    }
    for key, value in over.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    manifest = write_clip_set(root / "clips", count=4, seed=1, frames=4, size=32, fps=4)
    write_shards(manifest, root / "shards", shard_size=3)
    return {"root": root, "dirs": write_tiny_pretrained(root / "pretrained"), "shards": root / "shards"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], config: Path, out: Path, *extra: str) -> list[subprocess.Popen]:
    cmd = [sys.executable, "-m", "torch.distributed.run", *args, "-m", "perception.cli", "train"]
    cmd += ["--config", str(config), "--out", str(out), *extra]
    return subprocess.Popen(cmd, env=child_env(OMP_NUM_THREADS="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out.decode()[-3000:]


def losses(out: Path) -> dict[int, float]:
    return {d["step"]: d["loss"] for d in map(json.loads, (out / "losses.jsonl").read_text().splitlines())}


def samples(out: Path) -> dict[int, list[str]]:
    return {d["step"]: d["keys"] for d in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def four_ranks(setup):
    """2 nodes x 2 gloo ranks, c10d rendezvous on loopback, DDP, micro_batch 2 (8 rows a micro-step)."""
    config = setup["root"] / "ddp4.yaml"
    config.write_text(yaml.safe_dump(base_config(setup["dirs"], setup["shards"], micro_batch=2)))
    out, port = setup["root"] / "ddp4", free_port()
    rdzv = ["--nnodes", "2", "--nproc-per-node", "2", "--rdzv-backend", "c10d"]
    rdzv += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "sharded-test"]
    finish([torchrun(rdzv, config, out) for _ in range(2)])  # two torchrun agents: two simulated nodes
    return out


def test_two_nodes_of_two_ranks_read_every_sample_once_and_resume_on_one_rank(setup, four_ranks):
    seen = samples(four_ranks)
    epoch = [k for step in (1, 2, 3) for k in seen[step]]  # 4 streams x 2 samples x 3 steps = one epoch
    assert len(epoch) == len(set(epoch)) == SAMPLES  # disjoint across ranks and workers, covering the set
    assert all(math.isfinite(v) for v in losses(four_ranks).values())

    cfg = ShardedTrainConfig.model_validate(base_config(setup["dirs"], setup["shards"]))  # 1 rank x micro 8
    resumed = setup["root"] / "resumed1"
    result = train_sharded(cfg, resumed, resume_from=four_ranks / "step-00000002")
    assert result.global_step == 4
    want, got = losses(four_ranks), losses(resumed)
    assert sorted(got) == [3, 4]  # it continued at step 3
    for step in (3, 4):
        assert got[step] == pytest.approx(want[step], rel=1e-4), (step, got, want)
        assert sorted(samples(resumed)[step]) == sorted(seen[step])  # the same next unseen samples
    model = VLJepa.load(resumed, device="cpu")  # the servable checkpoint
    assert model.embed_text(["a red circle"]).shape == (1, 32)


def test_fsdp2_with_activation_checkpointing_follows_ddp_and_resumes_under_ddp(setup, four_ranks):
    config = setup["root"] / "fsdp2.yaml"
    over = {"micro_batch": 4, "parallel": {"strategy": "fsdp", "activation_checkpointing": True}}
    config.write_text(yaml.safe_dump(base_config(setup["dirs"], setup["shards"], **over)))
    out = setup["root"] / "fsdp2"
    finish([torchrun(["--standalone", "--nproc-per-node", "2"], config, out)])
    want, got = losses(four_ranks), losses(out)
    assert got == pytest.approx(want, rel=1e-4)  # the same rows on 2 ranks with sharded state
    cfg = ShardedTrainConfig.model_validate(base_config(setup["dirs"], setup["shards"]))  # DDP code path, 1 rank
    resumed = setup["root"] / "fsdp2-resumed"
    train_sharded(cfg, resumed, resume_from=out / "step-00000002")  # a full-state checkpoint: any strategy
    assert losses(resumed) == pytest.approx({s: want[s] for s in (3, 4)}, rel=1e-4)


def test_cached_x_encoder_features_equal_the_live_ones_bitwise(setup, tmp_path):
    cfg = ShardedTrainConfig.model_validate(
        base_config(setup["dirs"], setup["shards"], **{"data.cache_features": str(tmp_path / "cache")})
    )
    trainer = ShardedTrainer(cfg, tmp_path / "run")
    micro = trainer.batches()
    live: dict[str, torch.Tensor] = {}
    for _ in range(3):  # epoch 0: decoded and encoded live, kept per shard
        items = next(micro)
        assert all("video" in it and "features" not in it for it in items)
        for it, s_v in zip(items, trainer.encode(items), strict=True):
            live[it["key"]] = s_v.clone()
    assert len(live) == SAMPLES and len(list(trainer.cache.dir.glob("*.safetensors"))) == 8
    assert trainer.cache.pending == 0
    del micro  # its workers prefetched epoch-1 items before the files existed: read epoch 1 afresh
    trainer.data.start = 6  # samples per stream in epoch 0
    micro = trainer.batches()
    for _ in range(3):  # epoch 1: every sample from the cache, no video decoded
        items = next(micro)
        assert all("features" in it and "video" not in it for it in items)
        for it, s_v in zip(items, trainer.encode(items), strict=True):
            assert s_v.dtype == live[it["key"]].dtype and torch.equal(s_v, live[it["key"]])
    del micro


def test_data_loader_workers_are_not_forked_from_the_threaded_trainer(setup, tmp_path):
    """A fork of a threaded trainer can copy a lock held by another thread: its workers then hang on a
    futex. The recipe's workers come from a forkserver: not children of this process, not fork-started."""
    cfg = ShardedTrainConfig.model_validate(base_config(setup["dirs"], setup["shards"]))  # 1 worker
    trainer = ShardedTrainer(cfg, tmp_path / "run")
    micro = trainer.batches()
    assert len(next(micro)) == 8  # the workers ran and delivered
    workers = micro.items._workers  # the DataLoader iterator's worker processes
    assert len(workers) == 1
    for w in workers:
        assert w._start_method in ("forkserver", "spawn")
        assert psutil.Process(w.pid).ppid() != os.getpid()  # forked by the server, not by this process
    del micro


def test_streams_that_do_not_split_over_the_workers_are_refused_clearly(setup, tmp_path):
    cfg = ShardedTrainConfig.model_validate(
        base_config(setup["dirs"], setup["shards"], **{"data.streams": 3, "data.num_workers": 2})
    )
    with pytest.raises(StreamLayoutError, match="multiple of 2"):
        ShardedTrainer(cfg, tmp_path / "run")


def test_the_cli_names_the_recipe_and_the_missing_data(tmp_path):
    env = child_env()
    proc = subprocess.run(
        [sys.executable, "-m", "perception.cli", "train", "--preset", "vjepa2-vitl", "--out", str(tmp_path / "o")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.getcwd(),
    )
    assert proc.returncode == 2 and "data.shards" in proc.stderr, proc.stderr
