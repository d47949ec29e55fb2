"""What training relies on: frozen parts stay frozen, the LR multiplier reaches the optimizer, steps learn."""

from __future__ import annotations

import math

import pytest
import torch

TEXTS = ["a red circle moves left", "a blue square grows", "a green triangle disappears", "a red circle moves left"]


def test_frozen_parts_get_no_gradients(make_model, clips):
    model = make_model(x_encoder={"frozen": True})
    model.train()
    out = model(clips=clips, queries="", targets=TEXTS[:3])
    out.loss.loss.backward()
    assert all(p.grad is None for p in model.y_encoder.backbone.parameters())  # frozen MiniLM
    assert all(p.grad is None for p in model.x_encoder.backbone.parameters())
    assert model.y_encoder.head.weight.grad is not None and model.y_encoder.head.weight.grad.abs().sum() > 0
    assert model.predictor.head.weight.grad.abs().sum() > 0
    assert model.log_temperature.grad is not None
    # the shared word table is frozen even though the predictor reads it
    assert model.y_encoder.word_embeddings.weight.grad is None
    assert model.predictor.query_embed.proj.weight.grad.abs().sum() > 0


def test_unfrozen_x_encoder_gets_gradients(model, clips):
    model.train()
    model(clips=clips, queries="", targets=TEXTS[:3]).loss.loss.backward()
    grads = [p.grad for p in model.x_encoder.backbone.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_lr_multiplier_reaches_the_optimizer(make_model, clips):
    model = make_model(y_encoder={"frozen": False, "lr_mult": 0.05})
    groups = model.param_groups(lr=1e-3, weight_decay=0.1)
    opt = torch.optim.AdamW(groups)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["y_encoder_decay"]["lr"] == pytest.approx(5e-5)
    assert by_name["main_decay"]["lr"] == pytest.approx(1e-3)
    assert by_name["main_no_decay"]["weight_decay"] == 0.0
    ids = {id(p) for p in by_name["y_encoder_decay"]["params"]}
    assert id(model.y_encoder.backbone.encoder.layer[0].attention.self.query.weight) in ids
    assert id(model.y_encoder.head.weight) not in ids  # by default the head trains at the base rate
    assert id(model.y_encoder.head.weight) in {id(p) for p in by_name["main_decay"]["params"]}
    slow_head = make_model(y_encoder={"frozen": True, "head_lr_mult": 0.05}).param_groups(lr=1e-3)
    heads = {g["name"]: g for g in slow_head}
    assert heads["y_head_decay"]["lr"] == pytest.approx(5e-5) and heads["y_head_no_decay"]["lr"] == pytest.approx(5e-5)
    assert len(heads["y_head_decay"]["params"]) == 1 and "y_encoder_decay" not in heads  # frozen backbone: no group
    # every trainable parameter is in exactly one group, frozen ones in none
    in_groups = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(in_groups) == len(set(in_groups)) == sum(1 for p in model.parameters() if p.requires_grad)
    # one step moves the backbone by about lr_mult x what the same step would at the base rate
    w = model.y_encoder.backbone.encoder.layer[0].attention.self.query.weight
    before = w.detach().clone()
    model.train()
    opt.zero_grad()
    model(clips=clips, queries="", targets=TEXTS[:3]).loss.loss.backward()
    opt.step()
    # AdamW's first step moves each weight by ~lr (sign of the gradient) plus decay
    moved = (w.detach() - before).abs().max().item()
    assert 1e-5 < moved < 1e-4


def test_a_few_steps_reduce_the_loss(make_model, clips):
    torch.manual_seed(0)
    model = make_model()
    model.train()
    opt = torch.optim.AdamW(model.param_groups(lr=3e-3, weight_decay=0.0))
    clips4 = torch.cat([clips, clips[:1]])  # rows 0 and 3: same clip, same text (a multi-positive pair)
    losses = []
    for _ in range(15):
        out = model(clips=clips4, queries="", targets=TEXTS)
        opt.zero_grad()
        out.loss.loss.backward()
        opt.step()
        losses.append(out.loss.loss.item())
    assert out.loss.baseline == pytest.approx(math.log(4))
    assert losses[-1] < 0.5 * losses[0]
    assert losses[-1] < math.log(4)


def test_decoder_steps_reduce_its_loss(model):
    model.train()
    params = [p for p in model.y_decoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3)
    first = None
    for _ in range(15):
        out = model.decoder_loss(TEXTS[:3])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else out.loss.item()
    assert out.tokens == sum(len(model.y_decoder.tokenize([t]).ids[0]) - 1 for t in TEXTS[:3])
    assert out.loss.item() < 0.5 * first
    # the Y-encoder (frozen) was not touched by decoder training
    assert all(p.grad is None for p in model.y_encoder.parameters())


def test_forward_with_cached_visual_tokens(model, clips):
    s_v = model.encode_video(clips)  # inference-mode tensor, e.g. cached from a frozen X-encoder
    model.train()
    out = model(s_v=s_v, queries=["what colour?"] * 3, targets=TEXTS[:3])
    out.loss.loss.backward()
    assert model.predictor.visual_proj.weight.grad is not None
    with pytest.raises(ValueError, match="2 target texts for 3 clips"):
        model(s_v=s_v, targets=TEXTS[:2])


def test_decoder_learns_to_reproduce_texts_from_their_embeddings(model):
    """Greedy and beam decoding read the embedding: two texts, each decoded back from its own S_Y."""
    texts = ["a red circle moves left", "two blue squares shrink"]
    model.train()
    opt = torch.optim.AdamW([p for p in model.y_decoder.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(40):
        out = model.decoder_loss(texts)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if out.loss.item() < 0.02:
            break
    model.eval()
    emb = model.embed_text(texts)
    assert model.decode(emb) == texts
    assert model.decode(emb, beams=3) == texts


def test_frozen_y_encoder_caches_pooled_outputs_exactly(model):
    texts = ["a red circle", "a blue square", "a red circle"]
    model.train()
    cached = model.y_encoder.embed_texts(texts, model.device)
    assert set(model.y_encoder._pooled) == {"a red circle", "a blue square"}
    direct = model.y_encoder(model.tokenize_targets(texts))
    torch.testing.assert_close(cached, direct)
    cached.sum().backward()
    assert model.y_encoder.head.weight.grad is not None  # the head still trains through the cache
    model.load_state_dict(model.state_dict())
    assert model.y_encoder._pooled == {}  # new weights: cache dropped


def test_unfrozen_y_encoder_is_never_cached(make_model):
    model = make_model(y_encoder={"frozen": False})
    model.train()
    model.y_encoder.embed_texts(["a red circle"], model.device).sum().backward()
    assert model.y_encoder._pooled == {}
    assert model.y_encoder.backbone.encoder.layer[0].output.dense.weight.grad is not None
