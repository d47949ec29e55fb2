"""Importers: foreign VL-JEPA checkpoints -> our checkpoint directory (`VLJepa.save` layout).

Keyed by format name, so the command is `perception weights import FORMAT FILE ...`. Each importer reads
the file as data (perception/model/importers/torch_file.py), maps every tensor onto our names, checks
every name and shape against the architecture it builds, and refuses a mismatch naming the tensor.
`open-vljepa` is the first; the official release (delong-chen/VL-JEPA) has no public format yet and gets
its own entry here when it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module


class ImportRefused(ValueError):
    """The file does not match the format or the pretrained parts given; the message names what differs."""


@dataclass(frozen=True)
class ImporterInfo:
    module: str  # defines `import_checkpoint(file, out, **parts) -> dict` (a summary)
    parts: tuple[str, ...]  # the local pretrained directories it needs, as keyword names
    summary: str


IMPORTERS: dict[str, ImporterInfo] = {
    "open-vljepa": ImporterInfo(
        "perception.model.importers.open_vljepa",
        ("x_encoder", "query_lm", "text_encoder"),
        "best.pt of github.com/dion-jy/open-vljepa (V-JEPA 2 ViT-L, Llama-3.2-1B's last layers, EmbeddingGemma)",
    ),
}


def get_importer(name: str):
    """The importer module of a format name (only names in IMPORTERS; nothing is imported by user input)."""
    info = IMPORTERS.get(name)
    if info is None:
        raise ImportRefused(f"unknown checkpoint format {name!r}; known: {', '.join(sorted(IMPORTERS))}")
    return import_module(info.module)
