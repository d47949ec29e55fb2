"""The one YAML config every command takes, validated by pydantic at the boundary.

Each section is owned by the package it configures; this module only assembles them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bus.config import BusConfig, check_endpoint
from perception.model.config import ModelSection, check_data_sources
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


# A config is a hand-written file of a few KiB (configs/*.yaml: at most 5 KiB); beyond this it is not one.
MAX_CONFIG_BYTES = 1024 * 1024
# a config stored in a recording's `session` metadata (JSON; a real one is 3-6 KiB)
MAX_STORED_CONFIG_BYTES = 1024 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without aliases: `*name` expands to the anchored node, so 600 bytes of nested aliases
    (the "billion laughs") become billions of list items in memory. A config never needs them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed in a config", event.start_mark
            )
        return super().compose_node(parent, index)


def read_yaml_mapping(path: Path, what: str = "config file") -> dict:
    """The YAML file's top-level mapping, or a one-line ConfigError saying what is wrong with the file."""
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found: {path}") from exc
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read: {exc.strerror or exc}") from exc
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_CONFIG_BYTES} bytes (the limit for a config)")
    try:
        raw = yaml.load(text, Loader=_NoAliasLoader) or {}  # a SafeLoader, without aliases
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    except (RecursionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {type(exc).__name__}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return raw


def validate_config(model: type[M], raw: dict, path: Path | str, what: str = "config file") -> M:
    """Validate `raw` as `model`; a ConfigError names every error with its dotted path (one line for one)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()]
        if len(errors) == 1:
            raise ConfigError(f"{what} {path} is invalid: {errors[0]}") from exc
        raise ConfigError(
            "\n".join([f"{what} {path} is invalid ({len(errors)} errors):", *(f"  {e}" for e in errors)])
        ) from exc
    except RecursionError as exc:
        raise ConfigError(f"{what} {path} is invalid: nested too deeply") from exc


def stored_config(raw: object, origin: str) -> AppConfig:
    """A config read from a recording (`origin`) rather than from the user: data. Validated like a user's
    file, and its model may name no package outside PACKAGED_SOURCES; a one-line ConfigError if not."""
    if isinstance(raw, str | bytes):
        if len(raw) > MAX_STORED_CONFIG_BYTES:
            raise ConfigError(f"the config stored in {origin} is larger than {MAX_STORED_CONFIG_BYTES} bytes")
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"the config stored in {origin} is not valid JSON ({type(exc).__name__})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"the config stored in {origin} must be a mapping")
    config = validate_config(AppConfig, raw, origin, "the config stored in")
    try:
        check_data_sources(config.model.to_model_config(), f"the config stored in {origin}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return config


def load_config(path: str | Path | None = None) -> AppConfig:
    """Load and validate; every error is reported with its dotted path, before anything starts."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.exists() and not path.is_absolute() and (CONFIG_DIR / path).exists():
        path = CONFIG_DIR / path
    return validate_config(AppConfig, read_yaml_mapping(path), path)
