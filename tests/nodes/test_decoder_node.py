"""The decoder node in-process over a real bus: hostile DecodeRequests never cost the good ones."""

from __future__ import annotations

import time

import numpy as np
import pytest
from structlog.testing import capture_logs

from perception.messages import Caption, DecodeRequest
from perception.nodes.decoder import DecoderNode

from .harness import bus_up, collect, node_config, running


def request(segment_id: int, embedding: np.ndarray, cam: str = "cam0") -> DecodeRequest:
    now = time.time_ns()
    return DecodeRequest(
        cam=cam, segment_id=segment_id, start_ns=now - 10**9, end_ns=now, t_capture_ns=now, embedding=embedding
    )


def good(dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


async def test_badly_shaped_requests_are_rejected_and_the_rest_of_the_burst_is_captioned(
    runtime_dir, random_checkpoint
):
    config = node_config(runtime_dir, random_checkpoint, decoder={"max_batch": 8})
    async with running(DecoderNode, config, ["captions/"]) as (node, pub, sub):
        dim = node.dim
        burst = [
            request(1, good(dim, 1)),
            request(2, np.zeros(dim + 1, np.float32)),  # wrong length
            request(3, good(dim, 3)),
            request(4, np.zeros((2, dim), np.float32)),  # wrong rank
            request(5, np.arange(dim, dtype=np.int64)),  # not float
            request(6, np.full(dim, np.nan, np.float32)),  # not finite
            request(7, good(dim, 7).astype(np.float64)),  # float64 is fine: decoded as float32
        ]
        for req in burst:
            pub.publish_nowait("decode/cam0", req)
        captions = await collect(sub, "captions/", 3, timeout=60)
        assert sorted(c.msg.segment_id for c in captions) == [1, 3, 7]
        assert all(isinstance(c.msg, Caption) and isinstance(c.msg.text, str) for c in captions)
        assert node.counters["rejected"] == 4 and node.counters["errors.request"] == 4
        assert node.counters["decodes"] == 3


async def test_a_batch_that_fails_to_decode_is_retried_one_by_one(runtime_dir, random_checkpoint):
    """A request that reaches the batch anyway (here put straight into the queue, past the check) makes
    the batch's decode raise: its batch-mates are decoded one at a time and only it is lost."""
    config = node_config(runtime_dir, random_checkpoint, decoder={"max_batch": 8})
    async with running(DecoderNode, config, ["captions/"]) as (node, _pub, sub):
        dim = node.dim
        node.pending.extend(
            [request(1, good(dim, 1)), request(2, np.zeros(dim + 3, np.float32)), request(3, good(dim, 3))]
        )
        node.work.set()
        captions = await collect(sub, "captions/", 2, timeout=60)
        assert sorted(c.msg.segment_id for c in captions) == [1, 3]
        assert node.counters["batches_split"] == 1 and node.counters["errors.decode"] == 1
        assert not node.pending


async def test_a_failed_setup_is_one_error_not_a_second_one_in_teardown(runtime_dir, tmp_path):
    """A checkpoint that cannot be loaded fails setup; teardown then has nothing to decode and says nothing
    (it used to add `'DecoderNode' object has no attribute 'pending'`)."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    config = node_config(runtime_dir, broken)
    async with bus_up(config, ["captions/"]):
        with capture_logs() as logs:
            with pytest.raises(Exception) as err:
                await DecoderNode(config).run()
    assert "broken" in str(err.value) or "json" in str(err.value).lower()
    assert not [x for x in logs if x["event"] == "teardown failed"], logs


async def test_a_caption_that_repeats_the_previous_one_is_marked_and_counted(runtime_dir, random_checkpoint):
    """Issue 34: a default run printed "the blue triangle is moving to the left" three times in a row. A
    caption whose text is the camera's previous one is now marked `repeat` (a continuation, not news) and
    counted on stats/decoder; per camera, so another camera's first caption is news."""
    config = node_config(runtime_dir, random_checkpoint, decoder={"max_batch": 1})
    async with running(DecoderNode, config, ["captions/"]) as (node, pub, sub):
        dim = node.dim
        same = good(dim, 1)
        for segment_id, cam, emb in [(1, "cam0", same), (2, "cam0", same), (3, "cam0", same), (1, "cam1", same)]:
            pub.publish_nowait(f"decode/{cam}", request(segment_id, emb, cam=cam))
        captions = sorted((c.msg for c in await collect(sub, "captions/", 4, timeout=60)), key=lambda c: c.cam)
    by = {(c.cam, c.segment_id): c for c in captions}
    assert len({c.text for c in captions}) == 1  # one embedding, one text
    assert [by["cam0", i].repeat for i in (1, 2, 3)] == [False, True, True]
    assert by["cam1", 1].repeat is False
    assert node.counters["captions_repeated"] == 2
