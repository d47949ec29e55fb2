"""Bidirectional InfoNCE against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from perception.model.loss import embedding_spread, groups_from_texts, info_nce


def test_matches_hand_computed_value():
    pred = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # normalised: e1, e2
    target = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # normalised: e1, (e1+e2)/sqrt2
    tau = 0.5
    c = 1 / math.sqrt(2)
    # cosine matrix S[i,j] = pred_i . target_j
    S = [[1.0, c], [0.0, c]]
    L = [[s / tau for s in row] for row in S]

    def ce(row, k):
        return -(row[k] - math.log(sum(math.exp(x) for x in row)))

    p2t = (ce(L[0], 0) + ce(L[1], 1)) / 2
    cols = [[L[0][0], L[1][0]], [L[0][1], L[1][1]]]
    t2p = (ce(cols[0], 0) + ce(cols[1], 1)) / 2
    out = info_nce(pred, target, tau)
    assert out.pred_to_target.item() == pytest.approx(p2t, rel=1e-5)
    assert out.target_to_pred.item() == pytest.approx(t2p, rel=1e-5)
    assert out.loss.item() == pytest.approx((p2t + t2p) / 2, rel=1e-5)
    assert out.baseline == pytest.approx(math.log(2))


def test_symmetric_in_pred_and_target():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    ab, ba = info_nce(a, b, 0.1), info_nce(b, a, 0.1)
    assert ab.loss.item() == pytest.approx(ba.loss.item(), rel=1e-6)
    assert ab.pred_to_target.item() == pytest.approx(ba.target_to_pred.item(), rel=1e-6)


def test_multi_positive_counts_every_matching_target():
    """Rows 0 and 1 share a text: the mass on both of their targets counts as correct."""
    pred = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    groups = groups_from_texts(["red circle", "red circle", "blue square"])
    assert groups.tolist() == [0, 0, 1]
    tau = 1.0
    # row 0 logits [1,1,0]: correct set {0,1}: -log((e+e)/(e+e+1))
    row01 = -math.log(2 * math.e / (2 * math.e + 1))
    row2 = -math.log(math.e / (math.e + 2))
    expect = (2 * row01 + row2) / 3
    out = info_nce(pred, target, tau, groups)
    assert out.pred_to_target.item() == pytest.approx(expect, rel=1e-5)
    assert out.target_to_pred.item() == pytest.approx(expect, rel=1e-5)
    single = info_nce(pred, target, tau)  # without groups the duplicate is a negative: larger loss
    assert single.loss.item() > out.loss.item()


def test_random_embeddings_sit_near_ln_b_and_perfect_ones_far_below():
    g = torch.Generator().manual_seed(0)
    B = 64
    rand = info_nce(torch.randn(B, 32, generator=g), torch.randn(B, 32, generator=g), 1.0)
    assert abs(rand.loss.item() - math.log(B)) < 0.2
    x = torch.nn.functional.one_hot(torch.arange(B), B).float()
    assert info_nce(x, x, 0.05).loss.item() < 1e-3


def test_spread_flags_collapse():
    same = torch.ones(4, 8)
    assert embedding_spread(same) == pytest.approx(1.0)
    assert embedding_spread(torch.eye(4)) == pytest.approx(0.0)
    assert info_nce(same, torch.eye(4, 8), 0.1).spread == pytest.approx(1.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(AssertionError, match="differ"):
        info_nce(torch.zeros(2, 4), torch.zeros(3, 4), 0.1)
