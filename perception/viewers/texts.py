"""What a viewer scores each window's embedding against: label texts and watch phrases, and their S_Y.

A window's predicted embedding S^_Y lives in the same space as the text embeddings S_Y of the Y-encoder,
so its cosine to a text says how much the model "thinks" that text describes the window, also between
captions. The viewers plot two such families:

- labels: a fixed set of texts chosen by the user (`--labels`), drawn as a heat-map over time (Rerun);
- watch phrases: the configured ones (`pipeline.events.watch`) and those added at run time (the world's
  `WatchList` on watches/all), drawn as one line each with their enter/leave thresholds.

Text embeddings come from the pipeline's own text encoder: live, from the encoder node's `embed` method
(perception/nodes/text_embeddings.py, the way the events node gets its labels: a viewer loads no model);
for a recording, from the checkpoint's Y-encoder run here, offline (`CheckpointTexts`, the same
`embed_result` the encoder runs). `TextTable` caches them by text, bounded.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from bus.logs import get_logger
from perception.messages import WatchItem
from perception.nodes.watches import Watch, check_watch, runtime_watch

log = get_logger("viewers.texts")

MAX_TEXTS = 1024  # texts whose embeddings a viewer keeps (labels + watch phrases), least recently used out
MAX_WATCHES = 256  # watch phrases scored per viewer (the world's own bound is max_watches per camera scope)
MAX_LABELS = 64  # rows of the heat-map


def default_labels() -> list[str]:
    """ShapesWorld's colours, then its actions, each on a generic subject ("a red shape", "a shape grows"):
    16 rows, two of the three things a caption says. (On a recorded train-split stream the shipped
    checkpoint's windows are nearest to the true colour's row 2 in 3 times, the true action's 1 in 3; the
    shape rows were nearer chance, so they are left out.)"""
    from perception.data.vocab import ACTION_LABELS, COLOUR_NAMES

    return [f"a {c} shape" for c in COLOUR_NAMES] + [f"a shape {phrase}" for phrase in ACTION_LABELS.values()]


def parse_labels(text: str | None) -> list[str]:
    """`--labels "a red shape,a blue shape"` -> the texts (stripped, de-duplicated, in order); None or empty:
    the default set. ValueError past MAX_LABELS."""
    if not text:
        return default_labels()
    labels = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not labels:
        return default_labels()
    if len(labels) > MAX_LABELS:
        raise ValueError(f"--labels has {len(labels)} texts; at most {MAX_LABELS}")
    return labels


def unit_rows(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), float32."""
    emb = np.asarray(emb, dtype=np.float32)
    norm = np.linalg.norm(emb, axis=-1, keepdims=True)
    return emb / np.maximum(norm, 1e-12)


def cosines(embedding: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Cosine of one embedding [D] to each row of a unit table [L, D] -> [L] float32."""
    e = unit_rows(np.asarray(embedding, dtype=np.float32).reshape(-1))
    return (table @ e).astype(np.float32)


class TextTable:
    """Unit text embeddings by text, filled by whoever can embed (the encoder's RPC, a local model), bounded."""

    def __init__(self, max_texts: int = MAX_TEXTS) -> None:
        self.max_texts = max_texts
        self.dim: int | None = None
        self._rows: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()

    def missing(self, texts: Iterable[str]) -> list[str]:
        return [t for t in dict.fromkeys(texts) if t not in self._rows]

    def add(self, texts: Sequence[str], emb: np.ndarray) -> None:
        emb = unit_rows(emb)
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise ValueError(f"{len(texts)} texts but embeddings of shape {emb.shape}")
        if self.dim is not None and emb.shape[1] != self.dim:
            raise ValueError(f"text embeddings changed dimension from {self.dim} to {emb.shape[1]}")
        self.dim = int(emb.shape[1])
        for text, row in zip(texts, emb):
            self._rows[text] = row
            self._rows.move_to_end(text)
        while len(self._rows) > self.max_texts:
            self._rows.popitem(last=False)

    def get(self, text: str) -> np.ndarray | None:
        row = self._rows.get(text)
        if row is not None:
            self._rows.move_to_end(text)
        return row

    def matrix(self, texts: Sequence[str]) -> np.ndarray | None:
        """[len(texts), D] when every text has an embedding, else None."""
        rows = [self.get(t) for t in texts]
        if not rows or any(r is None for r in rows):
            return None
        return np.stack(rows)  # type: ignore[arg-type]


class WatchSet:
    """The watch phrases a viewer scores: the configured ones until the world's first `WatchList`, then the
    world's list (configured + runtime) as it changes. Items that do not pass the world's own checks are
    ignored and counted; at most MAX_WATCHES are kept."""

    def __init__(self, configured: Iterable[Any] = ()) -> None:
        self.watches: list[Watch] = [Watch.configured(w) for w in configured][:MAX_WATCHES]
        self.rejected = 0

    def update(self, items: Iterable[WatchItem]) -> bool:
        """Take the world's list; True if the set changed."""
        watches: list[Watch] = []
        for item in items:
            if len(watches) >= MAX_WATCHES:
                self.rejected += 1
                continue
            try:
                if item.source == "config":
                    phrase, camera, enter, leave = check_watch(item.phrase, item.camera, item.enter, item.leave)
                    watches.append(Watch(item.id, phrase, enter, leave, camera, "config"))
                else:
                    watches.append(runtime_watch(item))
            except ValueError:
                self.rejected += 1
        changed = watches != self.watches
        self.watches = watches
        return changed

    @property
    def phrases(self) -> list[str]:
        return list(dict.fromkeys(w.phrase for w in self.watches))

    def scores(self, cam: str, embedding: np.ndarray, texts: TextTable) -> list[tuple[Watch, float]]:
        """(watch, cosine) for each watch on `cam` whose phrase has an embedding of the right dimension."""
        out = []
        e = unit_rows(np.asarray(embedding, dtype=np.float32).reshape(-1))
        for w in self.watches:
            if not w.applies_to(cam):
                continue
            row = texts.get(w.phrase)
            if row is not None and row.shape[0] == e.shape[0]:
                out.append((w, float(row @ e)))
        return out


async def fetch_from_encoder(config: Any, texts: TextTable, wanted: Sequence[str], *, wait_s: float) -> int:
    """Embed the `wanted` texts `texts` lacks with the encoder node's `embed` (live viewers); returns how many
    were added. Raises what `fetch_text_embeddings` raises (TimeoutError while no encoder answers)."""
    from bus.rpc import RpcClient
    from perception.nodes.text_embeddings import fetch_text_embeddings
    from perception.nodes.workers import encoder_endpoints

    missing = texts.missing(wanted)
    if not missing:
        return 0
    client = RpcClient(config.bus, endpoint=encoder_endpoints(config))
    try:
        emb, _ = await fetch_text_embeddings(client, missing, wait_s=wait_s, attempt_s=min(10.0, wait_s))
    finally:
        client.close()
    texts.add(missing, emb)
    return len(missing)


class CheckpointTexts:
    """The checkpoint's Y-encoder, run here (for recordings, with no pipeline up): imports torch."""

    def __init__(self, model_section: Any, checkpoint: str | None = None) -> None:
        from perception.nodes.models import load_model

        section = model_section.model_copy(update={"checkpoint": checkpoint}) if checkpoint else model_section
        self.model, self.model_id = load_model(section)
        log.info("text encoder loaded for offline scoring", model=self.model_id)

    def fill(self, texts: TextTable, wanted: Sequence[str]) -> int:
        from perception.nodes.text_embeddings import embed_result

        missing = texts.missing(wanted)
        if missing:
            result = embed_result(self.model, missing, self.model_id)
            texts.add(missing, np.asarray(result["embeddings"], dtype=np.float32))
        return len(missing)
