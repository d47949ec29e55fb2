"""CIDEr-D against hand-computed values and against the coco-caption toolkit's own numbers."""

import math

import numpy as np
import pytest

from perception.eval.cider import CiderD, cider_d, tokenize


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize("The Red-circle, moves LEFT!") == ["the", "red", "circle", "moves", "left"]
    assert tokenize("  ") == []


def test_single_item_corpus_scores_zero():
    res = cider_d(["red circle moves left"], [["red circle moves left"]])
    assert res.score == 0.0  # idf log1 - log1 = 0 everywhere (coco quirk)


def test_exact_match_with_disjoint_other_item_scores_ten():
    # Two items with no shared n-gram: every df is 1, so every weight is log(2) and the candidate's
    # tf-idf vector equals its reference's: cosine 1 for n = 1..4, no length penalty -> 10.
    res = cider_d(
        ["red circle moves left", "blue square grows"],
        [["red circle moves left"], ["green star shrinks quickly"]],
    )
    assert res.per_item[0] == pytest.approx(10.0)
    assert res.per_item[1] == pytest.approx(0.0)  # no n-gram in common
    assert res.score == pytest.approx(5.0)


def test_three_word_sentence_has_no_4grams_so_scores_seven_and_a_half():
    # n = 1, 2, 3 give cosine 1; n = 4 has empty vectors -> 0; mean over n = 0.75, x10.
    res = cider_d(["blue square grows", "x"], [["blue square grows"], ["y"]])
    assert res.per_item[0] == pytest.approx(7.5)


def test_ngram_in_every_item_carries_no_weight():
    # "the" appears in both items' references: idf = log2 - log2 = 0, so the candidate "the" scores 0
    # although it is a substring of its reference.
    res = cider_d(["the", "the"], [["the red circle"], ["the blue square"]])
    assert np.all(res.per_item == 0.0)


def test_length_penalty_hand_computed():
    # cand "red red" vs ref "red" (2 items, disjoint). Unigram vectors: hyp {red: 2w}, ref {red: w}
    # with w = log 2; clipped dot = min(2w, w) * w = w^2; norms 2w and w -> cosine 1/2.
    # Bigram "red red" is absent from refs: bigram vector of ref is empty -> 0; n = 3, 4 empty -> 0.
    # coco length = bigram count: hyp 1, ref 0 -> penalty exp(-1 / 72).
    res = cider_d(["red red", "z"], [["red"], ["blue"]])
    expected = 10 * (0.5 * math.exp(-1 / 72)) / 4
    assert res.per_item[0] == pytest.approx(expected)


# Reference values produced once with pycocoevalcap 1.2 (pip install --target /tmp/pycoco pycocoevalcap;
# CiderScorer(n=4, sigma=6.0) fed " ".join(tokenize(s)) for every sentence), hard-coded here.
TOY_CANDIDATES = ["the red circle moves left", "a blue square grows", "a green triangle", "nothing happens here at all"]
TOY_REFERENCES = [
    ["the red circle moves left", "a red circle slides to the left"],
    ["the blue square grows", "a blue square gets bigger", "the blue square expands"],
    ["a green triangle stays still", "the green triangle does not move"],
    ["the yellow star disappears", "a yellow star vanishes"],
]
TOY_PYCOCO = [6.034577588681479, 3.92338160398193, 3.4014359205778892, 0.0]


def test_matches_pycocoevalcap_on_toy_corpus():
    res = cider_d(TOY_CANDIDATES, TOY_REFERENCES)
    np.testing.assert_allclose(res.per_item, TOY_PYCOCO, rtol=1e-12)
    assert res.score == pytest.approx(3.3398487783103246, rel=1e-12)


def test_matches_pycocoevalcap_with_punctuation_and_case():
    res = cider_d(
        ["The Red circle, moves LEFT!", "blue square grows"],
        [["the red circle moves left."], ["a blue square grows", "the blue square is growing"]],
    )
    np.testing.assert_allclose(res.per_item, [10.0, 4.046582533646109], rtol=1e-12)


def test_scorer_reuses_idf_across_candidate_sets():
    scorer = CiderD(TOY_REFERENCES)
    first = scorer.score(TOY_CANDIDATES).per_item
    worse = scorer.score(["nothing"] * 4).per_item
    np.testing.assert_allclose(scorer.score(TOY_CANDIDATES).per_item, first)
    assert worse.sum() < first.sum()


@pytest.mark.parametrize(
    ("cands", "refs", "err"),
    [
        (["a"], [], ValueError),
        (["a", "b"], [["a"]], ValueError),
        (["a"], [[]], ValueError),
        (["a"], ["a plain string"], ValueError),
        ([None], [["a"]], TypeError),
    ],
    ids=["no-items", "count-mismatch", "empty-refs", "refs-not-list", "non-string"],
)
def test_bad_input_raises_clear_error(cands, refs, err):
    with pytest.raises(err):
        cider_d(cands, refs)
