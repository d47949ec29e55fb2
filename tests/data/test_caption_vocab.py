import itertools

import pytest

from perception.data.vocab import (
    ACTION_LABELS,
    ACTIONS,
    ALL_COMBOS,
    COLOUR_NAMES,
    HELDOUT_COMBOS,
    SHAPES,
    TRAIN_COMBOS,
    action_label_texts,
    canonical_caption,
    combos_for,
    paraphrases,
    parse_new_colour,
    parse_slots,
)


def _all_captions():
    for colour, shape, action in ALL_COMBOS:
        targets = [c for c in COLOUR_NAMES if c != colour] if action == "change_colour" else [None]
        for new in targets:
            for text in paraphrases(colour, shape, action, new):
                yield (colour, shape, action), new, text


def test_every_paraphrase_parses_back_to_its_slots():
    seen = 0
    for slots, new, text in _all_captions():
        assert parse_slots(text) == slots, text
        assert parse_slots(text.upper() + ".") == slots, text
        if new is not None:
            assert parse_new_colour(text) == new, text
        seen += 1
    assert seen > 4 * len(ALL_COMBOS)


def test_paraphrases_differ_and_first_is_canonical():
    caps = paraphrases("red", "circle", "move_left")
    assert len(caps) >= 3 and len(set(caps)) == len(caps)
    assert caps[0] == canonical_caption("red", "circle", "move_left") == "the red circle moves left"


@pytest.mark.parametrize(
    "text",
    ["", "something happens", "the red thing moves left", "a circle moves left", "the blue square"],
    ids=["empty", "no-slots", "no-shape", "no-colour", "no-action"],
)
def test_unparseable_text_gives_none(text):
    assert parse_slots(text) is None


def test_bad_vocabulary_is_rejected_with_valid_values():
    with pytest.raises(ValueError, match="valid"):
        paraphrases("pink", "circle", "grow")
    with pytest.raises(ValueError, match="new_colour"):
        paraphrases("red", "circle", "change_colour")


def test_action_labels_cover_actions_in_order():
    labels = action_label_texts()
    assert labels == [ACTION_LABELS[a] for a in ACTIONS]
    assert len(set(labels)) == len(ACTIONS)


def test_heldout_split_is_fixed_and_compositional():
    assert len(ALL_COMBOS) == len(COLOUR_NAMES) * len(SHAPES) * len(ACTIONS)
    assert HELDOUT_COMBOS | TRAIN_COMBOS == set(ALL_COMBOS) and not HELDOUT_COMBOS & TRAIN_COMBOS
    assert combos_for("heldout") == HELDOUT_COMBOS and combos_for("train") == TRAIN_COMBOS
    # Exactly one held-out action per (colour, shape); every pair of slots still has training data.
    for c, s in itertools.product(COLOUR_NAMES, SHAPES):
        assert sum((c, s, a) in HELDOUT_COMBOS for a in ACTIONS) == 1
    for c, a in itertools.product(COLOUR_NAMES, ACTIONS):
        assert any((c, s, a) in TRAIN_COMBOS for s in SHAPES)
    for s, a in itertools.product(SHAPES, ACTIONS):
        assert any((c, s, a) in TRAIN_COMBOS for c in COLOUR_NAMES)
    with pytest.raises(ValueError, match="valid"):
        combos_for("test")
