"""Model section of the YAML config. Placeholder: replaced by the model work."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ModelSection(BaseModel):
    model_config = ConfigDict(extra="allow")

    preset: str = "tiny"
    checkpoint: str | None = None
