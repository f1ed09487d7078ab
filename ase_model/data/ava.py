"""AVA-Captions, a Karpathy-style caption JSON over AVA's images (docs/training.md, "The loaders in detail")."""

from __future__ import annotations

from pathlib import Path

from .base import (
    CaptionSample,
    _ava_scores,
    _Collector,
    _Indexes,
    _longest,
    _read_json,
    _stem,
    clean_comment,
    hash_split,
    normalise_split,
)

__all__: list[str] = []  # the loader is reached through load_captions("ava:PATH")

def _single_json(path: Path, fmt: str) -> Path:
    if path.is_file():
        return path
    cands = sorted(path.glob("*.json"))
    if len(cands) != 1:
        raise FileNotFoundError(
            f"{fmt}: give the caption JSON itself in the spec; {path} holds {[p.name for p in cands]}")
    return cands[0]


def _load_ava(path: Path, split: str, col: _Collector, idx: _Indexes) -> None:
    file = _single_json(path, "ava")
    root = file.parent
    data = _read_json(file)
    entries = data.get("images") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f"ava: {file} has no 'images' list")
    scores = _ava_scores(root)
    for i, e in enumerate(entries):
        loc = f"{file.name}:images[{i}]"
        fname = e.get("filename") if isinstance(e, dict) else None
        if not isinstance(fname, str) or not fname.strip():
            col.bad(loc, "no filename")
            continue
        fpath = e.get("filepath") if isinstance(e.get("filepath"), str) and e.get("filepath") else None
        sid = f"{fpath.strip('/')}/{_stem(fname)}" if fpath else _stem(fname)
        raw_split = e.get("split")
        s = normalise_split(raw_split) if raw_split is not None else hash_split(sid)
        if s is None:  # cannot be placed: reported in every split's load
            col.bad(f"{loc} {sid}", f"unknown split {raw_split!r}")
            continue
        if s != split:
            continue
        loc = f"{loc} {sid}"
        refs = []
        for sent in e.get("sentences") or []:
            if isinstance(sent, dict):
                text = sent.get("raw") or sent.get("clean")
                if not text and isinstance(sent.get("tokens"), list):
                    text = " ".join(str(t) for t in sent["tokens"])
            else:
                text = sent
            text = clean_comment(text)
            if text:
                refs.append(text)
        if not refs:
            col.bad(loc, "no sentences")
            continue
        sample = CaptionSample(sid, Path(), refs, _longest(refs), {}, scores.get(_stem(fname)), split)
        if fpath:
            img = idx.find(root / fpath, fname)
            expected = root / fpath / fname
        else:
            img = idx.find(root / "images", fname) or idx.find(root, fname)
            expected = root / "images" / fname
        if img is None:
            col.add(loc, sample, str(expected))
        else:
            sample.image = img.resolve()
            col.add(loc, sample)
