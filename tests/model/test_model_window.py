"""The encoder's window pass: traced per input shape, identical to the eager pass, eager when tracing fails."""

from __future__ import annotations

import torch

from perception.model import VLJepa
from perception.model.window import WindowRunner


def _clips(model: VLJepa, batch: int, seed: int) -> torch.Tensor:
    xc = model.cfg.x_encoder
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, xc.frames, 3, xc.image_size, xc.image_size), dtype=torch.uint8, generator=g)


def test_traced_pass_matches_the_model_api_for_each_batch_size(small_checkpoint):
    model = VLJepa.load(small_checkpoint, device="cpu")
    runner = WindowRunner(model, query="what is happening?")
    for batch, seed in ((1, 0), (2, 1), (1, 2), (2, 3)):  # second time per shape: the traced graph runs
        clips = _clips(model, batch, seed)
        s_v, s_hat = runner(clips)
        want_v = model.encode_video(clips)
        want = model.predict(want_v, "what is happening?")
        assert s_v.shape == want_v.shape and s_hat.shape == (batch, model.cfg.embed_dim)
        torch.testing.assert_close(s_v, want_v, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(s_hat, want, atol=1e-4, rtol=1e-4)
    assert set(runner.traced) == {tuple(_clips(model, b, 0).shape) for b in (1, 2)}
    assert all(fn is not None for fn in runner.traced.values())  # both shapes really run traced
    # the query is baked into the trace: another query gives another answer
    other = WindowRunner(model, query="what colour is the shape?")
    clips = _clips(model, 1, 0)
    other(clips)
    assert not torch.allclose(other(clips)[1], runner(clips)[1])


def test_a_trace_that_disagrees_with_eager_is_dropped_for_eager(small_checkpoint):
    model = VLJepa.load(small_checkpoint, device="cpu")
    runner = WindowRunner(model, atol=-1.0)  # no trace can pass a negative tolerance
    clips = _clips(model, 1, 0)
    first, again = runner(clips), runner(clips)
    assert runner.traced == {tuple(clips.shape): None}
    torch.testing.assert_close(again[1], model.predict(model.encode_video(clips), ""))
    torch.testing.assert_close(first[1], again[1])
    eager = WindowRunner(model, jit=False)
    eager(clips)
    assert eager.traced == {}
