"""TokenVLM, the token-generative baseline: frozen X-encoder, target-only loss, likelihoods, generation."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from perception.data.shapesworld import ShapesWorldClips, collate_clips
from perception.model import VLJepa, preset_config
from perception.model.vlm import TokenVLM, lm_param_count
from tests.support import SMALL_MODEL, with_sections

# tests/train/conftest.py's SMALL_MODEL (predictor 48 wide, 12 caption tokens), on cpu/float32
VLM_TESTS = with_sections(
    SMALL_MODEL, {"predictor": {"hidden": 48, "intermediate": 96}, "y_decoder": {"max_tokens": 12}}
)


@pytest.fixture(scope="module")
def jepa() -> VLJepa:
    torch.manual_seed(0)
    return VLJepa.from_config(preset_config("tiny").with_overrides(VLM_TESTS))


@pytest.fixture
def vlm(jepa) -> TokenVLM:
    torch.manual_seed(0)
    return TokenVLM.from_vljepa(jepa)


@pytest.fixture(scope="module")
def subset() -> dict:
    ds = ShapesWorldClips(8, seed=0, frames=4, size=32, max_objects=1)
    return collate_clips([ds[i] for i in range(8)])


def test_sized_about_twice_the_predictor(vlm, jepa):
    counts = vlm.param_counts()
    pred = jepa.parameter_counts()["predictor"]["trainable"]
    assert counts["predictor"] == pred
    assert counts["vlm"] == sum(p.numel() for p in vlm.trainable_parameters())
    cfg = vlm.stack.config
    table = vlm.word_table
    assert counts["vlm"] == lm_param_count(
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.intermediate_size,
        jepa.x_encoder.out_dim,
        table.embedding_dim,
        table.num_embeddings,
    )
    assert 1.5 < counts["ratio"] < 2.5
    assert counts["frozen"] == sum(p.numel() for p in vlm.x_encoder.parameters()) + table.weight.numel()


def test_x_encoder_stays_frozen(vlm, jepa, subset):
    before = {k: v.clone() for k, v in vlm.x_encoder.state_dict().items()}
    trainable = vlm.trainable_parameters()
    assert not any(p.requires_grad for p in vlm.x_encoder.parameters())
    assert not vlm.word_table.weight.requires_grad
    vlm.train()
    assert not vlm.x_encoder.training and not vlm.x_encoder.backbone.training
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    vlm.loss(subset["video"][:2], "", subset["caption"][:2]).backward()
    assert all(p.grad is None for p in vlm.x_encoder.parameters())
    assert vlm.word_table.weight.grad is None
    assert all(p.grad is not None for n, p in vlm.named_parameters() if p.requires_grad), "an own part got no grad"
    opt.step()
    after = vlm.x_encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the VL-JEPA model it came from is untouched (a copy, not a shared module)
    assert any(p.requires_grad for p in jepa.x_encoder.parameters())
    assert vlm.x_encoder is not jepa.x_encoder


def test_trains_below_the_unigram_baseline(vlm, subset):
    captions = subset["caption"]
    s_v = vlm.visual_tokens(subset["video"])  # frozen: computed once
    text = vlm.text_batch([""] * len(captions), captions)
    scored = text.ids[text.scored].tolist()  # the target tokens (and EOS) the loss is over
    freq = Counter(scored)
    unigram = -sum(c / len(scored) * math.log(c / len(scored)) for c in freq.values())
    opt = torch.optim.AdamW(vlm.trainable_parameters(), lr=3e-3)
    vlm.train()
    first = None
    for _ in range(60):
        loss = vlm.loss(s_v, "", captions)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    vlm.eval()
    with torch.no_grad():
        final = float(vlm.loss(s_v, "", captions))
    assert first > unigram  # starts near ln(V)
    assert final < unigram, f"cross-entropy {final:.3f} not below the unigram entropy {unigram:.3f}"


def test_log_likelihood_matches_hand_computed_log_probs(vlm):
    torch.manual_seed(3)
    s_v = torch.randn(2, 4, vlm.x_encoder.out_dim)  # toy visual tokens [B,N,Dv]
    N = s_v.shape[1]
    queries = ["what colour is it?", "what happens"]
    cands = ["red", "a green circle moves left", "blue square"]
    got = vlm.log_likelihood(s_v, queries, cands)  # [B,C]
    tok = vlm.tokenizer
    for b, q in enumerate(queries):
        for c, text in enumerate(cands):
            q_ids = tok(q, add_special_tokens=False)["input_ids"]
            t_ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
            ids = torch.tensor([q_ids + [tok.cls_token_id] + t_ids])  # one unpadded row
            with torch.no_grad():
                logp = vlm.sequence_logits(s_v[b : b + 1], ids, torch.ones_like(ids, dtype=torch.bool))
            logp = logp[0].log_softmax(-1)  # [N+L,V]
            start = N + len(q_ids)  # sequence position of BOS: it predicts the first target token
            ref = sum(float(logp[start + k, t]) for k, t in enumerate(t_ids))
            assert got[b, c].item() == pytest.approx(ref, abs=1e-4)
    # perplexity = exp(mean NLL per scored token); classify picks its minimum
    s, n = vlm.token_log_probs(s_v, queries, cands)
    assert torch.allclose(vlm.perplexity(s_v, queries, cands), torch.exp(-s / n))
    assert torch.equal(vlm.classify(s_v, queries, cands), (s / n).argmax(-1))
    assert torch.equal(vlm.answer(s_v, queries, cands), s.argmax(-1))


def test_query_is_a_prefix_not_scored(vlm, subset):
    s_v = vlm.visual_tokens(subset["video"][:2])
    targets = ["the red circle grows", "a cross"]
    tok = vlm.tokenizer
    expect = [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in targets]  # + EOS
    long_q = ["what colour is the shape in this clip?", "describe it in detail please"]
    with torch.no_grad():
        short = vlm(s_v, ["", "what"], targets)
        long = vlm(s_v, long_q, targets)
    for out in (short, long):
        assert out.tokens == sum(expect)
        assert (out.labels != -100).sum(1).tolist() == expect
        for b, t in enumerate(targets):
            ids = tok(t, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
            assert out.labels[b][out.labels[b] != -100].tolist() == ids  # exactly the target tokens + EOS
    assert float(short.loss) != float(long.loss)  # the query still conditions the targets
    # the training loss is the mean NLL of exactly the tokens log_likelihood sums
    ll = torch.stack([vlm.log_likelihood(s_v[b : b + 1], long_q[b], [t])[0, 0] for b, t in enumerate(targets)])
    assert float(long.loss) == pytest.approx(float(-ll.sum() / sum(expect)), abs=1e-4)


def test_generate_is_deterministic(vlm, subset):
    clips = subset["video"][:3]
    queries = ["", "what colour is the circle?", "what"]
    a = vlm.generate(clips, queries, max_tokens=5)
    b = vlm.generate(clips, queries, max_tokens=5)
    assert a == b and len(a) == 3 and all(isinstance(s, str) for s in a)
    # a row decoded alone gives what it gave in the mixed batch
    assert vlm.generate(clips[1:2], queries[1:2], max_tokens=5) == a[1:2]


def _full_sequence_log_probs(vlm, s_v, query, text) -> float:
    """Reference: one unpadded full sequence through the uncached path."""
    tok = vlm.tokenizer
    q_ids = tok(query, add_special_tokens=False)["input_ids"]
    t_ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    ids = torch.tensor([q_ids + [tok.cls_token_id] + t_ids])
    with torch.no_grad():
        logp = vlm.sequence_logits(s_v, ids, torch.ones_like(ids, dtype=torch.bool))[0].log_softmax(-1)
    start = s_v.shape[1] + len(q_ids)
    return sum(float(logp[start + k, t]) for k, t in enumerate(t_ids))


def test_cached_scoring_of_shared_prefixes_matches_full_sequences(vlm, monkeypatch):
    """Candidates that share prefixes (one vocabulary projection per distinct prefix), per-row lists of
    different lengths, queries of different lengths, and chunks smaller than one clip's candidates."""
    import perception.model.vlm as vlm_module

    monkeypatch.setattr(vlm_module, "SCORE_ROWS", 3)
    monkeypatch.setattr(vlm_module, "VOCAB_CHUNK", 4)
    torch.manual_seed(5)
    s_v = torch.randn(3, 4, vlm.x_encoder.out_dim)
    queries = ["", "what is it?", ""]
    per_row = [
        ["the red circle", "the red circle grows", "the red square", "the"],
        ["yes", "no"],
        ["the blue cross moves left", "the blue cross moves right", "the red circle", "", "a"],
    ]
    s, n = vlm.token_log_probs(s_v, queries, per_row)
    for b, cands in enumerate(per_row):
        for c, text in enumerate(cands):
            ref = _full_sequence_log_probs(vlm, s_v[b : b + 1], queries[b], text)
            assert s[b, c].item() == pytest.approx(ref, abs=1e-4), (b, text)
        assert n[b, len(cands) :].sum() == 0 and torch.isinf(s[b, len(cands) :]).all()


def test_cached_generation_matches_uncached_greedy(vlm, subset):
    vlm.eval()
    # train a few steps so greedy decoding produces real tokens rather than an immediate EOS
    opt = torch.optim.AdamW(vlm.trainable_parameters(), lr=3e-3)
    s_v = vlm.visual_tokens(subset["video"][:4])
    for _ in range(20):
        loss = vlm.loss(s_v, "", subset["caption"][:4])
        opt.zero_grad()
        loss.backward()
        opt.step()
    queries = ["", "what colour is the circle?", "", "what"]
    got = vlm.generate_counted(s_v, queries, max_tokens=6)
    tok = vlm.tokenizer
    for b, q in enumerate(queries):
        ids = tok(q, add_special_tokens=False)["input_ids"] + [tok.cls_token_id]
        made = []
        for _ in range(6):
            row = torch.tensor([ids + made])
            with torch.no_grad():
                nxt = int(
                    vlm.sequence_logits(s_v[b : b + 1], row, torch.ones_like(row, dtype=torch.bool))[0, -1].argmax()
                )
            made.append(nxt)
            if nxt == tok.sep_token_id:
                break
        text = tok.decode([t for t in made if t != tok.sep_token_id], skip_special_tokens=True).strip()
        assert got[b] == (text, len(made)), b
    assert any(text for text, _ in got), "the trained VLM should say something"


def test_save_load_round_trip_and_source_check(vlm, jepa, subset, tmp_path):
    import copy

    source = copy.deepcopy(jepa)  # the module's fixture stays untouched
    src = source.save(tmp_path / "jepa")
    with torch.no_grad():
        for p in vlm.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))  # weights that differ from any fresh init
    vlm.save(tmp_path / "vlm", source=src)
    assert not any(k.startswith(("x_encoder.", "word_table.")) for k in vlm_stored_keys(tmp_path / "vlm"))
    back = TokenVLM.load(tmp_path / "vlm", device="cpu")
    for (k, a), (_, b) in zip(vlm.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    clips = subset["video"][:2]
    assert back.generate(clips, "", max_tokens=4) == vlm.eval().generate(clips, "", max_tokens=4)
    # the source checkpoint changed under it: refused with a clear error, not silently paired
    with torch.no_grad():
        next(source.x_encoder.parameters()).add_(1.0)
    source.save(tmp_path / "jepa")
    from perception.model import CheckpointError

    with pytest.raises(CheckpointError, match="not the one this VLM was trained on"):
        TokenVLM.load(tmp_path / "vlm", device="cpu")


def vlm_stored_keys(directory) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(directory / "vlm.safetensors"), "pt") as f:
        return list(f.keys())
