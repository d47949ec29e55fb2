"""The hostile FILES campaign (tests/hostile/files.py) at `make test` size: every class's bomb corpus (bombs
just over each limit) and a few drawn cases each, every class in its own process; none may crash (an
exception other than the reader's clear error, a signal) or exceed its RSS bound."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.hostile.files import CLASSES, REPO
from tests.support import child_env

CASES = 12
# the readers' classes; the config classes (yaml_config, checkpoint_dir) run in test_files_config_short.py
READERS = ["mcap", "tar_shard", "watch_file", "persist_file", "shm_segment"]
RSS_BOUND_MB = 700  # the tar class imports torch (~260 MB); a bomb that went off would be GiBs


def test_every_file_class_refuses_its_bombs_without_a_crash(tmp_path):
    out = tmp_path / "files.json"
    argv = ["-m", "tests.hostile.files", "--cases", str(CASES), "--short", "--json", str(out), "--classes", *READERS,
            "--rss-bound-mb", str(RSS_BOUND_MB), "--timeout", "120"]  # fmt: skip
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    report = proc.stdout + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert proc.returncode == 0 and res["ok"], report
    assert set(res["classes"]) == set(READERS) and set(CLASSES) >= set(READERS) | {"yaml_config", "checkpoint_dir"}
    for name, r in res["classes"].items():
        assert r["crashes"] == 0 and r["peak_rss_mb"] <= RSS_BOUND_MB, (name, r)
        assert r["cases"] >= CASES and r["clear_errors"] + r["accepted"] == r["cases"], (name, r)
        bombs = [label for label in r["labels"] if ".bomb." in label]
        assert bombs and r["clear_errors"] >= len(bombs), (name, r)  # the corpus is there, and refused
