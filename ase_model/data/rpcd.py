"""RPCD, the Reddit Photo Critique Dataset (r/photocritique; docs/training.md, "The loaders in detail")."""

from __future__ import annotations

from pathlib import Path

from .base import (
    CaptionSample,
    _Collector,
    _first_existing,
    _Indexes,
    _longest,
    _read_id_list,
    _read_json,
    _score,
    _split_names,
    _stem,
    clean_comment,
    hash_split,
)

__all__: list[str] = []  # the loader is reached through load_captions("rpcd:PATH")

def _rpcd_id(rec: dict) -> str | None:
    sid = rec.get("im_id") or rec.get("id")
    if isinstance(sid, (str, int)) and str(sid).strip():
        return str(sid).strip()
    p = rec.get("im_paths")
    if isinstance(p, str) and p:
        name = _stem(p)
        name = name.split("submission_", 1)[-1]
        return name.split("-")[0] or None
    return None


def _load_rpcd(path: Path, split: str, col: _Collector, idx: _Indexes) -> None:
    root = path if path.is_dir() else path.parent
    files: list[Path] = []
    split_from_file = False
    if path.is_dir():
        hit = _first_existing(root / f"{pre}{s}.json" for pre in ("processed_info_", "processed_")
                              for s in _split_names(split))
        if hit:
            files, split_from_file = [hit], True
        elif any((root / f"{pre}{s}.json").is_file() for pre in ("processed_info_", "processed_")
                 for s in ("train", "validation", "val", "test")):
            files, split_from_file = [], True  # per-split files exist, none for this split
        else:
            main = _first_existing([root / "reddit_photocritique_image_comments.json"])
            files = [main] if main else sorted(root.glob("*.json"))[:1]
            if not files:
                raise FileNotFoundError(f"rpcd: no processed_<split>.json or records JSON in {root}")
    else:
        files = [path]
    listed: set[str] = set()
    have_lists = False
    if not split_from_file:
        list_dirs = [root, root / "splits", root / "datasplits" / "reddit"]
        have_lists = any((d / f"{s}_ids.csv").is_file() for d in list_dirs
                         for s in ("train", "validation", "val", "test"))
        for d in list_dirs:
            for s in _split_names(split):
                if (d / f"{s}_ids.csv").is_file():
                    listed.update(_read_id_list(d / f"{s}_ids.csv"))
    for file in files:
        try:
            data = _read_json(file)
        except (OSError, ValueError) as e:
            col.bad(file.name, f"unreadable JSON: {e}")
            continue
        if isinstance(data, dict) and isinstance(data.get("im_paths"), list):
            # Aestheval's column layout: {"im_paths": [...], "first_level_comments_values": [...], ...}
            n = len(data["im_paths"])
            cols = {k: v for k, v in data.items() if isinstance(v, list) and len(v) == n}
            data = [{k: v[i] for k, v in cols.items()} for i in range(n)]
        if not isinstance(data, list):
            col.bad(file.name, "not a JSON list of posts")
            continue
        for i, rec in enumerate(data):
            loc = f"{file.name}[{i}]"
            sid = _rpcd_id(rec) if isinstance(rec, dict) else None
            if sid is None:
                col.bad(loc, "no im_id or im_paths")
                continue
            if not split_from_file:
                in_split = sid in listed if have_lists else hash_split(sid) == split
                if not in_split:
                    continue
            loc = f"{loc} {sid}"
            comments = rec.get("first_level_comments_values")
            if isinstance(comments, str):
                comments = [comments]
            if not isinstance(comments, list):
                col.bad(loc, "first_level_comments_values is not a list")
                continue
            refs = []
            for c in comments:
                c = clean_comment(c)
                if c and c not in refs:
                    refs.append(c)
            if not refs:
                col.bad(loc, "no comments")
                continue
            score, why = _score(rec.get("mean_score"), scale=10.0)
            if why:
                col.bad(loc, why)
                continue
            sample = CaptionSample(sid, Path(), refs, _longest(refs), {}, score, split)
            rel = rec.get("im_paths")
            img = None
            if isinstance(rel, str) and rel:
                p = (root / rel)
                img = idx.find(p.parent, p.name)
                name = Path(rel).name
            else:
                name = f"{sid}-image.jpg"
            for d in (root / "images", root / "photocritique" / "images", root):
                if img is None:
                    img = idx.find(d, name)
            if img is None:
                col.add(loc, sample, str(root / rel) if isinstance(rel, str) and rel else str(root / "images" / name))
            else:
                sample.image = img.resolve()
                col.add(loc, sample)
