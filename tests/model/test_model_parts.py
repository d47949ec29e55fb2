"""Shapes through every part, and the input handling of the X-encoder."""

from __future__ import annotations

import pytest
import torch

from perception.model.y_encoder import TokenBatch


def test_shapes_through_every_part(model, clips):
    cfg = model.cfg
    B = clips.shape[0]
    N = cfg.x_encoder.num_tokens  # (4/2) * (32/8)^2 = 32
    assert N == 32
    s_v = model.encode_video(clips)
    assert s_v.shape == (B, N, cfg.x_encoder.hidden)

    q = model.tokenize_queries(["what colour is the circle?", "", "how many shapes are there?"])
    out = model.predictor(s_v, q.ids, q.mask)
    assert out.embedding.shape == (B, cfg.embed_dim)
    assert out.hidden.shape == (B, N + q.ids.shape[1], cfg.predictor.hidden)

    t = model.tokenize_targets(["a red circle", "two squares", "a blue triangle grows"])
    assert model.y_encoder(t).shape == (B, cfg.embed_dim)

    s_hat = model.predict(s_v, "what happens?")
    assert s_hat.shape == (B, cfg.embed_dim)
    torch.testing.assert_close(s_hat.norm(dim=-1), torch.ones(B))

    dec = model.decoder_loss(["a red circle moves left", "a square"])
    assert dec.logits.shape[:2] == (2, model.y_decoder.tokenize(["a red circle moves left"]).ids.shape[1] - 1)
    assert dec.logits.shape[2] == model.y_encoder.word_embeddings.num_embeddings
    texts = model.decode(s_hat, max_tokens=5)
    assert len(texts) == B and all(isinstance(t, str) for t in texts)


def test_predict_reuses_one_window_for_many_queries(model, clips):
    s_v = model.encode_video(clips[:1])
    queries = ["what colour?", "what shape?", "how many?"]
    many = model.predict(s_v, queries)
    assert many.shape == (3, model.cfg.embed_dim)
    for i, q in enumerate(queries):
        torch.testing.assert_close(many[i], model.predict(s_v, q)[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(many[0], many[1])  # the query matters


def test_images_and_float_clips_are_accepted(model, clips):
    as_float = clips.float() / 255.0
    torch.testing.assert_close(model.encode_video(clips), model.encode_video(as_float))
    image = clips[:, 0]  # [B,C,H,W] -> repeated to T frames
    repeated = clips[:, :1].expand(-1, 4, -1, -1, -1)
    torch.testing.assert_close(model.encode_video(image), model.encode_video(repeated))
    big = torch.nn.functional.interpolate(as_float[:, 0], size=(48, 64))  # resized + centre-cropped
    assert model.encode_video(big).shape == model.encode_video(clips).shape
    longer = clips.repeat_interleave(3, dim=1)  # 12 frames sampled down to 4
    assert model.encode_video(longer).shape == model.encode_video(clips).shape


@pytest.mark.parametrize(
    "shape", [(2, 4, 32, 32), (2, 4, 5, 32, 32), (32, 32)], ids=["no-channels", "5-channels", "2d"]
)
def test_bad_clip_shapes_are_rejected_with_the_shape(model, shape):
    with pytest.raises(ValueError, match="clips must be"):
        model.encode_video(torch.zeros(shape))


def test_query_count_mismatch_is_an_error(model, clips):
    s_v = model.encode_video(clips)
    with pytest.raises(ValueError, match="queries for 3 clips"):
        model.predict(s_v, ["a", "b"])


def test_embed_text_cache_returns_same_values_and_clears_on_train(model):
    labels = ["a red circle", "a blue square"]
    first = model.embed_text(labels)
    assert set(model._text_cache) == set(labels)
    torch.testing.assert_close(model.embed_text(labels[::-1]), first.flip(0))
    torch.testing.assert_close(model.embed_text(labels, cache=False), first)
    model.train()
    assert model._text_cache == {}


def test_classify_retrieve_answer_use_nearest_embedding(model):
    labels = ["a red circle moves left", "a blue square grows", "a green triangle disappears"]
    targets = model.embed_text(labels)  # use exact label embeddings as "predictions"
    cls = model.classify(targets[[2, 0]], labels)
    assert cls.labels == [labels[2], labels[0]] and cls.indices.tolist() == [2, 0]
    rank = model.retrieve(labels[1], targets)
    assert rank.indices[0].item() == 1 and rank.scores[0] == pytest.approx(1.0, abs=1e-5)
    ans = model.answer(targets[[0, 1]], [["a blue square grows", "a red circle moves left"], [labels[1]]])
    assert ans.choices == ["a red circle moves left", labels[1]]
    assert torch.isinf(ans.scores[1, 1])


def test_token_batch_input_matches_strings(model, clips):
    s_v = model.encode_video(clips)
    q = model.tokenize_queries(["what shape?"])
    torch.testing.assert_close(model.predict(s_v, TokenBatch(q.ids, q.mask)), model.predict(s_v, "what shape?"))


def test_empty_inputs_are_clear_errors(model):
    with pytest.raises(ValueError, match="at least one text"):
        model.embed_text([])
    assert model.embed_text("a red circle").shape == (1, model.cfg.embed_dim)  # a bare string is one text
