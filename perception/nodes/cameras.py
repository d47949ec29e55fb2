"""Every camera kind, and the `pipeline.cameras` union validated from them.

The built-in kinds (synthetic, file, opencv) are defined in perception/nodes/sources.py and the ROS 2 ones
(rosbag, ros2) beside the rest of the bridge in perception/ros2/cameras.py; both register with
`camera_kind`. This module imports both before it builds the union, so the sources module never reaches up
into the bridge that builds on it.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import InitErrorDetails, PydanticCustomError

import perception.ros2.cameras  # noqa: F401  registers rosbag and ros2 before the union is built
from perception.nodes.sections import relocated
from perception.nodes.sources import CAMERA_KINDS, CameraConfig, source_shorthand


def _yaml_flow(fields: dict[str, Any]) -> str:
    """`{type: file, path: clip.mp4}`: fields as a YAML flow mapping, strings quoted only where needed."""
    import json

    import yaml

    def scalar(v: Any) -> str:
        plain = isinstance(v, str) and not any(c in v for c in ":#,[]{}&*!|>'\"%@`") and v.strip() == v
        return v if plain and yaml.safe_load(v) == v else json.dumps(v)

    return "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in fields.items()) + "}"


def _validate_camera(data: Any, handler: ValidatorFunctionWrapHandler) -> CameraConfig:
    """One camera: no `type` is synthetic; the old `source:` key fails at the camera's path with the typed
    form to write (and what else of the camera would then be wrong); errors carry the camera's own path
    (pydantic's would name the kind: `cameras.0.file.path`)."""
    if not isinstance(data, dict):
        return _at_camera(handler, data)
    if "source" in data:
        new = source_shorthand(str(data["source"]))
        replaced = PydanticCustomError(
            "source_replaced", "'source' is replaced by typed cameras; write {new}", {"new": _yaml_flow(new)}
        )
        errors = [InitErrorDetails(type=replaced, loc=(), input=data)]
        try:
            _at_camera(handler, {**{k: v for k, v in data.items() if k not in ("source", "type")}, **new})
        except ValidationError as exc:
            errors += [relocated(e, e["loc"]) for e in exc.errors()]
        raise ValidationError.from_exception_data("CameraConfig", errors)
    tag = data.get("type", "synthetic")
    if not isinstance(tag, str) or tag not in CAMERA_KINDS:
        raise PydanticCustomError(
            "camera_type",
            "unknown camera type {tag}; valid types: {types}",
            {"tag": repr(tag), "types": ", ".join(CAMERA_KINDS)},
        )
    return _at_camera(handler, {**data, "type": tag})


def _at_camera(handler: ValidatorFunctionWrapHandler, data: Any) -> CameraConfig:
    """`handler(data)`, its errors at the camera's path rather than under the kind's name."""
    try:
        return handler(data)
    except ValidationError as exc:
        errors = exc.errors()
        tagged = [bool(e["loc"]) and e["loc"][0] in CAMERA_KINDS for e in errors]
        if not any(tagged):
            raise
        raise ValidationError.from_exception_data(
            exc.title, [relocated(e, e["loc"][1:] if t else e["loc"]) for e, t in zip(errors, tagged, strict=True)]
        ) from None


def _hint_other_kinds_keys() -> None:
    """A key of another kind (`size` on a file camera, as every camera had before types) fails with the
    kinds that have it, through each kind's `renamed` hints."""
    common = set(CameraConfig.model_fields)
    for tag, kind in CAMERA_KINDS.items():
        owners: dict[str, list[str]] = {}
        for other, okind in CAMERA_KINDS.items():
            for key in set(okind.config.model_fields) - common - set(kind.config.model_fields):
                owners.setdefault(key, []).append(other)
        hints = {
            k: f"only cameras of type {' or '.join(v)} have {k!r}; this one is type {tag}" for k, v in owners.items()
        }
        kind.config.renamed = {**hints, **kind.config.renamed}


_hint_other_kinds_keys()

# `pipeline.cameras[]`: one of the kinds above, chosen by `type:`
AnyCameraConfig = Annotated[
    Union[tuple(kind.config for kind in CAMERA_KINDS.values())],  # noqa: UP007  built from the registry
    Field(discriminator="type"),
    WrapValidator(_validate_camera),
]
