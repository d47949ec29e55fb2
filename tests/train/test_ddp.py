"""Two gloo ranks under a real torchrun: DDP training runs every stage, gathers negatives across ranks,
and writes one loadable checkpoint."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import yaml

from perception.model import VLJepa
from tests.train.conftest import small_train_dict


def test_two_rank_gloo_torchrun_trains_all_stages(tmp_path):
    cfg = small_train_dict(stage1={"steps": 3, "batch_size": 4, "lr": 3e-3}, stage2={"steps": 2, "batch_size": 4, "lr": 1e-3},
                           stage3={"steps": 2, "batch_size": 4, "lr": 1e-3})
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "perception.cli", "train", "--config", str(path), "--out", str(out)],
        capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [json.loads(line) for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("{\"component\"")]
    progress = [r for r in logs if r.get("event") == "progress"]
    assert progress and all(r["rank"] == 0 for r in progress)  # only rank 0 reports
    contrastive = [r for r in progress if r["stage"] in ("stage1", "stage2")]
    # negatives come from both ranks: the InfoNCE baseline is ln(2 ranks x 4 rows)
    assert all(math.isclose(r["ln_b"], round(math.log(8), 3)) for r in contrastive)
    starts = [r for r in logs if r.get("event") == "stage start"]
    assert {r["global_batch"] for r in starts} == {8}
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{\"out\"")]
    assert len(summaries) == 2 and all(s["global_step"] == 7 for s in summaries)  # both ranks finished
    model = VLJepa.load(out, device="cpu")
    assert model.cfg.x_encoder.hidden == 48
