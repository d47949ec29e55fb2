"""Task metrics against values computed by hand on toy inputs."""

import numpy as np
import pytest

from perception.eval.metrics import recall_at_k, slot_accuracy, top1_accuracy, vqa_accuracy


def test_top1_accuracy_hand_computed():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.4, 0.4, 0.1], [0.0, 1.0, 0.0]])
    # argmax: 0, 2, 0 (tie -> first), 1; labels 0, 1, 0, 1 -> 3 of 4 right
    assert top1_accuracy(scores, [0, 1, 0, 1]) == pytest.approx(0.75)


def test_top1_accuracy_rejects_bad_shapes_and_labels():
    with pytest.raises(ValueError, match="shape"):
        top1_accuracy(np.zeros((2, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match="labels"):
        top1_accuracy(np.zeros((1, 3)), [3])
    with pytest.raises(ValueError, match="NaN"):
        top1_accuracy(np.array([[np.nan, 1.0]]), [0])


def test_recall_counts_clip_with_same_caption_as_correct():
    clips = ["red circle moves left", "blue square grows", "Red circle moves left.", "green star"]
    queries = ["red circle moves left", "blue square grows", "green star"]
    sim = np.array(
        [
            [0.1, 0.0, 0.9, 0.2],  # best is clip 2, a duplicate caption of clip 0 -> correct
            [0.5, 0.4, 0.0, 0.0],  # best is clip 0 (wrong), clip 1 second
            [0.0, 0.0, 0.0, 0.0],  # all tied -> stable order: clips 0, 1, 2, 3
        ]
    )
    assert recall_at_k(sim, queries, clips, k=1) == pytest.approx(1 / 3)
    assert recall_at_k(sim, queries, clips, k=2) == pytest.approx(2 / 3)
    assert recall_at_k(sim, queries, clips, k=4) == pytest.approx(1.0)


def test_recall_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="clip captions"):
        recall_at_k(np.zeros((1, 3)), ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="k must"):
        recall_at_k(np.zeros((1, 2)), ["a"], ["a", "b"], k=0)


def test_vqa_accuracy_overall_and_per_type():
    preds = ["Red", "circle", "2", "yes", "no", "blue"]
    answers = ["red", "square", "2", "yes", "yes", "blue"]
    types = ["colour", "shape", "count", "presence", "presence", "colour"]
    res = vqa_accuracy(preds, answers, types)
    assert res.overall == pytest.approx(4 / 6)
    assert res.per_type == {"colour": 1.0, "count": 1.0, "presence": 0.5, "shape": 0.0}
    assert res.counts == {"colour": 2, "count": 1, "presence": 2, "shape": 1}


def test_vqa_accuracy_length_mismatch():
    with pytest.raises(ValueError, match="length mismatch"):
        vqa_accuracy(["a"], ["a", "b"], ["t"])


COLOURS = {"red", "blue", "green"}
SHAPES = {"circle", "square", "star"}
ACTIONS = {"left": "move_left", "grows": "grow", "shrinks": "shrink"}


def toy_parser(text: str) -> dict[str, str | None]:
    words = text.lower().split()
    if not words:
        raise ValueError("empty caption")
    return {
        "colour": next((w for w in words if w in COLOURS), None),
        "shape": next((w for w in words if w in SHAPES), None),
        "action": next((ACTIONS[w] for w in words if w in ACTIONS), None),
    }


def test_slot_accuracy_with_parser():
    hyps = ["the red circle moves left", "a blue star grows", "green square", ""]
    refs = [
        {"colour": "red", "shape": "circle", "action": "move_left"},
        {"colour": "blue", "shape": "square", "action": "grow"},
        {"colour": "green", "shape": "square", "action": "shrink"},
        {"colour": "red", "shape": "star", "action": "grow"},
    ]
    res = slot_accuracy(hyps, refs, toy_parser)
    # item 0 all right; item 1 shape wrong; item 2 action missing; item 3 parser rejects -> all wrong
    assert res.all_slots == pytest.approx(1 / 4)
    assert res.per_slot == {"action": 2 / 4, "colour": 3 / 4, "shape": 2 / 4}
    assert res.parse_failures == 1
