"""Hostile files, the config classes: YAML configs and checkpoint directories (issue 32).

Each class has a hypothesis strategy (structure-aware: a valid config or checkpoint with one part made
hostile) and a bomb corpus (the attacks that worked once: the billion laughs, `package:` sources, python
tags, absurd sizes, forged safetensors headers). `run_<class>(n, seed)` tries n cases through the real
readers, in this process, and returns per-class counts:

    cases         tried
    clear_errors  refused with the readers' own one-line error (ConfigError / CheckpointError)
    accepted      read without complaint (and then bounded: the checks below hold)
    crashes       anything else: a traceback a user would see; `crash_examples` lists the first ones

An accepted YAML config must describe a model within perception/model/config.py's bounds; an accepted
checkpoint must name no package outside PACKAGED_SOURCES. No case may import a module it names (a marker
module would leave a file). `peak_rss_mb` is this process's peak after the run.

The file-campaign framework (tests/hostile/, `make hostile`) calls these per class; the short pytest is
tests/hostile/test_files_config_short.py.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

CLASSES = ("yaml_config", "checkpoint_dir")
MARKER_MODULE = "hostile_marker_mod"  # what a `package:` case names; importing it writes PWNED beside it

# ------------------------------------------------------------------------------------------ values


HOSTILE_NUMBERS = [
    0, -1, 1, 2**31, 2**62, 2**63, 2**64, 10**12, 10**100, 1e-9, 1e300, -1e300,
    float("inf"), float("-inf"), float("nan"), True, "1e9", "", None,
]  # fmt: skip
HOSTILE_STRINGS = [
    "package:this", f"package:{MARKER_MODULE}", "package:os.path", "package:", "../../../../etc",
    "/dev/zero", "x" * 100_000, "\x00", "tcp://0.0.0.0:1", "ipc:///tmp/../x",
]  # fmt: skip


def hostile_value() -> st.SearchStrategy[Any]:
    leaf = st.one_of(
        st.sampled_from(HOSTILE_NUMBERS),
        st.sampled_from(HOSTILE_STRINGS),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=40),
    )
    return st.recursive(
        leaf,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
        max_leaves=8,
    )


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every dotted path (as a key tuple) into a config dict, leaves and sections."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _set(node: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


# ------------------------------------------------------------------------------------------ YAML configs


def _base_config() -> dict:
    from perception.config import AppConfig

    cfg = AppConfig().model_dump(mode="json")
    cfg["model"]["overrides"] = {"y_encoder": {"hf_config": {"hidden_size": 384}}, "x_encoder": {"hidden": 192}}
    return cfg


def _laughs(levels: int = 9, width: int = 9) -> str:
    rows = ['a0: &a0 ["lol"' + ',"lol"' * (width - 1) + "]"]
    for i in range(1, levels):
        rows.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    body = "\n".join("        " + r for r in rows)
    return f"model:\n  overrides:\n    y_encoder:\n      hf_config:\n{body}\n"


YAML_BOMBS: list[bytes] = [
    _laughs().encode(),  # the 603-byte attack of the issue
    b"a: &a [1]\nb: *a\n",
    b"base: &b {latest_hwm: 4}\nbus:\n  <<: *b\n",  # a merge key is an alias too
    b"[" * 50_000 + b"]" * 50_000,
    b"model: {overrides: {y_encoder: {hf_config: " + b"[" * 5000 + b"]" * 5000 + b"}}}\n",
    b"!!python/object/apply:os.system ['touch PWNED']\n",
    b"bus: !!python/name:os.system\n",
    b"name: !!binary AAAA\n",
    b"model: {weights: {y_encoder: 'package:this'}}\n",
    f"model: {{weights: {{y_encoder: 'package:{MARKER_MODULE}'}}}}\n".encode(),
    b"pipeline: {encoder: {max_batch: 1000000000, window_frames: 1000000000}}\n",
    b"pipeline: {decoder: {beams: 1000000, threads: 1000000}}\n",
    b"bus: {stats_interval_s: 1.0e-9, max_msg_size: 4611686018427387904, shm: {max_frame_bytes: 1152921504606846976}}\n",
    b"pipeline: {world: {max_items: 1000000000000}}\n",
    b"pipeline: {supervisor: {startup_timeout_s: .inf, stop_timeout_s: .nan}}\n",
    b"model: {overrides: {x_encoder: {hidden: 1000000000, layers: 100000}}}\n",
    b"model: {overrides: {predictor: {hf_config: {vocab_size: 1000000000000}}}}\n",
    b"model: {overrides: {y_encoder: {hf_config: {k: '" + b"x" * 200_000 + b"'}}}}\n",
    b"name: x\n" + b"#" * (2 * 1024 * 1024) + b"\n",  # over the 1 MiB file limit
    b"\xff\xfe\x00garbage",
    b"\tname: x\n",
    b"- just\n- a list\n",
    b"",
    b"pipeline: {cameras: [" + b"{type: synthetic}," * 5000 + b"]}\n",
    b"model: {overrides: 5}\n",
    b"model: {overrides: {y_encoder: 5}}\n",
]


@st.composite
def yaml_configs(draw) -> bytes:
    """A YAML config: the default one with one path (or a new key) replaced by a hostile value."""
    import yaml

    cfg = _base_config()
    paths = _paths(cfg)
    path = draw(st.sampled_from(paths))
    if draw(st.booleans()):
        path = (*path[:-1], draw(st.sampled_from(["extra", "hf_config", "weights", "source", "max_batch"])))
    try:
        _set(cfg, path, draw(hostile_value()))
    except (TypeError, IndexError, KeyError):
        pass
    text = yaml.safe_dump(cfg, allow_unicode=True)
    if draw(st.integers(0, 9)) == 0:  # now and then an alias smuggled in
        text = "x: &x [1, 2]\n" + text + "y: *x\n"
    return text.encode("utf-8", "surrogatepass")


def judge_yaml(data: bytes, workdir: Path) -> str:
    """'clear' | 'accepted' | 'crash: ...' for one YAML config read by load_config."""
    from perception.config import ConfigError, load_config
    from perception.model.config import check_bounds

    path = workdir / "config.yaml"
    path.write_bytes(data)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        return "clear" if str(exc).strip() else "crash: an empty ConfigError"
    except Exception as exc:
        return f"crash: {type(exc).__name__}: {str(exc)[:200]}"
    model = cfg.model.to_model_config()
    check_bounds(model)  # accepted means bounded (a user's own config may name any package: nothing is imported)
    return "accepted"


# ------------------------------------------------------------------------------------------ checkpoints


def safetensors_bytes(header: dict | bytes, data: bytes = b"", declared: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if declared is None else declared) + raw + data


def _valid_weights() -> tuple[dict, bytes]:
    data = bytes(4 * 6)
    return {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "__metadata__": {"format": "pt"}}, data


def _checkpoint_config() -> dict:
    from perception.model.config import preset_config  # torch-free
    from tests.support import SMALL_MODEL

    model = preset_config("tiny").with_overrides(SMALL_MODEL).to_dict()
    return {"format": 1, "model": model, "external": {"y_encoder.backbone.": model["y_encoder"]["source"]}}


def _bomb_checkpoints() -> list[tuple[bytes, bytes]]:
    """(config.json, model.safetensors) pairs."""
    cfg = _checkpoint_config()
    good = json.dumps(cfg).encode()
    header, data = _valid_weights()
    weights = safetensors_bytes(header, data)

    def model_with(part: str, key: str, value: Any) -> bytes:
        c = json.loads(good)
        c["model"][part][key] = value
        return json.dumps(c).encode()

    def top(key: str, value: Any) -> bytes:
        c = json.loads(good)
        c[key] = value
        return json.dumps(c).encode()

    huge_shape = {"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 24]}}
    return [
        (good, weights),
        (model_with("y_encoder", "source", "package:this"), weights),
        (model_with("y_encoder", "source", f"package:{MARKER_MODULE}"), weights),
        (model_with("x_encoder", "weights", f"package:{MARKER_MODULE}.sub"), weights),
        (model_with("predictor", "tokenizer", "package:os"), weights),
        (model_with("x_encoder", "hidden", 10**9), weights),
        (model_with("x_encoder", "hf_config", {"a": [[[[[[[[[[[1]]]]]]]]]]]}), weights),
        (model_with("y_encoder", "hf_config", {"vocab_size": 2**60}), weights),
        (model_with("predictor", "rope_theta", "NaN"), weights),
        (top("format", 2), weights),
        (top("model", 5), weights),
        (top("external", {"x": 5}), weights),
        (b"[" * 100_000 + b"]" * 100_000, weights),
        (b"{" + b" " * (2 * 1024 * 1024) + b"}", weights),
        (b"\xff\xfe", weights),
        (b'{"format": 1, "model": {"x_encoder": 1e999}}', weights),
        (good, safetensors_bytes(huge_shape, data)),
        (good, safetensors_bytes({"w": {"dtype": "F128", "shape": [2, 3], "data_offsets": [0, 24]}}, data)),
        (good, safetensors_bytes({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 2**62]}}, data)),
        (good, safetensors_bytes({"w": {"dtype": "F32", "shape": [-1, 3], "data_offsets": [0, 24]}}, data)),
        (good, safetensors_bytes({"w": {"dtype": "F32", "shape": "big", "data_offsets": [0, 24]}}, data)),
        (good, safetensors_bytes(header, data, declared=2**63)),
        (good, safetensors_bytes(header, data, declared=10**8)),
        (good, safetensors_bytes(b"not json", data)),
        (good, safetensors_bytes(b"[" * 10_000 + b"]" * 10_000, data)),
        (good, b"\x00" * 4),
        (good, b""),
        (
            good,
            safetensors_bytes(
                {
                    "a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]},
                    "b": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]},
                },
                data,
            ),
        ),
    ]


@st.composite
def checkpoint_dirs(draw) -> tuple[bytes, bytes]:
    """A small checkpoint's (config.json, model.safetensors) with one part of either made hostile."""
    cfg = _checkpoint_config()
    header, data = _valid_weights()
    if draw(st.booleans()):
        path = draw(st.sampled_from(_paths(cfg)))
        try:
            _set(cfg, path, draw(hostile_value()))
        except (TypeError, IndexError, KeyError):
            pass
        config = json.dumps(cfg, allow_nan=True).encode()
        return config, safetensors_bytes(header, data)
    spec = header["w"]
    key = draw(st.sampled_from(["dtype", "shape", "data_offsets", "name", "declared", "data"]))
    declared = None
    if key == "dtype":
        spec["dtype"] = draw(st.sampled_from(["F128", "", "f32", "OBJECT", 5]) | st.text(max_size=6))
    elif key == "shape":
        spec["shape"] = draw(st.lists(st.sampled_from([0, 1, 3, -1, 2**31, 2**62, 2**64, 10**30]), max_size=20))
    elif key == "data_offsets":
        spec["data_offsets"] = draw(st.lists(st.sampled_from([0, 24, -1, 2**62, 2**64, 1.5]), max_size=3))
    elif key == "name":
        header[draw(st.text(max_size=20))] = draw(hostile_value())
    elif key == "declared":
        declared = draw(st.sampled_from([0, 1, 7, 2**32, 2**63, 2**64 - 1]))
    else:
        data = draw(st.binary(max_size=64))
    return json.dumps(_checkpoint_config()).encode(), safetensors_bytes(header, data, declared)


def judge_checkpoint(files: tuple[bytes, bytes], workdir: Path) -> str:
    """'clear' | 'accepted' | 'crash: ...' for one checkpoint directory read by the checkpoint readers (the
    torch-free part of VLJepa.load: config.json and the safetensors header against the file)."""
    from perception.model.checkpoint_config import CheckpointError, check_weights_file, read_checkpoint_meta
    from perception.model.config import PACKAGED_SOURCES, weight_sources

    d = workdir / "ckpt"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    (d / "config.json").write_bytes(files[0])
    (d / "model.safetensors").write_bytes(files[1])
    try:
        cfg, _external = read_checkpoint_meta(d)
        check_weights_file(d / "model.safetensors")
    except CheckpointError as exc:
        return "clear" if str(exc).strip() and "\n" not in str(exc) else f"crash: not one line: {exc!s:.200}"
    except Exception as exc:
        return f"crash: {type(exc).__name__}: {str(exc)[:200]}"
    named = [s for _, s in weight_sources(cfg) if s.startswith("package:") and s not in PACKAGED_SOURCES]
    return f"crash: accepted a package source {named}" if named else "accepted"


# ------------------------------------------------------------------------------------------ runner


@dataclass
class ClassCounts:
    cases: int = 0
    clear_errors: int = 0
    accepted: int = 0
    crashes: int = 0
    crash_examples: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    imported_marker: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _draw(strategy: st.SearchStrategy, n: int, seed: int) -> list:
    """n examples of `strategy`, reproducible from `seed` (the campaign's own generator)."""
    from tests.hostile.campaign import _collect

    return _collect(strategy, n, seed)[:n]


def _run(
    name: str, corpus: list, strategy: st.SearchStrategy, judge: Callable[[Any, Path], str], n: int, seed: int
) -> dict[str, Any]:
    counts = ClassCounts()
    rng = random.Random(seed)
    cases = list(corpus) if n >= len(corpus) else rng.sample(corpus, n)
    cases += _draw(strategy, max(n - len(cases), 0), seed) if n > len(cases) else []
    with tempfile.TemporaryDirectory(prefix=f"hostile-{name}-") as tmp:
        work = Path(tmp)
        marker_dir = work / "marker"
        marker_dir.mkdir()
        (marker_dir / f"{MARKER_MODULE}.py").write_text(
            "import pathlib\npathlib.Path(__file__).with_name('PWNED').write_text('ran')\n"
        )
        sys.path.insert(0, str(marker_dir))  # importable, as a module beside a recording would be
        try:
            for case in cases[:n]:
                counts.cases += 1
                verdict = judge(case, work)
                if verdict == "clear":
                    counts.clear_errors += 1
                elif verdict == "accepted":
                    counts.accepted += 1
                else:
                    counts.crashes += 1
                    if len(counts.crash_examples) < 5:
                        counts.crash_examples.append(f"{verdict} <- {str(case)[:160]}")
        finally:
            sys.path.remove(str(marker_dir))
        counts.imported_marker = (marker_dir / "PWNED").exists() or MARKER_MODULE in sys.modules
    counts.peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return counts.as_dict()


def run_yaml_config(n: int = 200, seed: int = 0) -> dict[str, Any]:
    """n YAML configs (the bomb corpus first, then hypothesis' mutations) through load_config."""
    return _run("yaml_config", YAML_BOMBS, yaml_configs(), judge_yaml, n, seed)


def run_checkpoint_dir(n: int = 200, seed: int = 0) -> dict[str, Any]:
    """n checkpoint directories (the bomb corpus first, then mutations) through the checkpoint readers."""
    return _run("checkpoint_dir", _bomb_checkpoints(), checkpoint_dirs(), judge_checkpoint, n, seed)


RUNNERS = {"yaml_config": run_yaml_config, "checkpoint_dir": run_checkpoint_dir}


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.hostile.files_config [--cases N] [--seed S]`: every class, counts as JSON."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    res = {name: run(args.cases, args.seed) for name, run in RUNNERS.items()}
    print(json.dumps(res, indent=2))
    return 0 if all(r["crashes"] == 0 and not r["imported_marker"] for r in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
