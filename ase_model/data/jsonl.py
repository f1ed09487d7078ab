"""Our generic JSONL caption format (docs/training.md, "The loaders in detail")."""

from __future__ import annotations

import json
from pathlib import Path

from ..attributes import ATTRIBUTES, canonical_attribute
from .base import (
    CaptionSample,
    _Collector,
    _first_existing,
    _Indexes,
    _score,
    _split_names,
    clean_comment,
    normalise_split,
)

__all__: list[str] = []  # the loader is reached through load_captions("jsonl:PATH")

def _load_jsonl(path: Path, split: str, col: _Collector, idx: _Indexes) -> None:
    if path.is_dir():
        file = _first_existing(path / f"{s}.jsonl" for s in _split_names(split))
        if file is None:
            raise FileNotFoundError(f"jsonl: no {split}.jsonl in {path}")
    else:
        file = path
    root = file.parent
    with open(file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            loc = f"{file.name}:{n}"
            try:
                rec = json.loads(line)
            except ValueError as e:
                col.bad(loc, f"invalid JSON ({e.__class__.__name__}: {e})")
                continue
            if not isinstance(rec, dict):
                col.bad(loc, "not a JSON object")
                continue
            rs = rec.get("split")
            if rs is not None and normalise_split(rs) != split:
                if normalise_split(rs) is None:
                    col.bad(loc, f"unknown split {rs!r}")
                continue
            image, critique = rec.get("image"), clean_comment(rec.get("critique"))
            if not isinstance(image, str) or not image.strip():
                col.bad(loc, "no image")
                continue
            if not critique:
                col.bad(loc, "no critique")
                continue
            attrs: dict[str, list[str]] = {}
            raw_attrs = rec.get("attributes") or {}
            if not isinstance(raw_attrs, dict):
                col.bad(loc, "attributes is not an object")
                continue
            for name, val in raw_attrs.items():
                key = canonical_attribute(str(name))
                vals = val if isinstance(val, list) else [val]
                texts = [t for t in (clean_comment(v) for v in vals) if t]
                if key and texts:
                    attrs.setdefault(key, []).extend(texts)
            attrs = {k: attrs[k] for k in ATTRIBUTES if k in attrs}
            score, why = _score(rec.get("score"))
            if why:
                col.bad(loc, why)
                continue
            refs = [critique]
            extra = rec.get("references")
            for r in extra if isinstance(extra, list) else []:
                r = clean_comment(r)
                if r and r not in refs:
                    refs.append(r)
            sid = rec.get("id")
            sid = str(sid) if isinstance(sid, (str, int)) and str(sid) else image.strip()
            sample = CaptionSample(sid, Path(), refs, critique, attrs, score, split)
            p = Path(image.strip())
            p = p if p.is_absolute() else root / p
            if p.is_file():
                sample.image = p.resolve()
                col.add(loc, sample)
            else:
                col.add(loc, sample, str(p))
