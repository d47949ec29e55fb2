"""The predictor attends bidirectionally and ignores padding; the Y-decoder is causal."""

from __future__ import annotations

import pytest
import torch

from perception.model.layers import bidirectional_mask, causal_mask


@pytest.fixture(params=["all", "query"], ids=["pool-all", "pool-query"])
def pooled_model(request, make_model):
    return make_model(predictor={"pool": request.param})


def _run(model, s_v, ids, mask):
    with torch.no_grad():
        return model.predictor(s_v, ids, mask)


def test_later_query_token_changes_earlier_positions(model, clips):
    """Bidirectional: editing the last query token changes outputs at the first visual token and the
    first query token (a causal mask would leave both untouched)."""
    s_v = model.encode_video(clips[:1])
    q = model.tokenize_queries(["what colour is the circle"])
    ids2 = q.ids.clone()
    ids2[0, -2] = model.query_tokenizer.convert_tokens_to_ids("square")  # last word before [SEP]
    a = _run(model, s_v, q.ids, q.mask)
    b = _run(model, s_v, ids2, q.mask)
    N = s_v.shape[1]
    assert not torch.allclose(a.hidden[0, 0], b.hidden[0, 0], atol=1e-6)  # first visual token
    assert not torch.allclose(a.hidden[0, N], b.hidden[0, N], atol=1e-6)  # first query token ([CLS])


def test_padding_changes_nothing(pooled_model, clips):
    model = pooled_model
    s_v = model.encode_video(clips[:2])
    q = model.tokenize_queries(["what shape", "is there a red circle moving left"])  # row 0 already padded
    pad = model.query_tokenizer.pad_token_id
    extra = 5
    ids = torch.cat([q.ids, torch.full((2, extra), pad)], dim=1)
    mask = torch.cat([q.mask, torch.zeros(2, extra, dtype=q.mask.dtype)], dim=1)
    a = _run(model, s_v, q.ids, q.mask).embedding
    b = _run(model, s_v, ids, mask).embedding
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # and each row equals that query run alone with no padding at all
    alone = model.tokenize_queries(["what shape"])
    torch.testing.assert_close(_run(model, s_v[:1], alone.ids, alone.mask).embedding, a[:1], atol=1e-5, rtol=1e-5)


def test_padding_tokens_would_matter_if_unmasked(model, clips):
    """Guards the test above: the same PAD tokens marked as real do change the output."""
    s_v = model.encode_video(clips[:1])
    q = model.tokenize_queries(["what shape"])
    ids = torch.cat([q.ids, torch.full((1, 3), model.query_tokenizer.pad_token_id)], dim=1)
    a = _run(model, s_v, q.ids, q.mask).embedding
    b = _run(model, s_v, ids, torch.ones_like(ids)).embedding
    assert not torch.allclose(a, b, atol=1e-5)


def test_mask_builders():
    keep = torch.tensor([[True, True, False]])
    bi = bidirectional_mask(keep, torch.float32)[0, 0]
    assert (bi[:, :2] == 0).all() and (bi[:, 2] < -1e30).all()
    ca = causal_mask(keep, torch.float32)[0, 0]
    assert ca[0, 0] == 0 and ca[0, 1] < -1e30 and ca[1, 0] == 0 and ca[1, 1] == 0
    assert ca[2, 2] == 0 and ca[1, 2] < -1e30  # a PAD row may see itself (no NaN); nobody sees PAD


def test_decoder_is_causal(model):
    """Changing a later text token leaves the decoder's logits at earlier positions unchanged."""
    emb = model.embed_text(["a red circle"]).clone()
    t = model.y_decoder.tokenize(["a red circle moves left"])
    ids2 = t.ids.clone()
    ids2[0, -2] = model.y_decoder.tokenizer.convert_tokens_to_ids("right")
    with torch.no_grad():
        a = model.y_decoder._run(emb, t.ids, t.mask)
        b = model.y_decoder._run(emb, ids2, t.mask)
    torch.testing.assert_close(a[0, :-2], b[0, :-2])
    assert not torch.allclose(a[0, -2:], b[0, -2:])


def test_generation_shortcut_matches_full_logits(model):
    emb = model.embed_text(["a red circle"]).clone()
    t = model.y_decoder.tokenize(["a red circle moves left"])
    with torch.no_grad():
        full = model.y_decoder._run(emb, t.ids, t.mask)
        last = model.y_decoder._run(emb, t.ids, t.mask, last_only=True)
    torch.testing.assert_close(last[:, 0], full[:, -1])
