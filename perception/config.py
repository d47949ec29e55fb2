"""The one YAML config every command takes, validated by pydantic at the boundary.

Each section is owned by the package it configures; this module only assembles them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bus.config import BusConfig, check_endpoint
from perception.model.config import ModelSection
from perception.nodes.config import PipelineConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "tiny-cpu.yaml"


M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate; the message lists every problem."""


class AppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "tiny-cpu"
    bus: BusConfig = Field(default_factory=BusConfig)
    model: ModelSection = Field(default_factory=ModelSection)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)

    @model_validator(mode="after")
    def _cross_section_rules(self) -> AppConfig:
        """Rules that need two sections: the encoder's RPC endpoint follows the bus endpoint rule (it
        depends on bus.curve), and the configured cameras must fit the encoder's camera bound."""
        enc = self.pipeline.encoder
        if enc.rpc:
            check_endpoint(enc.rpc, self.bus.curve.enabled, "pipeline.encoder.rpc")
        if len(self.pipeline.cameras) > enc.max_cameras:
            raise ValueError(
                f"pipeline.cameras has {len(self.pipeline.cameras)} cameras but "
                f"pipeline.encoder.max_cameras is {enc.max_cameras}; raise it"
            )
        return self


def read_yaml_mapping(path: Path, what: str = "config file") -> dict:
    """The YAML file's top-level mapping, or a ConfigError saying what is wrong with the file."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return raw


def validate_config(model: type[M], raw: dict, path: Path, what: str = "config file") -> M:
    """Validate `raw` as `model`; a ConfigError lists every error with its dotted path."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{what} {path} is invalid ({exc.error_count()} errors):"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "<root>"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc


def load_config(path: str | Path | None = None) -> AppConfig:
    """Load and validate; every error is reported with its dotted path, before anything starts."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.exists() and not path.is_absolute() and (CONFIG_DIR / path).exists():
        path = CONFIG_DIR / path
    return validate_config(AppConfig, read_yaml_mapping(path), path)
