"""Text embeddings from the encoder, so that only the nodes that run the model load it.

The encoder serves `embed` on its RPC endpoint (beside `ask`); the events node fetches its label and watch
phrase embeddings with it once, at start, and the world node embeds each `search` query with it:

    embed  {texts: [str, ...]}  ->  {embeddings: L rows of D floats (unit S_Y, float32 values), dim: D,
                                     model_id: str}

Bounded like `ask`: at most MAX_EMBED_TEXTS texts of at most MAX_EMBED_CHARS characters each, else
RpcError "bad_request"; `fetch_text_embeddings` sends longer lists in chunks. No torch here: the encoder
hands its model to `embed_result`, which only calls the model's methods.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bus.rpc import RpcClient, RpcError, RpcTimeout

MAX_EMBED_TEXTS = 256  # per call (the default label vocabulary is 240 texts)
MAX_EMBED_CHARS = 1000  # per text: the text model truncates long before this, but tokenising costs
EMBED_BATCH = 32  # texts per text-model forward: activations stay small however many texts a call has
RETRY_S = 0.5  # between attempts while the encoder starts or is busy


def embed_texts_param(params: dict[str, Any]) -> list[str]:
    """The `texts` of an `embed` request, bounded; RpcError "bad_request" for anything else."""
    texts = params.get("texts")
    if type(texts) is not list or not texts or not all(type(t) is str and t.strip() for t in texts):
        raise RpcError("bad_request", "embed needs 'texts': a non-empty list of non-empty strings")
    if len(texts) > MAX_EMBED_TEXTS:
        raise RpcError("bad_request", f"{len(texts)} 'texts'; at most {MAX_EMBED_TEXTS} per call")
    longest = max(len(t) for t in texts)
    if longest > MAX_EMBED_CHARS:
        raise RpcError("bad_request", f"a text has {longest} chars; at most {MAX_EMBED_CHARS}")
    return texts


def embed_result(model: Any, texts: list[str], model_id: str) -> dict[str, Any]:
    """`embed`'s reply for checked `texts`: the model's unit text embeddings S_Y [L, D]. Blocking (a forward
    of the text model): the encoder runs it on its model thread. Not cached in the model: texts come from
    anyone who can call, and the model's text cache never forgets."""
    emb = np.concatenate(
        [
            model.embed_text(texts[k : k + EMBED_BATCH], cache=False).float().cpu().numpy()
            for k in range(0, len(texts), EMBED_BATCH)
        ]
    )  # [L, D]
    return {"embeddings": emb.tolist(), "dim": int(emb.shape[1]), "model_id": model_id}


def embeddings_of(result: Any, n: int) -> tuple[np.ndarray, str]:
    """(float32 [n, D], model_id) from an `embed` reply for n texts; ValueError if it is not one."""
    try:
        emb = np.asarray(result["embeddings"], dtype=np.float32)
        model_id = str(result.get("model_id", ""))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not an embed reply: {type(exc).__name__}: {exc}") from None
    if emb.ndim != 2 or emb.shape[0] != n or emb.shape[1] < 1:
        raise ValueError(f"embed reply of shape {emb.shape} for {n} texts")
    if not np.isfinite(emb).all():
        raise ValueError("embed reply has non-finite values")
    return emb, model_id


async def fetch_text_embeddings(
    client: RpcClient, texts: Sequence[str], *, wait_s: float, attempt_s: float = 10.0, log: Any = None
) -> tuple[np.ndarray, str]:
    """Unit text embeddings [len(texts), D] and the encoder's model_id, asked in chunks of MAX_EMBED_TEXTS.
    While the encoder is not up yet (no reply) or `busy`, retries for up to `wait_s` seconds in all, then
    raises TimeoutError saying so; any other error reply raises RuntimeError with the encoder's reason."""
    deadline = time.monotonic() + wait_s
    chunks, model_id = [], ""
    for k in range(0, len(texts), MAX_EMBED_TEXTS):
        chunk = list(texts[k : k + MAX_EMBED_TEXTS])
        waited = False
        while True:
            left = deadline - time.monotonic()
            try:
                result = await client.call("embed", {"texts": chunk}, timeout=max(0.1, min(attempt_s, left)), retries=0)
                break
            except RpcTimeout:
                why = "did not answer"
            except RpcError as exc:
                if exc.code != "busy":
                    raise RuntimeError(f"the encoder refused to embed {len(chunk)} text(s): {exc}") from None
                why = "stayed busy"
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no `embed` reply from the encoder at {client.endpoint} within {wait_s:g} s "
                    f"(it {why}; is the encoder node running, on the same bus and encoder.rpc?)"
                )
            if log is not None and not waited:
                log.info("waiting for the encoder to embed texts", endpoint=client.endpoint, texts=len(texts))
                waited = True
            await asyncio.sleep(min(RETRY_S, max(0.0, deadline - time.monotonic())))
        emb, model_id = embeddings_of(result, len(chunk))
        if chunks and emb.shape[1] != chunks[0].shape[1]:
            raise ValueError(f"the encoder changed D from {chunks[0].shape[1]} to {emb.shape[1]} between calls")
        chunks.append(emb)
    if not chunks:
        raise ValueError("no texts to embed")
    return np.concatenate(chunks), model_id
