"""Training data: examples from the dataset loaders, saliency targets, the dataset, its sampler and the collator."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .args import (
    IGNORE_INDEX,
)

log = logging.getLogger("ase_model.training")  # one logger for the whole package, as before the split

# ----------------------------------------------------------------------------------------------------------
# data


@dataclass
class TrainExample:
    id: str
    image: Path
    target: str | None = None
    score: float | None = None
    saliency_map: Path | None = None  # a continuous map (SALICON/MIT1003 map, or a JSONL pseudo-label PNG)
    fixations: Path | None = None  # binary fixation points, blurred into a map when there is no map
    pseudo_saliency: bool = False  # compute a spectral-residual label from the image itself


def jsonl_saliency_labels(path: Path) -> dict[str, Path]:
    """id -> saliency map file, from the `saliency` keys of a JSONL dataset (the samples of ase_model.data
    don't carry it)."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    labels: dict[str, Path] = {}
    for file in files:
        with open(file, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # ase_model.data reports malformed lines
                if (not isinstance(rec, dict) or not isinstance(rec.get("saliency"), str)
                        or not isinstance(rec.get("image"), str)):
                    continue
                sid = rec.get("id")
                sid = str(sid) if isinstance(sid, (str, int)) and str(sid) else rec["image"].strip()
                sal = Path(rec["saliency"])
                labels[sid] = sal if sal.is_absolute() else file.parent / sal
    return labels


def load_examples(specs: list[str], split: str, stage: str, pseudo_saliency: bool = False,
                  report: bool = True) -> list[TrainExample]:
    """Every dataset of `specs` loaded and mixed; each loader's report summary is printed."""
    from ..data import FORMATS, SALIENCY_FORMATS, load_captions, load_saliency

    examples: list[TrainExample] = []
    for spec in specs:
        fmt = spec.partition(":")[0].strip().lower()
        if fmt in SALIENCY_FORMATS:
            if stage != "saliency":
                raise ValueError(f"{spec}: fixation data trains the saliency stage only (--stage saliency)")
            samples, rep = load_saliency(spec, split)
            examples += [TrainExample(s.id, Path(s.image), saliency_map=s.saliency_map, fixations=s.fixations)
                         for s in samples if s.saliency_map is not None or s.fixations is not None]
        elif fmt in FORMATS:
            samples, rep = load_captions(spec, split)
            labels = jsonl_saliency_labels(Path(os.path.expanduser(spec.partition(":")[2]))) if fmt == "jsonl" else {}
            for s in samples:
                sal = labels.get(s.id)
                if sal is not None and not sal.is_file():
                    sal = None
                examples.append(TrainExample(s.id, Path(s.image), target=s.target, score=s.score, saliency_map=sal,
                                             pseudo_saliency=pseudo_saliency and sal is None))
        else:
            raise ValueError(f"--data {spec!r}: unknown format {fmt!r} (captions: {', '.join(FORMATS)}; "
                             f"fixations: {', '.join(SALIENCY_FORMATS)})")
        if report:
            print(f"data: {rep.summary()}", flush=True)
    if not examples:
        raise ValueError(f"no usable training examples in {', '.join(specs)} (split {split})")
    if stage == "saliency":  # only labelled examples can teach the map
        examples = [e for e in examples if e.saliency_map is not None or e.fixations is not None or e.pseudo_saliency]
        if not examples:
            raise ValueError("the saliency stage needs fixation data (salicon:, mit1003:, folder:), JSONL saliency "
                             "labels, or --pseudo-saliency")
    return examples


def saliency_target(sal: np.ndarray, map_size: tuple[int, int]) -> np.ndarray | None:
    """A photo-frame saliency map -> the model's target: padded to a square like the image (the padding holds
    no saliency), area-resized to IASM's map size, normalised to a probability. None for an all-zero map."""
    import cv2

    sal = np.clip(np.nan_to_num(np.asarray(sal, dtype=np.float32)), 0, None)
    h, w = sal.shape
    side = max(h, w)
    square = np.zeros((side, side), np.float32)
    top, left = (side - h) // 2, (side - w) // 2  # the same placement as the image processor's padding
    square[top: top + h, left: left + w] = sal
    small = cv2.resize(square, (map_size[1], map_size[0]), interpolation=cv2.INTER_AREA)
    total = float(small.sum())
    return small / total if total > 0 else None


def _fixations_to_map(fix: np.ndarray) -> np.ndarray:
    """Binary fixation points -> a density map (Gaussian blur, sigma 2% of the long side: about a degree)."""
    import cv2

    fix = np.asarray(fix, dtype=np.float32)
    return cv2.GaussianBlur(fix, (0, 0), sigmaX=max(1.0, 0.02 * max(fix.shape)))


class EpochShuffleSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch), so a resumed run replays the same order.

    accelerate's DataLoaderShard calls `set_epoch` with its own epoch counter before iterating; the trainer sets
    that counter to the true epoch (`loader.set_epoch`) first.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())


class TrainDataset(Dataset):
    """Decodes and processes one example (in a DataLoader worker when num_workers > 0).

    Text is tokenised once up front: the prompt (identical for every example, image tokens expanded) and each
    target, exactly as `ASEProcessor.training_batch` would. An image that cannot be read is skipped: the next
    readable example takes its place (batches keep their size, so DDP processes stay in step) and the item
    carries the count for the trainer's report.
    """

    MAX_FALLBACKS = 16

    def __init__(self, examples: list[TrainExample], processor, map_size: tuple[int, int] | None, with_text: bool,
                 max_length: int | None = None, cache_images: bool = False):
        self.examples = examples
        self.processor = processor
        self.map_size = map_size
        self.with_text = with_text
        self.cache: dict[int, dict] | None = {} if cache_images else None
        self.prompt_ids: list[int] = []
        self.target_ids: list[list[int]] = []
        if with_text:
            tok = processor.tokenizer
            self.prompt_ids = tok(processor._expand(processor.build_prompt()), add_special_tokens=True)["input_ids"]
            eos = tok.eos_token or ""
            texts = [" " + (e.target or "").strip() + eos for e in examples]
            self.target_ids = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
            if max_length is not None:
                if max_length <= len(self.prompt_ids):
                    raise ValueError(f"--max-length {max_length} leaves no room for the critique: the prompt alone "
                                     f"is {len(self.prompt_ids)} tokens (image tokens included)")
                keep = max_length - len(self.prompt_ids)
                self.target_ids = [t[:keep] for t in self.target_ids]

    def __len__(self) -> int:
        return len(self.examples)

    def _load(self, i: int) -> dict:
        from PIL import Image

        from ..imageio import load_image

        if self.cache is not None and i in self.cache:
            return self.cache[i]
        ex = self.examples[i]
        image = load_image(ex.image)
        item: dict[str, Any] = {k: v[0] for k, v in self.processor.process_images([image]).items()}
        if self.map_size is not None:
            sal = None
            if ex.saliency_map is not None:
                from ..data import read_fixation_map

                sal = read_fixation_map(ex.saliency_map)
            elif ex.fixations is not None:
                from ..data import read_fixations

                sal = _fixations_to_map(read_fixations(ex.fixations))
            elif ex.pseudo_saliency:
                from ..saliency import spectral_residual

                sal = spectral_residual(image)
            if sal is not None and sal.shape != (image.height, image.width):
                # maps are stored at the image's size in every layout we read; a stray size is stretched to it
                stretched = Image.fromarray(sal.astype(np.float32)).resize((image.width, image.height), Image.BILINEAR)
                sal = np.asarray(stretched)
            target = None if sal is None else saliency_target(sal, self.map_size)
            item["saliency_target"] = torch.from_numpy(target) if target is not None else None
        if self.cache is not None:
            self.cache[i] = item
        return item

    def __getitem__(self, index: int) -> dict:
        skipped = []
        for k in range(self.MAX_FALLBACKS):
            i = (index + k) % len(self.examples)
            try:
                item = dict(self._load(i))
                break
            except (OSError, ValueError) as e:  # ImageLoadError is a ValueError; a broken map file an OSError
                skipped.append(str(self.examples[i].image))
                log.warning("skipping unreadable example %s: %s", self.examples[i].id, e)
        else:
            raise RuntimeError(f"{self.MAX_FALLBACKS} unreadable examples in a row "
                               f"(from {self.examples[index].image}): check the dataset")
        ex = self.examples[i]
        item["id"] = ex.id
        item["skipped"] = skipped
        item["score"] = ex.score
        if self.with_text:
            item["target_ids"] = self.target_ids[i]
        return item


class Collator:
    """Right-padded input_ids / labels (prompt masked), stacked images, score and saliency targets with masks."""

    def __init__(self, prompt_ids: list[int], pad_id: int, with_text: bool, map_size: tuple[int, int] | None = None):
        self.prompt_ids, self.pad_id, self.with_text, self.map_size = prompt_ids, pad_id, with_text, map_size

    def __call__(self, items: list[dict]) -> dict:
        batch: dict[str, Any] = {
            "ids": [it["id"] for it in items],
            "skipped": [p for it in items for p in it["skipped"]],
            "pixel_values": torch.stack([it["pixel_values"] for it in items]),
        }
        if "saliency_prior" in items[0]:
            batch["saliency_prior"] = torch.stack([it["saliency_prior"] for it in items])
        scores = [it["score"] for it in items]
        batch["score"] = torch.tensor([s if s is not None else 0.0 for s in scores], dtype=torch.float32)
        batch["score_mask"] = torch.tensor([s is not None for s in scores], dtype=torch.bool)
        if self.map_size is not None:  # always present (zeros, masked out, where unlabelled): same graph everywhere
            targets = [it.get("saliency_target") for it in items]
            empty = torch.zeros(self.map_size)
            batch["saliency_target"] = torch.stack([t if t is not None else empty for t in targets])
            batch["saliency_mask"] = torch.tensor([t is not None for t in targets], dtype=torch.bool)
        if self.with_text:
            rows = [self.prompt_ids + it["target_ids"] for it in items]
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
            n_prompt = len(self.prompt_ids)
            for i, (row, it) in enumerate(zip(rows, items)):
                input_ids[i, : len(row)] = torch.tensor(row)
                attention[i, : len(row)] = 1
                labels[i, n_prompt: len(row)] = torch.tensor(it["target_ids"], dtype=torch.long)
            batch.update(input_ids=input_ids, attention_mask=attention, labels=labels)
        return batch


