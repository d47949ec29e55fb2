"""The offline replay of the service's caption path scores what the end-to-end test scores."""

from perception.data.stream import ShapesStream
from perception.data.vocab import parse_slots
from perception.eval.stream_captions import Caption, score


def scored_truths(stream: ShapesStream, until_s: float):
    return [t for t in stream.segments if t.end_s <= until_s and not t.ambiguous]


def test_true_captions_describe_every_segment_and_wrong_ones_none():
    stream = ShapesStream(seed=5, split="train", duration_s=60.0, fps=4.0, size=32)
    inside = [t for t in stream.segments if t.end_s <= 60.0]
    truths = scored_truths(stream, 60.0)
    right = [Caption(t.start_s, t.end_s, t.caption) for t in inside]
    r = score(stream, right, seed=5)
    assert r.segments == len(truths) and r.described == r.segments and r.colour == r.action == r.captions
    assert r.ambiguous == len(inside) - len(truths) and len(r.per_segment) == r.segments
    # each caption split in two halves: still described, twice the captions
    halves = [
        Caption(c.start_s + k * (c.end_s - c.start_s) / 2, c.start_s + (k + 1) * (c.end_s - c.start_s) / 2, c.text)
        for c in right
        for k in (0, 1)
    ]
    assert score(stream, halves, seed=5).described == len(truths)
    # every caption shifted onto its neighbour's segment text: described only where neighbours agree
    shifted = [Caption(c.start_s, c.end_s, right[(i + 1) % len(right)].text) for i, c in enumerate(right)]
    same = sum(
        inside[i].slots == inside[(i + 1) % len(inside)].slots for i in range(len(inside)) if not inside[i].ambiguous
    )
    assert score(stream, shifted, seed=5).described == same


def test_a_segment_is_described_by_the_caption_covering_most_of_it_not_by_any_of_them():
    stream = ShapesStream(seed=5, split="train", duration_s=60.0, fps=4.0, size=32)
    truths = scored_truths(stream, 60.0)
    wrong = next(t.caption for t in stream.segments if t.slots.colour != truths[0].slots.colour)
    caps = []
    for t in stream.segments:
        if t.end_s > 60.0:
            break
        cut = t.start_s + 0.3 * t.duration_s  # the right caption over 30 %, a wrong one over the other 70 %
        caps += [Caption(t.start_s, cut, t.caption), Caption(cut, t.end_s, wrong)]
    r = score(stream, caps, seed=5)
    assert r.segments == len(truths) and r.described == sum(t.slots == parse_slots(wrong) for t in truths) < len(truths)
    # the same captions with the right one covering 70 %: every segment described
    caps = [
        c
        for t in stream.segments
        if t.end_s <= 60.0
        for c in (
            Caption(t.start_s, t.start_s + 0.7 * t.duration_s, t.caption),
            Caption(t.start_s + 0.7 * t.duration_s, t.end_s, wrong),
        )
    ]
    assert score(stream, caps, seed=5).described == len(truths)
