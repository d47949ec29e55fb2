"""The base of every `pipeline:` config section: unknown keys are errors, and a key that was renamed or
replaced fails with a hint at its own dotted path instead of pydantic's bare "Extra inputs are not
permitted" (perception/nodes/config.py, perception/nodes/sources.py)."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ModelWrapValidatorHandler, ValidationError, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"  # a camera name becomes part of topic names
# bounds shared by every section (the rest are in perception/nodes/config.py): a day is the longest any
# timeout, delay or interval of a running pipeline can mean; cameras of one pipeline
MAX_SECONDS = 86_400
MAX_CAMERAS = 4096


class Section(BaseModel):
    # no inf or nan: `timeout: .inf` is no bound at all, and nan compares false with everything
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    # old key -> what became of it: a config that still uses one fails with that hint at the key's own
    # path, instead of pydantic's bare "Extra inputs are not permitted"
    renamed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="wrap")
    @classmethod
    def _renamed_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """Every error of the section as pydantic reports it, an old key's with its hint instead."""
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            if not any(_is_renamed(e, cls.renamed) for e in errors):
                raise
            hinted = [_renamed_error(e, cls.renamed) if _is_renamed(e, cls.renamed) else e for e in errors]
            raise ValidationError.from_exception_data(exc.title, hinted) from None


def _is_renamed(err: ErrorDetails, renamed: dict[str, str]) -> bool:
    return err["type"] == "extra_forbidden" and err["loc"][-1] in renamed


def _renamed_error(err: ErrorDetails, renamed: dict[str, str]) -> InitErrorDetails:
    hint = PydanticCustomError("renamed", "{hint}", {"hint": renamed[err["loc"][-1]]})
    return InitErrorDetails(type=hint, loc=err["loc"], input=err["input"])


def relocated(err: ErrorDetails, loc: tuple[int | str, ...]) -> InitErrorDetails:
    """`err` as it was (type, message, input) at another `loc`, to re-raise in a ValidationError."""
    same = PydanticCustomError(err["type"], "{msg}", {**err.get("ctx", {}), "msg": err["msg"]})
    return InitErrorDetails(type=same, loc=loc, input=err["input"])
