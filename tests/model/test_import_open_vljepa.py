"""`perception weights import open-vljepa`: a best.pt in the reference's layout (tiny configs of the real
transformers classes) becomes our checkpoint, and the imported model gives the reference's embeddings.

The reference's forward is re-implemented here from its semantics (github.com/dion-jy/open-vljepa,
openvljepa/models/*.py, openvljepa/data/msrvtt.py, scripts/eval.py), in plain torch on the transformers
classes it loads, with none of our model code: the two must agree on the same weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from transformers import AutoModel, AutoTokenizer, LlamaForCausalLM, VJEPA2Model

from perception import cli
from perception.model import VLJepa
from perception.model.importers import ImportRefused
from perception.model.importers.open_vljepa import import_checkpoint
from perception.model.importers.reference_layout import (
    PAD,
    reference_state_dict,
    write_best_pt,
    write_tiny_parts,
)
from perception.model.importers.torch_file import UnsafeFileError
from perception.model.window import WindowRunner

REPO = Path(__file__).resolve().parents[2]
PROMPT = "Describe the video."  # scripts/eval.py's retrieval prompt
MAX_LEN = 16


# ----------------------------------------------------------------------------- the reference, re-implemented


def ref_pad_token(tok):
    """openvljepa.data.msrvtt._ensure_pad_token: Llama 3.2's reserved pad token, else EOS."""
    if tok.pad_token is None:
        tok.pad_token = PAD if PAD in tok.get_vocab() else tok.eos_token
    return tok


def ref_frames(video: np.ndarray, num_frames: int, size: int) -> torch.Tensor:
    """video uint8 [T,H,W,3] -> [num_frames,3,S,S]: np.linspace(dtype=int) frames, /255, torchvision
    Resize(S) (short side S, long side truncated, untouched at size) + CenterCrop(S), ImageNet mean/std."""
    idx = np.linspace(0, len(video) - 1, num_frames, dtype=int)
    x = torch.from_numpy(video[idx]).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    nh, nw = (int(size * h / w), size) if w <= h else (size, int(size * w / h))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    x = x[..., top : top + size, left : left + size]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


class RefPredictor(nn.Module):
    """openvljepa.models.predictor.Predictor: the LM's last layers, bidirectional, over [visual; query]."""

    def __init__(self, lm_dir: Path, layers: int, vis_dim: int, proj_dim: int):
        super().__init__()
        base = LlamaForCausalLM.from_pretrained(str(lm_dir)).model
        self.embed_tokens = base.embed_tokens
        self.layers = nn.ModuleList(list(base.layers[-layers:]))
        self.norm = base.norm
        self.rotary_emb = base.rotary_emb
        self.vis_proj = nn.Linear(vis_dim, base.config.hidden_size)
        self.out_proj = nn.Linear(base.config.hidden_size, proj_dim)

    def forward(self, vis, ids, mask):
        B, Nv, _ = vis.shape
        h = torch.cat([self.vis_proj(vis), self.embed_tokens(ids)], dim=1)  # [B,L,H]
        L = h.shape[1]
        full = torch.cat([torch.ones(B, Nv), mask.float()], dim=1)  # [B,L]
        pad = ((1.0 - full) * torch.finfo(h.dtype).min).to(h.dtype)
        attn = pad[:, None, None, :].expand(B, 1, L, L).contiguous()  # PAD keys masked, nothing causal
        pos_ids = torch.arange(L).unsqueeze(0).expand(B, -1)
        pos = self.rotary_emb(h, pos_ids)
        for layer in self.layers:
            out = layer(h, attention_mask=attn, position_ids=pos_ids, use_cache=False, position_embeddings=pos)
            h = out[0] if isinstance(out, tuple) else out
        h = self.norm(h)
        m = full.unsqueeze(-1)
        return self.out_proj((h * m).sum(1) / m.sum(1).clamp(min=1.0))


class RefYEncoder(nn.Module):
    """openvljepa.models.y_encoder.YEncoder: EmbeddingGemma, masked mean pool, projector."""

    def __init__(self, text_dir: Path, proj_dim: int):
        super().__init__()
        self.model = AutoModel.from_pretrained(str(text_dir))
        self.projector = nn.Linear(self.model.config.hidden_size, proj_dim)

    def forward(self, ids, mask):
        h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.projector((h * m).sum(1) / m.sum(1).clamp(min=1.0))


class Reference:
    """The reference's eval path: videos with the retrieval prompt, captions through the Y-encoder."""

    def __init__(self, best: Path, dirs: dict[str, Path]):
        ck = torch.load(best, map_location="cpu", weights_only=True)
        sd, self.cfg = ck["model_state_dict"], ck["config"]
        self.x = VJEPA2Model.from_pretrained(str(dirs["vjepa2"])).eval()
        proj = sd["predictor.out_proj.weight"].shape[0]
        layers = self.cfg["predictor"]["n_keep_layers"]
        self.pred = RefPredictor(dirs["llama"], layers, self.x.config.hidden_size, proj).eval()
        self.pred.load_state_dict({k[10:]: v for k, v in sd.items() if k.startswith("predictor.")}, strict=True)
        self.y = RefYEncoder(dirs["gemma3"], proj).eval()
        self.y.load_state_dict({k[10:]: v for k, v in sd.items() if k.startswith("y_encoder.")}, strict=True)
        self.qtok = ref_pad_token(AutoTokenizer.from_pretrained(str(dirs["llama"])))
        self.ttok = ref_pad_token(AutoTokenizer.from_pretrained(str(dirs["gemma3"])))

    @torch.no_grad()
    def video(self, video: np.ndarray, prompt: str = PROMPT) -> torch.Tensor:
        d = self.cfg["data"]
        x = ref_frames(video, d["num_frames"], d["image_size"])[None]
        vis = self.x(x, skip_predictor=True).last_hidden_state
        q = self.qtok(prompt, max_length=d["max_query_len"], padding="max_length", truncation=True, return_tensors="pt")
        return F.normalize(self.pred(vis, q["input_ids"], q["attention_mask"]).float(), dim=-1)[0]

    @torch.no_grad()
    def caption(self, text: str) -> torch.Tensor:
        d = self.cfg["data"]
        t = self.ttok(text, max_length=d["max_caption_len"], padding="max_length", truncation=True, return_tensors="pt")
        return F.normalize(self.y(t["input_ids"], t["attention_mask"]).float(), dim=-1)[0]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return write_tiny_parts(tmp_path_factory.mktemp("open-vljepa-parts"))


@pytest.fixture(scope="module")
def best(parts, tmp_path_factory):
    return write_best_pt(tmp_path_factory.mktemp("best") / "best.pt", parts, max_len=MAX_LEN)


@pytest.fixture(scope="module")
def imported(parts, best, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "ckpt"
    import_checkpoint(best, out, str(parts["vjepa2"]), str(parts["llama"]), str(parts["gemma3"]))
    return out


def _import(best, parts, out, **swap):
    dirs = {"x_encoder": parts["vjepa2"], "query_lm": parts["llama"], "text_encoder": parts["gemma3"], **swap}
    return import_checkpoint(best, out, **{k: str(v) for k, v in dirs.items()})


def videos() -> list[np.ndarray]:
    """Clips as a decoder hands them over (uint8 [T,H,W,3]): landscape, portrait, square at size."""
    g = np.random.default_rng(0)
    return [
        g.integers(0, 256, (11, 40, 50, 3), dtype=np.uint8),
        g.integers(0, 256, (20, 45, 33, 3), dtype=np.uint8),
        g.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
    ]


# ----------------------------------------------------------------------------- equivalence


def test_imported_model_gives_the_reference_embeddings(best, parts, imported):
    ref = Reference(best, parts)
    model = VLJepa.load(imported, device="cpu", dtype="float32")
    assert model.cfg.predictor.default_query == PROMPT and model.cfg.x_encoder.frames == 8
    for video in videos():
        clip = torch.from_numpy(video).permute(0, 3, 1, 2)[None]  # [1,T,3,H,W] uint8
        ours = model.predict(model.encode_video(clip), model.cfg.predictor.default_query)[0]
        torch.testing.assert_close(ours, ref.video(video), atol=2e-5, rtol=1e-4)
    asked = model.predict(model.encode_video(clip), "what is happening in the video")[0]  # `perception ask`
    torch.testing.assert_close(asked, ref.video(video, "what is happening in the video"), atol=2e-5, rtol=1e-4)
    captions = ["a dog runs on the street", "red circle", "a person is cooking in the kitchen with a ball"]
    ours = model.embed_text(captions)
    for row, text in zip(ours, captions):
        torch.testing.assert_close(row, ref.caption(text), atol=2e-5, rtol=1e-4)
    # the service's window pass (the encoder node's WindowRunner, with the model's own prompt) agrees too
    runner = WindowRunner(model, model.cfg.predictor.default_query, jit=False)
    clip = torch.from_numpy(videos()[0]).permute(0, 3, 1, 2)[None]
    torch.testing.assert_close(runner(clip)[1][0], ref.video(videos()[0]), atol=2e-5, rtol=1e-4)


def test_queries_pad_with_llama32s_reserved_token_and_padding_changes_nothing(imported, parts):
    model = VLJepa.load(imported, device="cpu", dtype="float32")
    q = model.tokenize_queries([PROMPT])
    pad_id = AutoTokenizer.from_pretrained(str(parts["llama"])).get_vocab()[PAD]
    assert q.ids.shape == (1, MAX_LEN) and int(q.mask.sum()) == 5  # BOS + 4 words, then PAD to max_length
    assert (q.ids[0, 5:] == pad_id).all() and (q.mask[0, 5:] == 0).all()
    s_v = model.encode_video(torch.randint(0, 256, (1, 8, 3, 32, 32), dtype=torch.uint8))
    short = model.predictor(s_v, q.ids[:, :5], q.mask[:, :5]).embedding  # no padding at all
    torch.testing.assert_close(model.predictor(s_v, q.ids, q.mask).embedding, short, atol=1e-5, rtol=1e-5)


def test_checkpoint_stores_the_trained_parts_only_and_records_the_reference_settings(imported, parts):
    meta = json.loads((imported / "config.json").read_text())
    assert set(meta["external"]) == {"x_encoder.backbone.", "predictor.query_embed.table."}
    with safe_open(str(imported / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert not any(k.startswith(("x_encoder.", "predictor.query_embed.")) for k in keys)
    assert any(k.startswith("y_encoder.backbone.") for k in keys)  # fine-tuned EmbeddingGemma is stored
    m = meta["model"]
    assert m["x_encoder"]["frame_index"] == "floor" and m["x_encoder"]["resize"] == "torchvision"
    assert m["predictor"]["query_padding"] == "max_length" and m["y_encoder"]["padding"] == "max_length"
    assert m["y_decoder"]["kind"] == "retrieval" and not m["learn_temperature"]
    model = VLJepa.load(imported, device="cpu")
    assert math.isclose(float(model.temperature), 0.07, rel_tol=1e-6)


# ----------------------------------------------------------------------------- refusals


def _bad_state(parts, change):
    sd = reference_state_dict(parts, layers=2, proj_dim=24)
    change(sd)
    return sd


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda sd: sd.update({"predictor.vis_proj.weight": torch.zeros(32, 40)}), "predictor.visual_proj.weight"),
        (lambda sd: sd.pop("predictor.out_proj.bias"), "predictor.head.bias"),
        (lambda sd: sd.update({"predictor.extra.weight": torch.zeros(2)}), "predictor.extra.weight"),
        (lambda sd: sd.update({"x_encoder.projector.weight": torch.zeros(2, 2)}), "x_encoder.projector.weight"),
        (lambda sd: sd.pop("predictor.layers.1.mlp.up_proj.weight"), "predictor.stack.layers.1.mlp.up_proj.weight"),
        (lambda sd: sd["y_encoder.projector.bias"].fill_(float("nan")), "y_encoder.head.bias"),
        (lambda sd: sd.pop("predictor.embed_tokens.weight"), "predictor.embed_tokens.weight"),
        (lambda sd: sd["predictor.embed_tokens.weight"].add_(1.0), "predictor.embed_tokens.weight"),
    ],
    ids=["shape", "missing", "unexpected", "x-projector", "missing-layer-tensor", "nan", "no-table", "other-table"],
)
def test_a_mismatched_tensor_is_refused_by_name(parts, tmp_path, change, named):
    bad = write_best_pt(tmp_path / "bad.pt", parts, max_len=MAX_LEN, state=_bad_state(parts, change))
    with pytest.raises(ImportRefused, match=named.replace(".", r"\.")):
        _import(bad, parts, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written for a refused file


def test_pretrained_dirs_that_do_not_fit_are_refused(parts, best, tmp_path):
    with pytest.raises(ImportRefused, match="model_type"):
        _import(best, parts, tmp_path / "a", x_encoder=parts["llama"])
    other = write_tiny_parts(tmp_path / "other")  # same shapes, other weights: not the LM it was trained on
    torch.manual_seed(5)
    LlamaForCausalLM(LlamaForCausalLM.config_class.from_pretrained(str(other["llama"]))).save_pretrained(other["llama"])
    with pytest.raises(ImportRefused, match="different Llama"):
        _import(best, parts, tmp_path / "b", query_lm=other["llama"])


class RunsCode:
    """Unpickling this would create a file: a checkpoint must never get that far."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_file_that_would_run_code_is_refused_unopened(parts, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": reference_state_dict(parts, 2, 24), "config": {}, "x": RunsCode(marker)}, path)
    with pytest.raises(UnsafeFileError, match="open"):
        _import(path, parts, tmp_path / "out")
    assert not marker.exists()
    legacy = tmp_path / "legacy.pt"
    torch.save({"model_state_dict": {}}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeFileError, match="not a torch.save zip"):
        _import(legacy, parts, tmp_path / "out")


# ----------------------------------------------------------------------------- the command


def test_command_imports_and_refuses_in_one_line(parts, best, tmp_path, capsys):
    out = tmp_path / "ckpt"
    argv = ["weights", "import", "open-vljepa", str(best), "--out", str(out)]
    dirs = ["--x-encoder", str(parts["vjepa2"]), "--query-lm", str(parts["llama"])]
    dirs += ["--text-encoder", str(parts["gemma3"])]
    assert cli.main(argv + dirs) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tensors"] > 0 and summary["predictor_layers"] == 2 and summary["epoch"] == 3
    assert VLJepa.load(out).cfg.preset == "open-vljepa"
    bad = write_best_pt(
        tmp_path / "bad.pt",
        parts,
        max_len=MAX_LEN,
        state=_bad_state(parts, lambda sd: sd.update({"predictor.out_proj.weight": torch.zeros(24, 7)})),
    )
    capsys.readouterr()
    assert cli.main(["weights", "import", "open-vljepa", str(bad), "--out", str(tmp_path / "x"), *dirs]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("perception weights import:") and "predictor.head.weight" in err[0]
    assert not (tmp_path / "x").exists()
