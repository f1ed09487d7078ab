"""Evaluating ASE-MLLM models: `ase-mllm eval …` or `evaluate(model_dir, data_spec, split, …)`.

For each model (one, or two side by side with `--compare`):

* critiques by greedy decoding through the Critic, in batches, then the caption metrics of the whole split in
  ONE scoring call (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, and SPICE when its jars are present), against every
  reference the dataset has for an image;
* score SRCC / PLCC where the dataset has scores;
* saliency CC, KLD, SIM where the caption data carries JSONL `saliency` pseudo-labels (reported as
  *pseudo-label agreement*: agreement with spectral residual, not with human fixations), and CC, KLD, SIM, NSS,
  AUC-Judd on real fixation data given with `--saliency-data` (SALICON, MIT1003, folder).

Writes OUT/report.json, OUT/report.md (a markdown table; with two models a B - A column) and
OUT/predictions-<model>.jsonl, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CAPTION_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
SCORE_KEYS = ("SRCC", "PLCC")
SALIENCY_KEYS = ("CC", "KLD", "SIM", "NSS", "AUC-Judd")
LOWER_IS_BETTER = {"KLD"}


@dataclass
class ModelResult:
    label: str
    model_dir: str
    fingerprint: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # section -> metric -> value
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i: i + size]


def _load_images(paths: list[Path]) -> tuple[list, list[int], list[str]]:
    """Decoded images, the indices that loaded, and the failures (counted, never fatal)."""
    from .imageio import ImageLoadError, load_image

    images, ok, failed = [], [], []
    for i, path in enumerate(paths):
        try:
            images.append(load_image(path))
            ok.append(i)
        except (ImageLoadError, OSError) as e:
            failed.append(f"{path}: {e}")
    return images, ok, failed


def _critique_split(critic, samples: list, batch_size: int, max_new_tokens: int | None,
                    progress: bool) -> tuple[dict, list[str]]:
    """id -> Critique for every sample whose image loads; and the failures."""
    from tqdm.auto import tqdm

    results, failures = {}, []
    bar = tqdm(total=len(samples), desc="critique", disable=not progress, dynamic_ncols=True)
    for chunk in _batches(samples, batch_size):
        images, ok, failed = _load_images([s.image for s in chunk])
        failures += failed
        if images:
            outs = critic.critique(images, max_new_tokens=max_new_tokens, names=[chunk[i].id for i in ok])
            for i, c in zip(ok, outs):
                results[chunk[i].id] = c
        bar.update(len(chunk))
    bar.close()
    return results, failures


def _pseudo_saliency_metrics(critiques: dict, labels: dict[str, Path]) -> dict[str, float]:
    from .data import read_fixation_map
    from .metrics import aggregate_saliency, saliency_metrics

    per_image = []
    for sid, c in critiques.items():
        path = labels.get(sid)
        if path is not None and path.is_file():
            per_image.append(saliency_metrics(c.saliency, gt_map=read_fixation_map(path)))
    return aggregate_saliency(per_image) if per_image else {}


def _fixation_metrics(critic, samples: list, batch_size: int) -> tuple[dict[str, float], int, list[str]]:
    """The model's saliency maps (IASM only: no decoding needed) against real fixation data."""
    import torch

    from .critic import crop_saliency
    from .data import read_fixation_map, read_fixations
    from .metrics import aggregate_saliency, saliency_metrics

    model = critic.model
    per_image, failures = [], []
    for chunk in _batches(samples, batch_size):
        images, ok, failed = _load_images([s.image for s in chunk])
        failures += failed
        if not images:
            continue
        inputs = critic.processor.process_images(images)
        prior = inputs.get("saliency_prior")
        with torch.inference_mode():
            sal, _, _ = model.model.vision_tower.iasm(
                inputs["pixel_values"].to(model.device, model.dtype), None if prior is None else prior.to(model.device))
        for i, image, m in zip(ok, images, sal.float().cpu().numpy()):
            s = chunk[i]
            pred = crop_saliency(m, image.size)
            gt_map = read_fixation_map(s.saliency_map) if s.saliency_map else None
            fix = read_fixations(s.fixations) if s.fixations else None
            per_image.append(saliency_metrics(pred, gt_map=gt_map, fixations=fix))
    return (aggregate_saliency(per_image) if per_image else {}), len(per_image), failures


def evaluate_model(model_dir: str | os.PathLike, samples: list, references: dict[str, list[str]], *,
                   label: str | None = None, saliency_labels: dict[str, Path] | None = None,
                   saliency_samples: list | None = None, batch_size: int = 8, max_new_tokens: int | None = None,
                   device: str | None = None, spice: bool | None = None,
                   progress: bool = False) -> tuple[ModelResult, dict]:
    """Evaluate one model on already-loaded samples. Returns the result and id -> Critique."""
    from .critic import Critic
    from .metrics import caption_metrics, score_metrics

    t0 = time.perf_counter()
    critic = Critic.from_pretrained(model_dir, device=device)
    result = ModelResult(label or Path(model_dir).name, str(model_dir), critic.model_id)
    critiques, failures = _critique_split(critic, samples, batch_size, max_new_tokens, progress)
    result.timings["critique_s"] = round(time.perf_counter() - t0, 2)
    result.counts.update(images=len(critiques), unreadable_images=len(failures))
    for f in failures[:5]:
        log.warning("unreadable image skipped: %s", f)
    if not critiques:
        raise ValueError("no image of the split could be read")

    t1 = time.perf_counter()
    candidates = {sid: c.text for sid, c in critiques.items()}
    result.metrics["captions"] = caption_metrics(candidates, {sid: references[sid] for sid in candidates}, spice=spice)
    result.timings["caption_metrics_s"] = round(time.perf_counter() - t1, 2)

    words = _checker_metrics(critiques)
    if words:
        result.metrics["checker"] = words
    scored = [s for s in samples if s.score is not None and s.id in critiques]
    if scored:
        result.metrics["score"] = score_metrics([critiques[s.id].score for s in scored], [s.score for s in scored])
        result.counts["scored_images"] = len(scored)
    if saliency_labels:
        pseudo = _pseudo_saliency_metrics(critiques, saliency_labels)
        if pseudo:
            result.metrics["saliency_pseudo"] = pseudo
            result.counts["pseudo_labelled_images"] = sum(1 for sid in critiques if sid in saliency_labels)
    if saliency_samples:
        fix, n, failed = _fixation_metrics(critic, saliency_samples, batch_size)
        if fix:
            result.metrics["saliency"] = fix
            result.counts["fixation_images"] = n
            result.counts["unreadable_fixation_images"] = len(failed)
    result.timings["total_s"] = round(time.perf_counter() - t0, 2)
    return result, critiques


def _checker_metrics(critiques: dict) -> dict[str, float]:
    """For a model with an attribute head: how often the decoder's own text (before the run-time repair) has
    sentences the checker cannot read back, and contradicts the head's verdicts, its score or itself
    (ase_model.starter.checker); and how much the repair changed. Empty for other models."""
    from .starter.checker import check

    judged = [c for c in critiques.values() if c.verdicts is not None and c.raw_text is not None]
    if not judged:
        return {}
    sentences = unknown = contradicting = repaired = 0
    for c in judged:
        report = check(c.raw_text, c.verdicts, c.score)
        sentences += len(report.reading.sentences)
        unknown += report.reading.unknown
        contradicting += report.contradictions > 0
        repaired += c.text != c.raw_text
    n = len(judged)
    return {"unreadable_sentences": unknown / max(1, sentences), "contradicting_critiques": contradicting / n,
            "repaired_critiques": repaired / n}


def _labels(model_dirs: list[str]) -> list[str]:
    names = [Path(d).resolve().name for d in model_dirs]
    if len(set(names)) < len(names):
        return [f"{chr(65 + i)}: {n}" for i, n in enumerate(names)]
    return names


def evaluate(model_dir: str | os.PathLike, data_spec: str, split: str = "test", *,
             compare: str | os.PathLike | None = None, saliency_data: str | None = None,
             saliency_split: str | None = None, out: str | os.PathLike | None = None, batch_size: int = 8,
             max_new_tokens: int | None = None, limit: int | None = None, device: str | None = None,
             spice: bool | None = None, progress: bool = False) -> dict:
    """Evaluate a model (and optionally a second one, side by side) on one split of a captioning dataset.

    Returns the report (also written to OUT/report.json and OUT/report.md when `out` is given); its "markdown"
    entry is the table.
    """
    from .data import load_captions, load_saliency
    from .metrics import spice_jars
    from .training import jsonl_saliency_labels

    samples, report = load_captions(data_spec, split)
    if limit:
        samples = samples[:limit]
    if not samples:
        raise ValueError(f"{data_spec}: no samples in split {split!r} ({report.summary()})")
    references = {s.id: list(s.references) for s in samples}
    fmt, _, path = data_spec.partition(":")
    labels = jsonl_saliency_labels(Path(os.path.expanduser(path))) if fmt.strip().lower() == "jsonl" else {}
    labels = {sid: p for sid, p in labels.items() if sid in references}
    sal_samples, sal_report = None, None
    if saliency_data:
        sal_samples, sal_report = load_saliency(saliency_data, saliency_split or split)
        sal_samples = [s for s in sal_samples if s.saliency_map is not None or s.fixations is not None]
        if limit:
            sal_samples = sal_samples[:limit]

    model_dirs = [str(model_dir)] + ([str(compare)] if compare else [])
    results, all_critiques = [], []
    for d, label in zip(model_dirs, _labels(model_dirs)):
        r, critiques = evaluate_model(d, samples, references, label=label, saliency_labels=labels,
                                      saliency_samples=sal_samples, batch_size=batch_size,
                                      max_new_tokens=max_new_tokens, device=device, spice=spice, progress=progress)
        results.append(r)
        all_critiques.append(critiques)

    notes = [f"data: {report.summary()}"]
    if sal_report is not None:
        notes.append(f"fixation data: {sal_report.summary()}")
    if labels:
        notes.append(f"saliency (pseudo-labels): agreement with the dataset's spectral-residual pseudo-label maps on "
                     f"{len(labels)} images, not human fixations")
    if not all(p.is_file() for p in spice_jars()) and spice is not True:
        notes.append("SPICE: skipped (Stanford CoreNLP 3.6.0 jars not installed; they are never downloaded)")
    notes.append("KLD: lower is better; every other metric: higher is better")
    result = {
        "data": data_spec,
        "split": split,
        "saliency_data": saliency_data,
        "images": len(samples),
        "references_per_image": round(float(np.mean([len(r) for r in references.values()])), 3),
        "models": {r.label: {"model": r.model_dir, "fingerprint": r.fingerprint, "metrics": r.metrics,
                             "counts": r.counts, "timings": r.timings} for r in results},
        "notes": notes,
    }
    result["markdown"] = markdown_report(result)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(_finite(result), indent=2) + "\n")
        (out / "report.md").write_text(result["markdown"])
        for r, critiques in zip(results, all_critiques):
            _write_predictions(out / f"predictions-{_slug(r.label)}.jsonl", samples, critiques)
    return result


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("_") or "model"


def _write_predictions(path: Path, samples: list, critiques: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for s in samples:
            c = critiques.get(s.id)
            rec = {"id": s.id, "image": str(s.image), "critique": None if c is None else c.text,
                   "score": None if c is None else round(c.score, 4), "true_score": s.score, "references": s.references}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _finite(obj: Any) -> Any:
    """NaN -> None, so report.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


SECTIONS = (
    ("captions", "", CAPTION_KEYS),
    ("score", "score ", SCORE_KEYS),
    ("saliency_pseudo", "saliency (pseudo-labels) ", SALIENCY_KEYS),
    ("saliency", "saliency (fixations) ", SALIENCY_KEYS),
    ("checker", "decoder text: ", ("unreadable_sentences", "contradicting_critiques", "repaired_critiques")),
)


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.4f}"


def markdown_report(report: dict) -> str:
    """One row per metric, one column per model, and B - A when there are two."""
    models = report["models"]
    labels = list(models)
    header = ["metric", *labels] + (["Δ (B − A)"] if len(labels) == 2 else [])
    rows = []
    for section, prefix, keys in SECTIONS:
        values = [models[m]["metrics"].get(section, {}) for m in labels]
        for key in keys:
            if not any(key in v for v in values):
                continue
            cells = [v.get(key) for v in values]
            row = [f"{prefix}{key}", *(_fmt(c) for c in cells)]
            if len(labels) == 2:
                a, b = cells
                ok = a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
                row.append(f"{b - a:+.4f}" if ok else "–")
            rows.append(row)
    counts = [models[m]["counts"].get("images", 0) for m in labels]
    rows.append(["images critiqued", *(str(c) for c in counts)] + (["" ] if len(labels) == 2 else []))
    lines = [f"## {report['data']} ({report['split']})", "",
             "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [""] + [f"- {n}" for n in report["notes"]]
    for label in labels:
        lines.append(f"- {label}: `{models[label]['model']}` ({models[label]['fingerprint']})")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ase-mllm eval",
                                description="Evaluate ASE-MLLM critiques, scores and saliency maps")
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--data", required=True, metavar="FORMAT:PATH", help="pccd, ava, dpc, dpc2022, rpcd or jsonl")
    p.add_argument("--split", default="test")
    p.add_argument("--compare", metavar="DIR2", help="a second model, reported side by side (with B - A)")
    p.add_argument("--saliency-data", metavar="SPEC",
                   help="fixation data: salicon:PATH, mit1003:PATH, folder:IMGS,MAPS[,FIX]")
    p.add_argument("--saliency-split", default=None, help="split of --saliency-data (default: --split)")
    p.add_argument("--out", metavar="DIR", help="write report.json, report.md and predictions here")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the split")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best there is)")
    p.add_argument("--spice", dest="spice", action="store_const", const=True, default=None,
                   help="require SPICE (default: computed when its CoreNLP jars are installed, skipped otherwise)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as hf_logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        report = evaluate(args.model, args.data, args.split, compare=args.compare, saliency_data=args.saliency_data,
                          saliency_split=args.saliency_split, out=args.out, batch_size=args.batch_size,
                          max_new_tokens=args.max_new_tokens, limit=args.limit, device=args.device, spice=args.spice,
                          progress=args.progress)
    except (OSError, ValueError) as e:
        print(f"ase-mllm eval: {e}", file=sys.stderr)
        return 2
    print(report["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
