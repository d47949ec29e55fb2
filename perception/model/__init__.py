"""VL-JEPA: X-encoder, predictor, Y-encoder, Y-decoder. Knows nothing of ZeroMQ.

`from perception.model import VLJepa` is the entry point; see perception/model/vljepa.py.
"""

from perception.model.config import ModelSection, VLJepaConfig, preset_config
from perception.model.loss import LossOutput, info_nce
from perception.model.vljepa import CheckpointError, VLJepa, VLJepaOutput
from perception.model.weights import MissingWeightsError

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
