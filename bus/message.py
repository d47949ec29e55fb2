"""Message base class, the type registry, and the few messages the bus itself needs.

Every message on the bus is a pydantic v2 model with a registered type name and a major schema version.
`perception` defines its own messages (Frame, Embedding, Event, Caption, ...) with `@register` in its own
module; the codec looks types up by name. Top-level `np.ndarray` fields travel as raw buffers.
"""

from __future__ import annotations

import types
import typing
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

_REGISTRY: dict[str, type[Message]] = {}


class Message(BaseModel):
    """Base of every bus message. Subclasses set TYPE (unique name) and VERSION (major schema version).

    Bump VERSION on an incompatible change: receivers reject a newer major version instead of guessing.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    # names of the top-level fields annotated as np.ndarray; filled by `register`
    ARRAY_FIELDS: ClassVar[frozenset[str]] = frozenset()
    FIELD_NAMES: ClassVar[frozenset[str]] = frozenset()  # cached: pydantic's model_fields is slow to read

    def __str__(self) -> str:
        parts = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            parts.append(f"{name}={summarise(value)}")
        return f"{self.TYPE}({', '.join(parts)})"


def summarise(value: Any, depth: int = 0) -> Any:
    """Arrays as dtype/shape, long strings cut, deep nesting cut: for log lines and `perception echo`."""
    if depth >= 8 and isinstance(value, (BaseModel, dict, list, tuple)):
        return f"<{type(value).__name__} nested deeper than 8>"
    if isinstance(value, np.ndarray):
        return f"<ndarray {value.dtype.name} {tuple(value.shape)}>"
    if isinstance(value, str) and len(value) > 80:
        return value[:77] + "..."
    if isinstance(value, BaseModel):
        return {k: summarise(getattr(value, k), depth + 1) for k in type(value).model_fields}
    if isinstance(value, dict):
        if len(value) > 16:
            return f"<dict of {len(value)}>"
        return {k: summarise(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) > 16:
            return f"<{type(value).__name__} of {len(value)}>"
        return [summarise(v, depth + 1) for v in value]
    return value


def _is_ndarray_annotation(annotation: Any) -> bool:
    if annotation is np.ndarray:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _is_ndarray_annotation(args[0])
    return False


def register(cls: type[Message]) -> type[Message]:
    """Class decorator: make `cls` decodable by its TYPE name. Names are unique across the project."""
    if not cls.TYPE:
        raise TypeError(f"{cls.__name__} must set TYPE before it can be registered")
    existing = _REGISTRY.get(cls.TYPE)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise TypeError(f"message type {cls.TYPE!r} is already registered by {existing.__qualname__}")
    cls.ARRAY_FIELDS = frozenset(
        name for name, field in cls.model_fields.items() if _is_ndarray_annotation(field.annotation)
    )
    cls.FIELD_NAMES = frozenset(cls.model_fields)
    _REGISTRY[cls.TYPE] = cls
    return cls


def lookup(type_name: str) -> type[Message] | None:
    return _REGISTRY.get(type_name)


def registered_types() -> dict[str, type[Message]]:
    return dict(_REGISTRY)


# -- bus-level messages ------------------------------------------------------------------------------


@register
class Stats(Message):
    """A node's counters, published on stats/<node> once a second."""

    TYPE: ClassVar[str] = "Stats"
    node: str
    counters: dict[str, float] = Field(default_factory=dict)


@register
class BusReady(Message):
    """The proxy's answer to a subscriber's readiness probe (topic `_bus/ready/<nonce>`): every earlier
    subscription of that connection is in force. `denied` lists the prefixes its key may not subscribe to."""

    TYPE: ClassVar[str] = "BusReady"
    denied: list[str] = Field(default_factory=list)


@register
class Heartbeat(Message):
    """Liveness: a node that stops sending these is gone."""

    TYPE: ClassVar[str] = "Heartbeat"
    node: str
    uptime_s: float = 0.0
