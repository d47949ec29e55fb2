"""VL-JEPA: X-encoder, predictor, Y-encoder, Y-decoder. Knows nothing of ZeroMQ.

`from perception.model import VLJepa` is the entry point; see perception/model/vljepa.py.
The torch-heavy names load on first use, so reading a config (`perception.model.config`, imported by
every command for `ModelSection`) does not import torch and transformers.
"""

from importlib import import_module

from perception.model.config import ModelSection, VLJepaConfig, preset_config

_LAZY = {
    "CheckpointError": "perception.model.vljepa",
    "VLJepa": "perception.model.vljepa",
    "VLJepaOutput": "perception.model.vljepa",
    "LossOutput": "perception.model.loss",
    "info_nce": "perception.model.loss",
    "MissingWeightsError": "perception.model.weights",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'perception.model' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = [
    "CheckpointError",
    "LossOutput",
    "MissingWeightsError",
    "ModelSection",
    "VLJepa",
    "VLJepaConfig",
    "VLJepaOutput",
    "info_nce",
    "preset_config",
]
