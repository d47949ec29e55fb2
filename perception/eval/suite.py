"""The evaluation suite of docs/model.md "The evaluation protocol": a model + ShapesWorld data -> metric JSON.

Every metric is reported as `{"value", "ci95": [lo, hi], "n"}` (perception/eval/bootstrap.py), on the
split asked for: `val` for every choice of recipe, hyper-parameter and checkpoint, `heldout` (the test
split) only to report. Clip tasks read `clips` clips of the first seed:
- classification: zero-shot, the neutral-query S^_Y against the texts of all 240 (colour, shape, action)
  combinations, training ones included, so no slot can be read off the other two; per slot and joint;
- retrieval_r1: each clip's canonical caption ranks a gallery of `retrieval_pool` clips of the split plus
  as many clips of training combinations (distractors that share two slots with the query);
- vqa_accuracy: the question as the query, nearest candidate answer, per question type;
- caption_cider / caption_slot_accuracy: greedy Y-decoder output of the neutral-query S^_Y.
Streams (`streams_per_seed` per seed): selective decoding (perception/eval/selective.py) and the
service's caption path end to end (perception/eval/stream_captions.py), with intervals from a bootstrap
over streams. Ambiguous stream segments are left out of both and counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bus.logs import get_logger
from perception.data.shapesworld import ShapesWorldClips, collate_clips
from perception.data.vocab import ACTION_LABELS, ACTIONS, ALL_COMBOS, TEST_SPLIT, action_label_texts, parse_slots
from perception.eval.bootstrap import accuracy, bootstrap_mean, per_key
from perception.eval.cider import CiderD
from perception.eval.embedding_cache import EmbeddingCache, model_fingerprint
from perception.eval.metrics import normalize_text, slot_accuracy, vqa_accuracy
from perception.eval.operating_point import operating_point_report, summary_lines
from perception.eval.selective import Annotation, Stream, plot_curve, selective_decoding_curve
from perception.eval.stream_captions import captions_of, score, service_segmenter
from perception.eval.stream_embed import batches, eval_stream, stream_embeddings
from perception.model import VLJepa
from perception.nodes.segmenter import OnlineSegmenterConfig

log = get_logger("eval.suite")

DISTRACTOR_SEED = 10_000  # training-combination clips for retrieval galleries: a seed no recipe trains on


@dataclass(frozen=True)
class SuiteConfig:
    clips: int = 3000  # 300 clips gave +-0.025 at 0.95; 3000 gives about +-0.008
    retrieval_pool: int = 100  # clips of the split per gallery, plus as many distractors
    seeds: tuple[int, ...] = (0, 1, 2)  # stream seeds; clip tasks use the first
    streams_per_seed: int = 16  # 48 streams: 12 gave matched reductions that swung 1.9x-3.8x
    stream_seconds: float = 60.0
    step_s: float = 0.25  # one embedding per step (4 Hz)
    window_s: float = 2.0  # the model's frames are spread over this span, centred on the step
    batch: int = 64
    decode_batch: int = 256
    resamples: int = 1000  # bootstrap draws for the stream metrics
    events_config: str | None = None  # service config whose segmenter the caption path replays
    cache_dir: str | None = None  # stream embeddings cached here per model fingerprint (None: no cache)

    @classmethod
    def quick(cls) -> SuiteConfig:
        return cls(clips=64, retrieval_pool=32, seeds=(0,), streams_per_seed=1, stream_seconds=30.0, resamples=200)

    def stream_seeds(self) -> list[int]:
        return [s * 1000 + k for s in self.seeds for k in range(self.streams_per_seed)]


def _slots_dict(text: str) -> dict[str, str]:
    slots = parse_slots(text)
    if slots is None:
        raise ValueError(f"no slots in {text!r}")
    return slots._asdict()


def class_texts() -> list[str]:
    """One zero-shot class text per (colour, shape, action), in ALL_COMBOS order."""
    return [f"the {c} {s} {ACTION_LABELS[a]}" for c, s, a in ALL_COMBOS]


@dataclass
class ClipBatch:
    s_hat: torch.Tensor  # [N, D] neutral-query S^_Y, unit rows
    slots: list = field(default_factory=list)
    captions: list[list[str]] = field(default_factory=list)
    vqa_pred: list[str] = field(default_factory=list)
    vqa_gold: list[str] = field(default_factory=list)
    vqa_kind: list[str] = field(default_factory=list)

    @property
    def canon(self) -> list[str]:
        return [c[0] for c in self.captions]


def embed_clips(model: VLJepa, data: ShapesWorldClips, cfg: SuiteConfig, questions: bool) -> ClipBatch:
    """S^_Y of every clip, and with `questions` each clip's VQA answered from its one S_V."""
    out = ClipBatch(torch.empty(0))
    s_hat = []
    for idx in batches(len(data), cfg.batch):
        b = collate_clips([data[i] for i in idx])
        s_v = model.encode_video(b["video"])  # [B,N,Dv]
        s_hat.append(model.predict(s_v, ""))  # [B,D]
        out.slots += b["slots"]
        out.captions += b["captions"]
        rows = [(i, qa) for i, qas in enumerate(b["qa"]) for qa in qas] if questions else []
        if rows:
            sv_rep = s_v[torch.tensor([i for i, _ in rows])]  # [Q,N,Dv] one row per question
            q_hat = model.predict(sv_rep, [qa["question"] for _, qa in rows])  # [Q,D]
            out.vqa_pred += model.answer(q_hat, [qa["candidates"] for _, qa in rows]).choices
            out.vqa_gold += [qa["answer"] for _, qa in rows]
            out.vqa_kind += [qa["kind"] for _, qa in rows]
    out.s_hat = torch.cat(s_hat)
    return out


def classification(model: VLJepa, clips: ClipBatch) -> dict[str, Any]:
    pred = (clips.s_hat @ model.embed_text(class_texts()).T).argmax(dim=1).tolist()  # [N] combo index
    labels = (clips.s_hat @ model.embed_text(action_label_texts()).T).argmax(dim=1).tolist()
    return {
        **classification_metrics(pred, clips.slots),
        "classification_action_labels": accuracy(
            [ACTIONS[p] == s.action for p, s in zip(labels, clips.slots, strict=True)]
        ),
    }


def classification_metrics(pred: list[int], slots: list) -> dict[str, Any]:
    """Predicted class_texts() indices against the clips' true slots: joint top-1 and per slot."""
    right = {k: [] for k in ("colour", "shape", "action")}
    for p, gold in zip(pred, slots, strict=True):
        guess = ALL_COMBOS[p]
        for k in right:
            right[k].append(getattr(guess, k) == getattr(gold, k))
    joint = [all(v) for v in zip(*right.values(), strict=True)]
    return {
        "classification_top1": accuracy(joint),
        "classification_per_slot": {k: accuracy(v) for k, v in right.items()},
    }


def retrieval(
    embed_text: Callable[[list[str]], torch.Tensor], clips: ClipBatch, distractors: ClipBatch, pool: int
) -> dict[str, Any]:
    """Text -> clip R@1 over galleries of `pool` clips of the split + `pool` training-combination clips.

    A hit is a top-ranked clip whose canonical caption is the query (a distractor never is: its
    combination was trained on, the query's was not)."""
    hits: list[bool] = []
    for idx in batches(len(clips.canon), pool):
        if len(idx) < 2:
            continue
        gallery = torch.cat([clips.s_hat[list(idx)], distractors.s_hat[list(idx)]])  # [2P,D]
        names = [normalize_text(clips.canon[i]) for i in idx] + [normalize_text(distractors.canon[i]) for i in idx]
        q = embed_text([clips.canon[i] for i in idx])  # [P,D]
        best = (q @ gallery.T).argmax(dim=1).tolist()  # [P] first index on ties
        hits += [names[b] == normalize_text(clips.canon[i]) for b, i in zip(best, idx, strict=True)]
    return {"retrieval_r1": accuracy(hits), "retrieval_gallery": {"split_clips": pool, "distractors": pool}}


def captioning(model: VLJepa, clips: ClipBatch, cfg: SuiteConfig) -> dict[str, Any]:
    hyps: list[str] = []
    for idx in batches(len(clips.canon), cfg.decode_batch):
        hyps += model.decode(clips.s_hat[list(idx)])
    return caption_metrics(hyps, clips)


def caption_metrics(hyps: list[str], clips: ClipBatch) -> dict[str, Any]:
    """One caption per clip against its reference captions: CIDEr-D and slot accuracy."""
    cider = CiderD(clips.captions).score(hyps)
    slots = slot_accuracy(hyps, [s._asdict() for s in clips.slots], _slots_dict)
    return {
        "caption_cider": bootstrap_mean(cider.per_item).to_dict(),
        "caption_slot_accuracy": accuracy(slots.item_correct["all"]),
        "caption_slot_accuracy_per_slot": {k: accuracy(v) for k, v in slots.item_correct.items() if k != "all"},
        "caption_parse_failures": slots.parse_failures,
        "caption_examples": [{"reference": clips.canon[i], "decoded": hyps[i]} for i in range(min(5, len(hyps)))],
    }


def clip_tasks(model: VLJepa, split: str, seed: int, cfg: SuiteConfig) -> dict[str, Any]:
    xc = model.cfg.x_encoder
    data = ShapesWorldClips(cfg.clips, seed=seed, split=split, frames=xc.frames, size=xc.image_size)
    clips = embed_clips(model, data, cfg, questions=True)
    log.info("clips embedded", clips=cfg.clips, split=split)
    distractor_data = ShapesWorldClips(
        cfg.clips, seed=DISTRACTOR_SEED + seed, split="train", frames=xc.frames, size=xc.image_size
    )
    distractors = embed_clips(model, distractor_data, cfg, questions=False)
    log.info("distractors embedded", clips=cfg.clips)
    vqa = vqa_accuracy(clips.vqa_pred, clips.vqa_gold, clips.vqa_kind)
    return {
        **classification(model, clips),
        **retrieval(model.embed_text, clips, distractors, cfg.retrieval_pool),
        "vqa_accuracy": accuracy(vqa.item_correct),
        "vqa_accuracy_per_type": per_key(vqa.item_correct, clips.vqa_kind),
        **captioning(model, clips, cfg),
    }


@dataclass
class EvalStreams:
    """Embedded streams with what both stream tasks need."""

    streams: list = field(default_factory=list)  # ShapesStream
    embs: list[np.ndarray] = field(default_factory=list)  # (T, D) each
    times: list[np.ndarray] = field(default_factory=list)  # (T,) each


def embed_streams(model: VLJepa, split: str, cfg: SuiteConfig) -> EvalStreams:
    out = EvalStreams()
    seeds = cfg.stream_seeds()
    cache = EmbeddingCache(cfg.cache_dir, model_fingerprint(model)) if cfg.cache_dir else None
    for k, seed in enumerate(seeds):
        st = eval_stream(model, seed, split, cfg.stream_seconds, cfg.window_s)
        key = {
            "split": split,
            "seed": seed,
            "seconds": cfg.stream_seconds,
            "step_s": cfg.step_s,
            "window_s": cfg.window_s,
        }
        cached = cache.get(key) if cache else None
        if cached is None:
            embs, times = stream_embeddings(model, st, cfg.step_s, cfg.window_s, cfg.batch)
            if cache:
                cache.put(key, embs, times)
        else:
            embs, times = cached
        out.streams.append(st)
        out.embs.append(embs)
        out.times.append(times)
        log.info("stream embedded", stream=f"{k + 1}/{len(seeds)}", seed=seed, steps=len(times))
    return out


def scorable_streams(data: EvalStreams) -> tuple[list[Stream], int, list[int]]:
    """(streams with their annotations, ambiguous segments excluded, seeds of streams skipped): a stream
    whose segments are all ambiguous or outside the embedded span has no annotation to score it by; it is
    skipped and counted, so any seed evaluates."""
    streams, ambiguous, skipped = [], 0, []
    for st, embs, times in zip(data.streams, data.embs, data.times, strict=True):
        inside = [s for s in st.segments if times[0] <= (s.start_s + s.end_s) / 2 <= times[-1]]
        ambiguous += sum(s.ambiguous for s in inside)
        anns = [
            Annotation(time=(s.start_s + s.end_s) / 2, references=list(s.captions), span=(s.start_s, s.end_s))
            for s in inside
            if not s.ambiguous
        ]
        if not anns:
            skipped.append(st.seed)
            log.warning("stream skipped: no scorable annotation", seed=st.seed, segments=len(st.segments))
            continue
        streams.append(Stream(embs=embs, times=times, annotations=anns))
    return streams, ambiguous, skipped


def selective_task(model: VLJepa, split: str, data: EvalStreams, cfg: SuiteConfig, plot) -> dict[str, Any]:
    """The selective-decoding curve over the streams that can be scored (`scorable_streams`); the skipped
    ones are counted in `streams.skipped_no_annotation`."""
    streams, ambiguous, skipped = scorable_streams(data)
    counts = {
        "count": len(streams),
        "seeds": list(cfg.seeds),
        "skipped_no_annotation": len(skipped),
        "skipped_stream_seeds": skipped,
        "step_s": cfg.step_s,
        "window_s": cfg.window_s,
        "ambiguous_excluded": ambiguous,
    }
    if not streams:  # nothing to score: every figure n/a, the reason in the report
        return {
            "streams": {**counts, "annotations": 0},
            "headline": None,
            "reduction": {},
            "null_reduction": {},
            "area_ratio": {},
            "perfect_segmentation_bound": None,
            "note": "no stream had a scorable annotation (all segments ambiguous or outside the embedded span)",
        }

    def decode(embs: np.ndarray) -> list[str]:
        out: list[str] = []
        for idx in batches(len(embs), cfg.decode_batch):
            out += model.decode(torch.from_numpy(embs[list(idx)]).float())
        return out

    result = selective_decoding_curve(streams, decode, resamples=cfg.resamples)
    d = result.to_dict()
    d["streams"] = {
        **counts,
        "seconds": round(float(np.mean([s.times[-1] - s.times[0] for s in streams])), 1),
        "annotations": sum(len(s.annotations) for s in streams),
    }
    if plot:
        plot_curve(result, plot, title=f"Selective decoding, ShapesWorld {split} streams ({len(streams)})")
        d["plot"] = str(plot)
    return d


def scored_streams(data: EvalStreams) -> tuple[list[Stream], list[int], int]:
    """The streams that have something to score (a non-ambiguous segment inside the embedded span), the
    seed set of each (stream_seeds(): seed s owns streams s * 1000 + k), and how many were skipped."""
    streams, sets, skipped = [], [], 0
    for st, embs, times in zip(data.streams, data.embs, data.times, strict=True):
        anns = [
            Annotation(time=(s.start_s + s.end_s) / 2, references=list(s.captions), span=(s.start_s, s.end_s))
            for s in st.segments
            if times[0] <= (s.start_s + s.end_s) / 2 <= times[-1] and not s.ambiguous
        ]
        if not anns:
            skipped += 1
            continue
        streams.append(Stream(embs=embs, times=times, annotations=anns))
        sets.append(st.seed // 1000)
    return streams, sets, skipped


def stream_decoder(model: VLJepa, cfg: SuiteConfig) -> Callable[[np.ndarray], list[str]]:
    """(N, D) embeddings -> N greedy captions, in batches of cfg.decode_batch."""

    def decode(embs: np.ndarray) -> list[str]:
        out: list[str] = []
        for idx in batches(len(embs), cfg.decode_batch):
            out += model.decode(torch.from_numpy(embs[list(idx)]).float())
        return out

    return decode


def operating_task(model: VLJepa, data: EvalStreams, cfg: SuiteConfig) -> dict[str, Any]:
    """Selective vs uniform at fixed decode rates (perception/eval/operating_point.py), on every stream
    and on each seed's streams as a disjoint set, with the events node's segmenter shape."""
    streams, sets, skipped = scored_streams(data)
    online = service_segmenter(cfg.events_config, cfg.step_s)
    decode = stream_decoder(model, cfg)
    report = operating_point_report(streams, decode, seed_sets=sets, online=online, resamples=cfg.resamples)
    report["streams_without_annotation"] = skipped
    return report


def described_task(
    model: VLJepa, data: EvalStreams, cfg: SuiteConfig, seg_cfg: OnlineSegmenterConfig | None = None
) -> dict[str, Any]:
    """The service's caption path: online segments (the events node's settings unless `seg_cfg`), mean
    embedding decoded."""
    seg_cfg = seg_cfg or service_segmenter(cfg.events_config, cfg.step_s)
    values, groups, ambiguous, captions, mentioned = [], [], 0, 0, 0
    for k, (st, embs, times) in enumerate(zip(data.streams, data.embs, data.times, strict=True)):
        caps = captions_of(model, embs, times, seg_cfg, cfg.step_s)
        r = score(st, caps, st.seed)
        values += r.per_segment
        groups += [k] * len(r.per_segment)
        ambiguous += r.ambiguous
        captions += r.captions
        mentioned += r.mentioned
    described = bootstrap_mean(np.asarray(values, float), groups, cfg.resamples).to_dict() if values else None
    return {
        "stream_segments_described": described,  # None: no stream had a segment to score
        "stream_segments": {
            "scored": len(values),
            "ambiguous_excluded": ambiguous,
            "captions": captions,
            "mentioned": mentioned,  # the live test's looser check (stream_captions.py)
        },
    }


def evaluate(
    model: VLJepa, split: str = TEST_SPLIT, cfg: SuiteConfig | None = None, plot: str | Path | None = None
) -> dict[str, Any]:
    """Every metric of the protocol as one JSON-ready dict."""
    cfg = cfg or SuiteConfig()
    model.eval()
    t0 = time.perf_counter()
    out: dict[str, Any] = {"split": split, "seeds": list(cfg.seeds)}
    out.update(clip_tasks(model, split, cfg.seeds[0], cfg))
    t1 = time.perf_counter()
    log.info("clip tasks done", seconds=round(t1 - t0, 1))
    data = embed_streams(model, split, cfg)
    out.update(described_task(model, data, cfg))
    out["selective_decoding"] = selective_task(model, split, data, cfg, plot)
    out["operating_point"] = operating_task(model, data, cfg)
    out["suite"] = asdict(cfg)
    out["wall_s"] = {"clip_tasks": round(t1 - t0, 1), "streams": round(time.perf_counter() - t1, 1)}
    return out


def _fmt(m: dict | float | None) -> str:
    if m is None:
        return "n/a"
    if isinstance(m, dict):
        v, (lo, hi) = m["value"], m["ci95"]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "n/a"
        return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
    return f"{m:.3f}"


def summary_table(result: dict[str, Any]) -> str:
    """The headline numbers with their 95 % intervals."""
    sel = result["selective_decoding"]
    rows = [("split", f"{result['split']} (seeds {result['seeds']})")]
    rows += [("classification_top1 (joint)", _fmt(result["classification_top1"]))]
    rows += [(f"  {k}", _fmt(v)) for k, v in result["classification_per_slot"].items()]
    rows += [("retrieval_r1 (with distractors)", _fmt(result["retrieval_r1"]))]
    rows += [("vqa_accuracy", _fmt(result["vqa_accuracy"]))]
    rows += [(f"  {k}", _fmt(v)) for k, v in result["vqa_accuracy_per_type"].items()]
    rows += [("caption_cider", _fmt(result["caption_cider"]))]
    rows += [("caption_slot_accuracy", _fmt(result["caption_slot_accuracy"]))]
    rows += [(f"  {k}", _fmt(v)) for k, v in result["caption_slot_accuracy_per_slot"].items()]
    rows += [("stream segments described", _fmt(result["stream_segments_described"]))]
    for key, red in sel["reduction"].items():
        star = " (headline)" if key == sel["headline"] else ""
        rows.append((f"reduction {key}{star}", f"{_fmt(red)} {red['how']}"))
    for key, red in sel["null_reduction"].items():
        rows.append((f"null: {key} vs itself", f"{_fmt(red)} {red['how']}"))
    for key, area in sel["area_ratio"].items():
        rows.append((f"area ratio {key}", _fmt(area)))
    if sel.get("oracle"):
        rows.append(("oracle (true segments) CIDEr", _fmt(sel["oracle"]["cider"])))
    rows.append(("perfect-segmentation bound", _fmt(sel["perfect_segmentation_bound"])))
    skipped = sel["streams"].get("skipped_no_annotation", 0)
    if skipped:
        rows.append(("streams skipped (no annotation)", f"{skipped} of {skipped + sel['streams']['count']}"))
    w = max(len(k) for k, _ in rows)
    table = "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
    if "operating_point" in result:
        table += "\n" + "\n".join(summary_lines(result["operating_point"]))
    return table
