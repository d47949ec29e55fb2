"""Which model a node runs: the configured checkpoint, else checkpoints/tiny, else the preset at random init.

The model-running nodes (encoder, decoder) load through here, so they agree on the weights and on the
`model_id` stamped on embeddings; the nodes without a model (world, events) read only its sizes, without
torch, with `model_config` / `embed_dim`.

The encoder's `vlm` mode loads the token-generative baseline from `pipeline.encoder.vlm_checkpoint`
(`load_vlm`); `vlm_preflight` checks that directory without torch, for the checks made before any process
starts (found by the encoder itself, a missing or mismatched VLM is a crash loop until the node is given up).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bus.logs import get_logger
from perception.config import REPO_ROOT
from perception.model.config import ModelSection, VLJepaConfig

DEFAULT_CHECKPOINT = Path("checkpoints/tiny")
log = get_logger("nodes.models")


class ModelUnavailableError(FileNotFoundError):
    """The configured checkpoint directory does not exist."""


def local_or_repo(path: str | Path) -> Path:
    """A relative path as given when it exists here, else under the repo root when it exists there."""
    path = Path(path).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return path


def resolve_checkpoint(section: ModelSection) -> Path | None:
    """The checkpoint directory to load, or None to build the preset (random init, for development)."""
    if section.checkpoint:
        path = local_or_repo(section.checkpoint)
        if not path.is_dir():
            raise ModelUnavailableError(f"model.checkpoint = {section.checkpoint}: no such directory")
        return path
    default = REPO_ROOT / DEFAULT_CHECKPOINT
    if section.preset == "tiny" and (default / "config.json").is_file():
        return default
    return None


def model_id(section: ModelSection) -> str:
    path = resolve_checkpoint(section)
    if path is None:
        return f"{section.preset}@random-init"
    digest = (
        hashlib.sha1((path / "config.json").read_bytes()).hexdigest()[:8] if (path / "config.json").exists() else "?"
    )
    return f"{section.preset}@{path.name}:{digest}"


def model_config(section: ModelSection) -> VLJepaConfig:
    """The architecture `load_model` builds, read without torch: the checkpoint's config.json, or the
    preset with the section's overrides when there is no checkpoint."""
    path = resolve_checkpoint(section)
    if path is None:
        return section.to_model_config()
    from perception.model.checkpoint_config import CheckpointError, read_checkpoint_config

    try:
        return read_checkpoint_config(path)  # data: bounded, validated, names no package to import
    except CheckpointError as exc:
        raise ModelUnavailableError(str(exc)) from None


def embed_dim(section: ModelSection) -> int:
    """D, the dimension of every embedding the configured model produces (without loading it)."""
    return int(model_config(section).embed_dim)


def load_model(section: ModelSection, threads: int | None = None):
    """(VLJepa in eval mode, model_id). Heavy: call from a thread or before the node starts serving."""
    import torch

    from perception.model import VLJepa

    if threads:
        torch.set_num_threads(threads)
    path = resolve_checkpoint(section)
    if path is None:
        log.warning(
            "no checkpoint: running the preset at random init (captions will be noise)",
            preset=section.preset,
            expected=str(REPO_ROOT / DEFAULT_CHECKPOINT),
        )
        model = VLJepa.from_config(section)
    else:
        model = VLJepa.load(path, device=section.device, dtype=section.dtype)
    if section.phrase_banks:
        model.set_phrase_banks(section.phrase_banks)
    return model, model_id(section)


def resolve_vlm_checkpoint(encoder) -> Path:
    """`pipeline.encoder.vlm_checkpoint` as a TokenVLM directory whose source VL-JEPA checkpoint is the one
    it was trained on, checked without torch; ModelUnavailableError saying what is wrong and what to do."""
    from perception.model.vlm_checkpoint import RETRAIN_HINT, VLMCheckpointProblem, check_vlm_checkpoint

    where = f"pipeline.encoder.vlm_checkpoint = {encoder.vlm_checkpoint}"
    path = local_or_repo(encoder.vlm_checkpoint)
    if not path.is_dir():
        raise ModelUnavailableError(f"{where}: no such directory ({RETRAIN_HINT} or point vlm_checkpoint at one)")
    try:
        check_vlm_checkpoint(path)
    except VLMCheckpointProblem as exc:
        raise ModelUnavailableError(f"{where}: {exc}") from exc
    return path


def vlm_preflight(encoder) -> list[tuple[str, str]]:
    """(config path, error) when `encoder` (pipeline.encoder) is in vlm mode and its checkpoint is unusable:
    for the launcher's checks before start, like `missing_weights`."""
    if encoder.mode != "vlm":
        return []
    try:
        resolve_vlm_checkpoint(encoder)
    except ModelUnavailableError as exc:
        return [("pipeline.encoder.vlm_checkpoint", str(exc))]
    return []


def vlm_model_id(path: Path) -> str:
    from perception.model.vlm_checkpoint import VLM_CONFIG

    digest = hashlib.sha1((path / VLM_CONFIG).read_bytes()).hexdigest()[:8]
    return f"token-vlm@{path.name}:{digest}"


def load_vlm(encoder, section: ModelSection, threads: int | None = None):
    """(TokenVLM in eval mode, model_id) from pipeline.encoder.vlm_checkpoint, on the model section's device
    and dtype. Heavy: call from a thread. ModelUnavailableError when the directory is unusable."""
    import torch

    from perception.model.vljepa import CheckpointError
    from perception.model.vlm import TokenVLM

    if threads:
        torch.set_num_threads(threads)
    path = resolve_vlm_checkpoint(encoder)
    try:
        vlm = TokenVLM.load(path, device=section.device, dtype=section.dtype)
    except CheckpointError as exc:
        raise ModelUnavailableError(f"pipeline.encoder.vlm_checkpoint = {encoder.vlm_checkpoint}: {exc}") from exc
    return vlm, vlm_model_id(path)
