"""Text embeddings from the encoder's `embed`: its bounds, its reply, and the client the events and world
nodes use (chunks, waiting for an encoder that starts late, a clear error when none answers)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from bus.rpc import RpcClient, RpcError
from perception.nodes.events import EventsNode
from perception.nodes.text_embeddings import (
    MAX_EMBED_CHARS,
    MAX_EMBED_TEXTS,
    embed_texts_param,
    embeddings_of,
    fetch_text_embeddings,
)
from perception.nodes.workers import encoder_endpoint

from .harness import embed, embed_server, node_config, running


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({}, "non-empty list"),
        ({"texts": "a red circle"}, "non-empty list"),
        ({"texts": []}, "non-empty list"),
        ({"texts": ["ok", ""]}, "non-empty"),
        ({"texts": ["ok", 3]}, "non-empty"),
        ({"texts": [" "]}, "non-empty"),
        ({"texts": ["t"] * (MAX_EMBED_TEXTS + 1)}, f"at most {MAX_EMBED_TEXTS}"),
        ({"texts": ["ok", "x" * (MAX_EMBED_CHARS + 1)]}, f"at most {MAX_EMBED_CHARS}"),
    ],
)
def test_embed_params_are_bounded(params, why):
    with pytest.raises(RpcError) as err:
        embed_texts_param(params)
    assert err.value.code == "bad_request" and why in err.value.message


def test_the_limits_themselves_are_fine():
    assert len(embed_texts_param({"texts": ["x" * MAX_EMBED_CHARS] * MAX_EMBED_TEXTS})) == MAX_EMBED_TEXTS


@pytest.mark.parametrize(
    "result",
    [
        None,
        [],
        {"embeddings": "x"},
        {"embeddings": [[1.0, 2.0]]},
        {"embeddings": [[1.0], [2.0, 3.0]]},
        {"embeddings": [[float("nan")], [1.0]]},
    ],
)
def test_a_reply_that_is_not_n_finite_rows_is_refused(result):
    with pytest.raises(ValueError):
        embeddings_of(result, 2)


def test_the_reply_is_the_models_unit_text_embeddings(text_model):
    texts = ["the red circle moves left", "the blue square grows"]
    emb = embed(text_model, texts)
    assert emb.shape == (2, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, text_model.embed_text(texts).numpy(), atol=1e-5)


async def test_long_lists_go_in_chunks_to_an_encoder_that_starts_late(runtime_dir, random_checkpoint, text_model):
    config = node_config(runtime_dir, random_checkpoint)
    texts = [f"text number {i}" for i in range(MAX_EMBED_TEXTS + 3)]
    client = RpcClient(config.bus, endpoint=encoder_endpoint(config))
    try:
        fetch = asyncio.create_task(fetch_text_embeddings(client, texts, wait_s=60, attempt_s=2))
        await asyncio.sleep(1.0)  # nobody serves yet: the client waits
        assert not fetch.done()
        sizes: list[int] = []
        async with embed_server(config, text_model, sizes):
            emb, model_id = await asyncio.wait_for(fetch, 60)
        # MAX_EMBED_TEXTS, then 3 (a request queued before the server bound may arrive beside its retry)
        assert sorted(set(sizes)) == [3, MAX_EMBED_TEXTS]
    finally:
        client.close()
    assert emb.shape == (len(texts), 32) and model_id == "test"
    np.testing.assert_allclose(emb[-3:], embed(text_model, texts[-3:]), atol=1e-5)


async def test_no_encoder_is_a_clear_error_after_the_wait(runtime_dir, random_checkpoint):
    config = node_config(runtime_dir, random_checkpoint)
    client = RpcClient(config.bus, endpoint=encoder_endpoint(config))
    t0 = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match="no `embed` reply from the encoder at .* within 1 s"):
            await fetch_text_embeddings(client, ["a"], wait_s=1.0, attempt_s=0.3)
    finally:
        client.close()
    assert time.monotonic() - t0 < 5


async def test_a_refusal_other_than_busy_is_not_retried(runtime_dir, random_checkpoint, text_model):
    config = node_config(runtime_dir, random_checkpoint)
    async with embed_server(config, text_model):
        client = RpcClient(config.bus, endpoint=encoder_endpoint(config))
        try:
            with pytest.raises(RuntimeError, match="at most 1000"):
                await fetch_text_embeddings(client, ["x" * 1001], wait_s=60)
        finally:
            client.close()


async def test_the_events_node_fails_to_start_without_an_encoder(runtime_dir, random_checkpoint):
    config = node_config(
        runtime_dir,
        random_checkpoint,
        supervisor={"startup_timeout_s": 1.0, "backoff_initial_s": 0.2, "backoff_max_s": 2.0},
    )
    with pytest.raises(RuntimeError, match="no label embeddings: no `embed` reply from the encoder"):
        async with running(EventsNode, config, []):
            pass
