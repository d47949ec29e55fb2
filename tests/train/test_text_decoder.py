"""`perception train --stage decoder`: a checkpoint without a decoder (an imported open-vljepa one, tiny
configs of the real classes) learns one from text alone, and then captions by decoding, not retrieval."""

from __future__ import annotations

import json

import pytest

from perception import cli
from perception.model import VLJepa
from perception.model.importers.open_vljepa import import_checkpoint
from perception.model.importers.reference_layout import write_best_pt, write_tiny_parts

TEXTS = ["a dog", "the ball", "red circle"]
TINY_DECODER = "{prefix_tokens: 2, hidden: 32, layers: 1, heads: 2, intermediate: 64, max_tokens: 12}"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("open-vljepa")
    parts = write_tiny_parts(root)
    best = write_best_pt(root / "best.pt", parts, max_len=16)
    import_checkpoint(best, root / "ckpt", str(parts["vjepa2"]), str(parts["llama"]), str(parts["gemma3"]))
    return root / "ckpt"


def test_decoder_learns_from_text_alone_and_the_checkpoint_then_decodes(imported, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS + ["", "a dog"]) + "\n")  # blanks and repeats ignored
    out = tmp_path / "with-decoder"
    argv = ["train", "--stage", "decoder", "--checkpoint", str(imported), "--texts", str(texts), "--out", str(out)]
    sets = ["steps=80", "batch_size=3", "lr=1.0e-2", "warmup_steps=5", "embedding_noise=0.0", "device=cpu", "threads=1"]
    sets.append(f"decoder={TINY_DECODER}")
    assert cli.main(argv + [x for s in sets for x in ("--set", s)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["texts"] == 3 and summary["steps"] == 80
    assert summary["last_loss"] < 0.6 * summary["first_loss"], summary
    model = VLJepa.load(out, device="cpu")
    assert model.cfg.y_decoder.kind == "builtin" and not model.captions_by_retrieval
    said = model.describe(model.embed_text(TEXTS, cache=False))
    assert not any(d.retrieved for d in said)
    assert sum(d.text == t for d, t in zip(said, TEXTS)) >= 2, [d.text for d in said]  # the corpus comes back


def test_decoder_stage_needs_its_inputs(imported, tmp_path, capsys):
    assert cli.main(["train", "--stage", "decoder", "--checkpoint", str(imported), "--out", str(tmp_path / "o")]) == 2
    assert "--texts" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    argv = ["train", "--stage", "decoder", "--checkpoint", str(imported), "--texts", str(empty)]
    assert cli.main(argv + ["--out", str(tmp_path / "o")]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_decoder_config_bounds_what_it_sizes(imported, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    argv = ["train", "--stage", "decoder", "--checkpoint", str(imported), "--texts", str(texts)]
    for bad, named in (("decoder.hidden=100000", "decoder.hidden"), ("batch_size=100000000", "batch_size")):
        assert cli.main(argv + ["--out", str(tmp_path / "o"), "--set", bad]) == 2
        assert named in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
