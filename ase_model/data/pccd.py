"""PCCD, the Photo Critique Captioning Dataset (GuruShots critiques; docs/training.md, "The loaders in detail")."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..attributes import ATTRIBUTES, canonical_attribute, format_critique
from .base import (
    CaptionSample,
    _Collector,
    _first_existing,
    _Indexes,
    _read_json,
    _score,
    _split_names,
    clean_comment,
    hash_split,
)

__all__: list[str] = []  # the loader is reached through load_captions("pccd:PATH")

_PCCD_KEYS = ("general_impression", "subject_of_photo", "composition", "use_of_camera", "depth_of_field",
              "color_lighting", "focus")


def _load_pccd(path: Path, split: str, col: _Collector, idx: _Indexes) -> None:
    root = path if path.is_dir() else path.parent
    files: list[Path]
    hashed = True
    if path.is_file():
        files = [path]
    else:
        per_split = [root / f"{pre}{s}.json" for pre in ("processed_info_", "processed_", "guru_")
                     for s in _split_names(split)]
        hit = _first_existing(per_split)
        if hit:
            files, hashed = [hit], False
        else:
            main = _first_existing([root / "guru.json", root / "raw.json"])
            if main is None:
                cands = sorted(p for p in root.glob("*.json"))
                if len(cands) != 1:
                    raise FileNotFoundError(
                        f"pccd: no guru.json / raw.json in {root} (found {[p.name for p in cands]})")
                main = cands[0]
            files = [main]
    full = root / "images" / "full"
    for file in files:
        try:
            data = _read_json(file)
        except (OSError, ValueError) as e:
            col.bad(file.name, f"unreadable JSON: {e}")
            continue
        if isinstance(data, dict):
            data = data.get("data") or data.get("images") or list(data.values())
        if not isinstance(data, list):
            col.bad(file.name, "not a JSON list of photos")
            continue
        for i, rec in enumerate(data):
            loc = f"{file.name}[{i}]"
            title = rec.get("title", rec.get("im_name")) if isinstance(rec, dict) else None
            if not isinstance(title, str) or not title.strip():
                col.bad(loc, "no title")  # no id, so no split: reported in every split's load
                continue
            title = title.strip()
            if hashed and hash_split(title) != split:
                continue
            loc = f"{file.name}[{i}] {title}"
            attrs: dict[str, list[str]] = {}
            for key in _PCCD_KEYS:
                text = clean_comment(rec.get(key))
                if text:
                    attrs.setdefault(canonical_attribute(key) or key, []).append(text)
            if not attrs:
                col.bad(loc, "no critique text")
                continue
            score, why = _score(rec.get("overall"))
            if why:
                col.bad(loc, why)
                continue
            if score is None and isinstance(rec.get("score"), list):
                vals = [_score(s)[0] for s in rec["score"]]
                vals = [v for v in vals if v is not None]
                score = float(np.mean(vals)) if vals else None
            ordered = {k: attrs[k] for k in ATTRIBUTES if k in attrs}
            refs = [c for v in ordered.values() for c in v]
            sample = CaptionSample(
                id=title, image=Path(), references=refs,
                target=format_critique({k: v[0] for k, v in ordered.items()}),
                attributes=ordered, score=score, split=split,
            )
            img = idx.find(full, title) or idx.find(root / "images", title)
            url = rec.get("image_url")
            if img is None and isinstance(url, str) and url:
                img = idx.find(full, hashlib.sha1(url.encode("utf-8")).hexdigest() + ".jpg")
            if img is None:
                col.add(loc, sample, str(full / title) + "[.jpg|...]")
            else:
                sample.image = img.resolve()
                col.add(loc, sample)
