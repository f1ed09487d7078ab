"""The DPChallenge caption sets: DPC-Captions (one JSON per attribute) and DPC2022 (one JSON per
image); docs/training.md, "The loaders in detail"."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..attributes import ATTRIBUTES, canonical_attribute, format_critique
from .base import (
    SPLITS,
    CaptionSample,
    _ava_scores,
    _Collector,
    _first_existing,
    _Indexes,
    _longest,
    _natural_key,
    _read_id_list,
    _read_json,
    _score,
    _split_names,
    _stem,
    clean_comment,
    hash_split,
)

__all__: list[str] = []  # the loaders are reached through load_captions("dpc:PATH" / "dpc2022:PATH")

_DPC_FILES = {
    "color_lighting": "color_lighting",
    "composition": "composition",
    "depth_and_focus": "depth_of_field",
    "impression_and_subject": "general_impression",
    "use_of_camera": "exposure",
}


def _split_file_ids(root: Path, split: str, patterns: tuple[str, ...]) -> tuple[bool, set[str]]:
    """(any split file exists for any split, ids listed for `split`)."""
    dirs = [root, root / "splits"]
    found_any = any((d / p.format(s)).is_file() for d in dirs for p in patterns for s in
                    [n for sp in SPLITS for n in _split_names(sp)])
    ids: set[str] = set()
    for d in dirs:
        for p in patterns:
            for s in _split_names(split):
                f = d / p.format(s)
                if f.is_file():
                    ids.update(_read_id_list(f))
    return found_any, ids


def _load_dpc(path: Path, split: str, col: _Collector, idx: _Indexes) -> None:
    root = path if path.is_dir() else path.parent
    per_attr: list[tuple[Path, str]] = []
    for f in sorted(root.glob("*.json")):
        attr = _DPC_FILES.get(f.stem) or canonical_attribute(f.stem)
        if attr:
            per_attr.append((f, attr))
    comments: dict[str, dict[str, list[str]]] = {}
    names: dict[str, str] = {}

    def put(key: str, attr: str, value: Any, loc: str) -> None:
        vals = [value] if isinstance(value, str) else value
        if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
            col.bad(loc, "comments are not a list of strings")
            return
        sid = _stem(key)
        names.setdefault(sid, key)
        texts = [t for t in (clean_comment(v) for v in vals) if t]
        comments.setdefault(sid, {}).setdefault(attr, []).extend(texts)

    found_split_files, listed = _split_file_ids(root, split, ("{}.txt", "{}.csv", "{}_ids.csv", "{}.lst"))

    def wanted(sid: str) -> bool:
        return sid in listed if found_split_files else hash_split(sid) == split

    if per_attr:
        for f, attr in per_attr:
            try:
                data = _read_json(f)
            except (OSError, ValueError) as e:
                col.bad(f.name, f"unreadable JSON: {e}")
                continue
            if not isinstance(data, dict):
                col.bad(f.name, "not a JSON object of id -> comments")
                continue
            for key, value in data.items():
                if wanted(_stem(str(key))):
                    put(str(key), attr, value, f"{f.name}:{key}")
    elif (root / "dpc.json").is_file():
        data = _read_json(root / "dpc.json")
        for i, rec in enumerate(data if isinstance(data, list) else []):
            key = rec.get("im_id") if isinstance(rec, dict) else None
            attr = rec.get("attribute") if isinstance(rec, dict) else None
            attr = _DPC_FILES.get(attr) or canonical_attribute(attr) if isinstance(attr, str) else None
            if not isinstance(key, str) or not attr:
                col.bad(f"dpc.json[{i}]", "no im_id or unknown attribute")
                continue
            if wanted(_stem(key)):
                put(key, attr, rec.get("comments"), f"dpc.json[{i}] {key}")
    else:
        raise FileNotFoundError(f"dpc: no attribute JSON files ({', '.join(_DPC_FILES)}.json) in {root}")

    scores = _ava_scores(root)
    for sid in sorted(comments, key=_natural_key):
        attrs = {k: comments[sid][k] for k in ATTRIBUTES if comments[sid].get(k)}
        loc = f"{sid}"
        if not attrs:
            col.bad(loc, "no critique text")
            continue
        refs: list[str] = []
        for v in attrs.values():
            refs += [c for c in v if c not in refs]
        sample = CaptionSample(sid, Path(), refs, format_critique({k: _longest(v) for k, v in attrs.items()}),
                               attrs, scores.get(sid), split)
        img = idx.find(root / "images", names[sid]) or idx.find(root, names[sid])
        if img is None:
            col.add(loc, sample, str(root / "images" / names[sid]))
        else:
            sample.image = img.resolve()
            col.add(loc, sample)


# ----------------------------------------------------------------------------------------------------------
# DPC2022


def _load_dpc2022(path: Path, split: str, col: _Collector, idx: _Indexes) -> None:
    root = path if path.is_dir() else path.parent
    ann_roots = [root / "clean_and_all_score", root / "anotation" / "clean_and_all_score",
                 root / "annotation" / "clean_and_all_score", root / "json"]
    jdir = _first_existing(ann_roots) or root
    img_dirs = [d for d in (root / "img_256x256", root / "images", root / "img", root) if d.is_dir()]
    csv_dirs = [root, root / "splits"] + [root / a / b for a in ("anotation", "annotation")
                                          for b in ("train", "test_and_val", "")]
    split_csv = _first_existing(d / f"{s}.csv" for d in csv_dirs for s in _split_names(split))
    any_csv = any((d / f"{s}.csv").is_file() for d in csv_dirs for s in ("train", "val", "test", "validation"))
    if split_csv is not None:
        ids = _read_id_list(split_csv)
    elif any_csv:
        ids = []  # split lists exist but none for this split
    else:
        ids = [p.stem for p in jdir.glob("*.json") if hash_split(p.stem) == split]
    for sid in sorted(dict.fromkeys(ids), key=_natural_key):
        jf = jdir / f"{sid}.json"
        loc = f"{jf.name}"
        try:
            rec = _read_json(jf)
        except FileNotFoundError:
            col.bad(loc, "annotation file missing")
            continue
        except (OSError, ValueError) as e:
            col.bad(loc, f"unreadable JSON: {e}")
            continue
        if not isinstance(rec, dict):
            col.bad(loc, "not a JSON object")
            continue

        def texts(key: str) -> list[str]:
            out = []
            for c in rec.get(key) or []:  # noqa: B023 - called at once, inside the loop
                if isinstance(c, list):
                    c = " ".join(str(x) for x in c if isinstance(x, str))
                c = clean_comment(c)
                if c and c not in out:
                    out.append(c)
            return out

        scored: list[tuple[float, str]] = []
        for sc in rec.get("score_comments") or []:
            if not isinstance(sc, dict):
                continue
            inner = sc.get("comment")
            text = clean_comment(inner.get("comment") if isinstance(inner, dict) else inner)
            try:
                ars = float(sc.get("sum_score"))
            except (TypeError, ValueError):
                ars = -math.inf
            if text:
                scored.append((ars, text))
        refs = texts("clean_comments") or texts("raw_comments") or list(dict.fromkeys(t for _, t in scored))
        if not refs:
            col.bad(loc, "no comments")
            continue
        raw = rec.get("avg_all_users_score")
        score, why = (None, None) if isinstance(raw, (int, float)) and raw < 0 else _score(raw)
        if why:
            col.bad(loc, why)
            continue
        # max() keeps the first of equal scores: file order decides ties.
        target = max(scored, key=lambda t: t[0])[1] if scored else _longest(refs)
        sample = CaptionSample(str(sid), Path(), refs, target, {}, score, split)
        img = next((hit for d in img_dirs if (hit := idx.find(d, f"{sid}.jpg"))), None)
        if img is None:
            col.add(loc, sample, str((img_dirs[0] if img_dirs else root) / f"{sid}.jpg"))
        else:
            sample.image = img.resolve()
            col.add(loc, sample)
