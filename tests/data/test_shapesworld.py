import numpy as np
import pytest
import torch

from perception.data.render import Drawable, background, render
from perception.data.shapesworld import (
    ShapesWorldClips,
    collate_clips,
    make_clip,
    passive_allowed,
    sample_clip,
)
from perception.data.stream import ShapesStream
from perception.data.vocab import COUNT_WORDS, HELDOUT_COMBOS, SHAPES, TEST_SPLIT, VAL_SPLIT, Slots
from perception.train.workers import loader_context

from .pixels import area, centroid, colour_mask, colours_present

N_LABELLED = 240  # clips checked pixel by pixel (about 0.3 s of rendering)


def test_same_seed_and_index_give_identical_clips():
    a, b = make_clip(7, 11), make_clip(7, 11)
    assert a.spec == b.spec
    np.testing.assert_array_equal(a.frames, b.frames)
    other = make_clip(7, 12)
    assert other.spec != a.spec and not np.array_equal(other.frames, a.frames)
    assert make_clip(8, 11).spec != a.spec
    assert sample_clip(7, 11, "heldout") != a.spec


def test_plan_is_resolution_free():
    spec = sample_clip(3, 5)
    small, large = spec.render(frames=4, size=32), spec.render(frames=16, size=128)
    assert small.shape == (4, 32, 32, 3) and large.shape == (16, 128, 128, 3)
    assert small.dtype == np.uint8
    assert colours_present(small) == colours_present(large)


@pytest.mark.parametrize("index", range(N_LABELLED))
def test_rendered_pixels_match_labels(index):
    spec = sample_clip(0, index)
    frames = spec.render(frames=8, size=64)  # [T, H, W, 3]
    colour, shape, action = spec.slots
    first, last = frames[0], frames[-1]
    if action == "move_left":
        assert centroid(last, colour)[0] < centroid(first, colour)[0] - 8
    elif action == "move_right":
        assert centroid(last, colour)[0] > centroid(first, colour)[0] + 8
    elif action == "move_up":
        assert centroid(last, colour)[1] < centroid(first, colour)[1] - 8
    elif action == "move_down":
        assert centroid(last, colour)[1] > centroid(first, colour)[1] + 8
    elif action == "grow":
        assert area(last, colour) > 2 * area(first, colour)
    elif action == "shrink":
        assert area(first, colour) > 2 * area(last, colour)
    elif action == "appear":
        assert area(first, colour) == 0 and area(last, colour) > 20
    elif action == "disappear":
        assert area(first, colour) > 20 and area(last, colour) == 0
    elif action == "change_colour":
        assert area(first, colour) > 20 and area(last, colour) == 0
        assert area(first, spec.new_colour) == 0 and area(last, spec.new_colour) > 20
    else:
        assert action == "stay_still"
        np.testing.assert_array_equal(colour_mask(first, colour), colour_mask(last, colour))
    # Every object has its own colour, so counting colours counts objects (a colour change adds one).
    seen = colours_present(frames)
    assert len(seen) - (action == "change_colour") == spec.count
    answers = {q.kind: q.answer for q in spec.qa}
    assert answers["count"] == COUNT_WORDS[spec.count - 1]
    assert answers["colour"] == (spec.new_colour if action == "change_colour" else colour)
    assert answers["shape"] == shape
    assert spec.caption.startswith(("the", "a")) and colour in spec.caption and shape in spec.caption


def test_shapes_are_distinct_silhouettes_at_64px():
    bg = np.zeros((64, 64, 3), dtype=np.uint8)
    masks = {s: colour_mask(render(bg, [Drawable(s, "red", 0.5, 0.5, 0.13)]), "red") for s in SHAPES}
    for i, a in enumerate(SHAPES):
        for b in SHAPES[i + 1 :]:
            differ = (masks[a] ^ masks[b]).sum()  # pixels inside exactly one of the two silhouettes
            # The closest pair (circle, square) differs in its corners: 28 fill pixels at r = 8 px.
            assert differ >= 24 and differ / (masks[a] | masks[b]).sum() >= 0.12, (a, b, differ)


def test_background_is_plain_grey_with_light_texture():
    bg = background(np.random.default_rng(0), 64).astype(int)
    assert 60 < bg.mean() < 180 and bg.std() < 12


def test_qa_answers_are_candidates_and_presence_is_balanced():
    yes = no = 0
    for index in range(300):
        spec = sample_clip(1, index)
        looks = {(o.colour, o.shape) for o in spec.objects} | (
            {(spec.new_colour, spec.slots.shape)} if spec.new_colour else set()
        )
        for q in spec.qa:
            assert q.answer in q.candidates
            if q.kind == "presence":
                colour, shape = q.question.removeprefix("is there a ").removesuffix("?").split()
                assert ((colour, shape) in looks) == (q.answer == "yes"), q
                yes += q.answer == "yes"
                no += q.answer == "no"
    assert yes == no == 300


def test_train_never_generates_heldout_combinations():
    heldout_seen = set()
    for index in range(3000):
        train = sample_clip(0, index, "train")
        assert train.slots not in HELDOUT_COMBOS
        for obj in train.objects:  # distractors are not even shown in a held-out (still) look
            if obj is not train.objects[train.action.target]:
                assert passive_allowed(obj.colour, obj.shape, "train")
        held = sample_clip(0, index, "heldout")
        assert held.slots in HELDOUT_COMBOS
        heldout_seen.add(held.slots)
    assert heldout_seen == HELDOUT_COMBOS  # the held-out split really exercises all of them


def test_dataset_items_and_collate():
    ds = ShapesWorldClips(length=6, seed=2, frames=8, size=48)
    item = ds[3]
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (8, 3, 48, 48)
    assert isinstance(item["slots"], Slots) and item["caption"] == item["captions"][0]
    assert {q["kind"] for q in item["qa"]} == {"colour", "shape", "count", "presence"}
    batch = collate_clips([ds[i] for i in range(4)])
    assert batch["video"].shape == (4, 8, 3, 48, 48) and len(batch["caption"]) == 4
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(ValueError, match="valid"):
        ShapesWorldClips(length=4, split="validation")


def test_workers_shard_without_coordination():
    """Two DataLoader worker processes produce exactly what one process does, item for item."""
    ds = ShapesWorldClips(length=8, seed=5, frames=4, size=32)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=2, collate_fn=collate_clips, multiprocessing_context=loader_context(2)
    )
    videos = torch.cat([b["video"] for b in loader])
    expected = torch.stack([ds[i]["video"] for i in range(len(ds))])
    assert torch.equal(videos, expected)


def test_validation_and_test_samples_never_share_a_clip_or_a_stream():
    """Same seeds, different splits: the split's index is part of every seed, so no val item is a test one."""
    for seed in (0, 1, 2):
        val = [sample_clip(seed, i, VAL_SPLIT) for i in range(300)]
        test = [sample_clip(seed, i, TEST_SPLIT) for i in range(300)]
        assert not {c.bg_seed for c in val} & {c.bg_seed for c in test}
        assert {c.slots for c in val} <= HELDOUT_COMBOS  # the same unseen-combination rule
        streams = [
            ShapesStream(seed * 1000 + k, split, duration_s=30.0, fps=4.0, size=32)
            for k in range(4)
            for split in (VAL_SPLIT, TEST_SPLIT)
        ]
        plans = [tuple((s.start_s, s.slots) for s in st.segments) for st in streams]
        assert len(set(plans)) == len(plans)


def test_stay_still_clips_show_one_object_so_their_caption_names_it():
    """With a distractor every object would be still and the caption's subject a coin toss."""
    still = [c for c in (sample_clip(0, i, "train") for i in range(600)) if c.slots.action == "stay_still"]
    moving = [c for c in (sample_clip(0, i, "train") for i in range(600)) if c.slots.action != "stay_still"]
    assert len(still) > 20 and all(c.count == 1 for c in still)
    assert any(c.count > 1 for c in moving)  # distractors elsewhere are unchanged
