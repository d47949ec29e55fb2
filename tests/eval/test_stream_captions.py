"""The offline replay of the service's caption path scores what the end-to-end test scores."""

from perception.data.stream import ShapesStream
from perception.eval.stream_captions import Caption, score


def test_true_captions_describe_every_segment_and_wrong_ones_none():
    stream = ShapesStream(seed=5, split="train", duration_s=60.0, fps=4.0, size=32)
    truths = [t for t in stream.segments if t.end_s <= 60.0]
    right = [Caption(t.start_s, t.end_s, t.caption) for t in truths]
    r = score(stream, right, seed=5)
    assert r.segments == len(truths) and r.described == r.segments and r.colour == r.action == r.captions
    # each caption split in two halves: still described, twice the captions
    halves = [
        Caption(c.start_s + k * (c.end_s - c.start_s) / 2, c.start_s + (k + 1) * (c.end_s - c.start_s) / 2, c.text)
        for c in right
        for k in (0, 1)
    ]
    assert score(stream, halves, seed=5).described == len(truths)
    # every caption shifted onto its neighbour's segment text: described only where neighbours agree
    shifted = [Caption(c.start_s, c.end_s, right[(i + 1) % len(right)].text) for i, c in enumerate(right)]
    same = sum(truths[i].slots == truths[(i + 1) % len(truths)].slots for i in range(len(truths)))
    assert score(stream, shifted, seed=5).described == same
