"""A Foxglove-viewable copy of a recording: every channel re-encoded as JSON with a jsonschema schema.

Foxglove Studio reads `json` channels with a `jsonschema` schema. Per message the JSON is
`{"seq", "src", "t", "type", "v", "body"}` where body is the bus body with arrays replaced:
- every array becomes a summary `{"dtype", "shape", "min", "max", "mean"}` (so panels can plot them);
- 1-d numeric arrays of at most `max_values` elements (embeddings, scores) also carry `"values": [...]`;
- uint8 images (H, W, 3) or (H, W) additionally go to a sibling channel `<topic>/image` as
  `foxglove.RawImage` (encoding rgb8 / mono8), whose `data` is base64: Foxglove's JSON encoding requires
  bytes fields as base64 (`contentEncoding: base64` in the schema). That is the only place base64 is used.
The schema of each channel is inferred from its first message's JSON (types of the values present).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
from mcap.writer import CompressionType, Writer

from bus.codec import DecodeError, array_from_ref
from bus.logs import get_logger
from bus.mcapfile import RecordingError, iter_messages, read_header

log = get_logger("bus.mcap_export")

RAW_IMAGE_SCHEMA = {
    "title": "foxglove.RawImage",
    "type": "object",
    "properties": {
        "timestamp": {"type": "object", "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}},
        "frame_id": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "encoding": {"type": "string"},
        "step": {"type": "integer"},
        "data": {"type": "string", "contentEncoding": "base64"},
    },
}


def _array(ref: dict, buffers: list, max_values: int) -> tuple[dict, np.ndarray]:
    arr = array_from_ref(ref, buffers)  # checked as the bus checks it: a forged nd/dtype/shape is a DecodeError
    out: dict[str, Any] = {"dtype": ref["dtype"], "shape": list(ref["shape"])}
    if arr.size and arr.dtype.kind in "biuf":
        out.update(min=float(arr.min()), max=float(arr.max()), mean=float(arr.mean(dtype=np.float64)))
        if arr.ndim == 1 and arr.size <= max_values:
            out["values"] = arr.astype(np.float64).tolist()
    return out, arr


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"nd", "dtype", "shape"}


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes": len(value)}
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def infer_schema(value: Any, title: str | None = None) -> dict:
    """A jsonschema describing `value`'s shape (enough for Foxglove's message-path autocompletion)."""
    if isinstance(value, bool):
        schema: dict[str, Any] = {"type": "boolean"}
    elif isinstance(value, int):
        schema = {"type": "integer"}
    elif isinstance(value, float):
        schema = {"type": "number"}
    elif isinstance(value, str):
        schema = {"type": "string"}
    elif isinstance(value, dict):
        schema = {"type": "object", "properties": {k: infer_schema(v) for k, v in value.items()}}
    elif isinstance(value, list):
        schema = {"type": "array", "items": infer_schema(value[0]) if value else {}}
    else:
        schema = {}
    if title:
        schema["title"] = title
    return schema


def export_json(src: str | Path, dst: str | Path, *, max_values: int = 4096) -> dict[str, int]:
    """Write `dst` (json + jsonschema channels) from the complete recording `src`; returns messages per topic."""
    if Path(src).resolve() == Path(dst).resolve():
        raise RecordingError("export writes a new file: OUT must differ from IN")
    counts: dict[str, int] = {}
    with open(dst, "wb") as f:
        writer = Writer(f, compression=CompressionType.ZSTD)
        writer.start(profile="", library="vljepa-perception export-json")
        channels: dict[str, int] = {}

        def channel_for(topic: str, title: str, sample: dict, schema: dict | None = None) -> int:
            cid = channels.get(topic)
            if cid is None:
                schema = schema or infer_schema(sample, title)
                sid = writer.register_schema(title, "jsonschema", json.dumps(schema).encode())
                cid = writer.register_channel(topic, "json", sid, {"source_type": title})
                channels[topic] = cid
            return cid

        for msg in iter_messages(src):
            header = read_header(msg.header)
            body = dict(header.get("body") or {})
            images = []
            for key, value in list(body.items()):
                if _is_ref(value):
                    try:
                        body[key], arr = _array(value, msg.buffers, max_values)
                    except DecodeError as exc:
                        raise RecordingError(f"{src}: {msg.topic[:80]} seq {msg.seq}: {key}: {exc}") from None
                    if arr.dtype == np.uint8 and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
                        images.append((key, arr))
            record = _json_safe({k: header.get(k) for k in ("type", "v", "seq", "src", "t")} | {"body": body})
            cid = channel_for(msg.topic, msg.type or "unknown", record)
            writer.add_message(
                cid,
                log_time=msg.log_time,
                publish_time=msg.publish_time,
                sequence=msg.seq,
                data=json.dumps(record).encode(),
            )
            counts[msg.topic] = counts.get(msg.topic, 0) + 1
            for key, arr in images:
                h, w = arr.shape[:2]
                rgb = arr.ndim == 3
                image = {
                    "timestamp": {"sec": msg.publish_time // 10**9, "nsec": msg.publish_time % 10**9},
                    "frame_id": msg.topic,
                    "width": int(w),
                    "height": int(h),
                    "encoding": "rgb8" if rgb else "mono8",
                    "step": int(w * (3 if rgb else 1)),
                    "data": base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode(),
                }
                topic = f"{msg.topic}/image" if len(images) == 1 else f"{msg.topic}/{key}"
                icid = channel_for(topic, "foxglove.RawImage", image, RAW_IMAGE_SCHEMA)
                writer.add_message(
                    icid,
                    log_time=msg.log_time,
                    publish_time=msg.publish_time,
                    sequence=msg.seq,
                    data=json.dumps(image).encode(),
                )
                counts[topic] = counts.get(topic, 0) + 1
        writer.finish()
    log.info("exported json copy", src=str(src), dst=str(dst), topics=len(counts))
    return counts
