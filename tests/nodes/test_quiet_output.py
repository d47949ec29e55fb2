"""`--log-level WARNING` is really quiet, and so are third-party libraries by default (issue 34).

What the user saw: `perception up --log-level WARNING` still printed 8 info lines from the launcher (its
module-level logger was made, at INFO, before the flag was read), and tqdm "Loading weights" bars and
transformers FutureWarnings filled stderr. Now the level reaches every logger, and library bars and
FutureWarnings are hidden unless `--library-output` asks for them.
"""

from __future__ import annotations

import subprocess
import sys

from perception.cli import LIBRARY_OUTPUT_ENV, QUIET_LIBRARIES
from tests.support import REPO, child_env

from .conftest import pipeline_config, write_config


def up(path, *flags: str) -> subprocess.CompletedProcess:
    env = child_env()
    # only the flags decide: an earlier in-process `main()` of this pytest run set the quiet variables here
    for key in ("PERCEPTION_LOG_LEVEL", LIBRARY_OUTPUT_ENV, *QUIET_LIBRARIES):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "perception.cli", "up", str(path), "--duration", "3", *flags],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_log_level_warning_is_quiet_and_library_output_is_opt_in(runtime_dir, random_checkpoint):
    cams = [{"name": "cam0", "seed": 1, "size": 32, "duration_s": 30}]
    path = write_config(runtime_dir / "cfg.yaml", pipeline_config(runtime_dir, random_checkpoint, cameras=cams))
    quiet = up(path, "--log-level", "WARNING")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert '"level": "info"' not in quiet.stderr and "pipeline up" not in quiet.stderr, quiet.stderr[-3000:]
    assert "Loading weights" not in quiet.stderr and "FutureWarning" not in quiet.stderr, quiet.stderr[-3000:]
    loud = up(path, "--log-level", "INFO", "--library-output")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert "pipeline up" in loud.stderr and "Loading weights" in loud.stderr, loud.stderr[-3000:]
