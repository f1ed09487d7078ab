"""Loaders for aesthetic-captioning and saliency datasets, in their published on-disk layouts.

`load_captions("FORMAT:PATH", split)` returns `CaptionSample`s and a `LoadReport`. Missing images and
malformed records are never silently dropped and never stop the load: each is listed in the report (a
sample whose image is absent is not returned, since it cannot be trained on), and one warning line is
logged when there is any. Samples come in natural id order (numeric ids numerically), so every load of the
same files is identical. Splits are "train", "val", "test" ("validation", "valid", "dev" -> "val",
"restval", "training" -> "train").

Comment text is cleaned conservatively (`clean_comment`): HTML entities unescaped, HTML tags and URLs
removed (a Markdown link keeps its text), a missing space restored after a sentence end glued to the next
sentence ("shot.The" -> "shot. The", PCCD's scrape lost its line breaks), whitespace collapsed. Case,
punctuation and wording are kept. Comments that are empty afterwards (or Reddit's "[deleted]"/"[removed]")
are dropped; a record left with no comment at all is malformed.

Where a dataset has no official split, the split is `hash_split(id)`: the first 8 bytes of SHA-1 of the id
(UTF-8) as a fraction of 2**64; < 0.8 train, < 0.9 val, else test. It depends on the id only, so it is the
same on every machine, run and Python version, and adding images never moves existing ones.

Scores are on 0..10. A 1..10 rating scale (DPChallenge, GuruShots) is kept as it is (identity: the numbers
stay comparable with the literature); other scales are mapped linearly (RPCD's 0..1 x 10). A score field
that is present but not a number, or out of range after mapping, makes the record malformed; an absent
score is None.

Formats (PATH is a folder unless stated; file names are matched exactly, image extensions leniently: a
missing or different extension is found by stem, case-insensitively, among .jpg .jpeg .png .webp .bmp
.tif .tiff):

pccd -- Photo Critique Captioning Dataset (Chang et al., ICCV 2017; GuruShots critiques; zip linked from
    github.com/mediatechnologycenter/Aestheval, data_downloader.py). ``guru.json`` (or ``raw.json``, or the
    folder's only other .json; PATH may also be the .json itself): a JSON list, one object per photo with
    ``title`` (e.g. "12_choc-cherry-tart"), the seven comments ``general_impression, subject_of_photo,
    composition, use_of_camera, depth_of_field, color_lighting, focus`` (empty string when the reviewer
    left one out), ``score`` (seven strings "1".."10", "N" = not rated), ``overall`` (e.g. "9.1"),
    ``category``, ``description`` (the photographer's own text, not a critique: ignored), ``image_url``.
    Images: ``images/full/<title>`` -- the file is named by the title, with or without an extension
    (Aestheval opens ``images/full/<title>`` as is); also tried: ``images/<title>`` and Scrapy's default
    ``images/full/<sha1(image_url)>.jpg``. Aestheval's processed files (``processed_[info_]<split>.json``,
    ``guru_<split>.json``, with ``im_name`` for ``title``) are read the same way and then give the split.
    Split: no official split -> hash_split(title). Score: ``overall`` (1..10 scale, identity), else the mean
    of the numeric per-attribute scores. references: the non-empty attribute comments (one per attribute, in
    ATTRIBUTES order); target: format_critique of them; attributes: canonical name -> [comment]
    (use_of_camera -> exposure, subject_of_photo -> subject).

ava -- AVA-Captions (Ghosal et al., ICCV-W 2019, "Aesthetic image captioning from weakly-labelled
    photographs"; caption JSON from the authors, images from AVA, e.g. github.com/imfing/ava_downloader).
    A Karpathy-style JSON (PATH is the file, or the folder's only .json): ``{"images": [{"filename":
    "123.jpg", "split": "train"|"val"|"test"|"restval", "sentences": [{"raw": ..., "tokens": [...]}], ...}]}``.
    Image: ``<root>/<filepath>/<filename>`` when ``filepath`` is given, else ``<root>/images/<filename>``, else
    ``<root>/<filename>`` (root = the JSON's folder). id = filename's stem (``filepath/stem`` when filepath is
    given). An entry without a split gets hash_split(id). Score: only when AVA's ``AVA.txt`` lies in the
    root: mean of the 1..10 vote counts (identity). references: all sentences (``raw``, else ``clean``, else
    the joined ``tokens``); target: the longest reference; attributes: none.

dpc -- DPC-Captions (Jin et al., ACM MM 2019; github.com/BestiVictory/DPC-Captions; images are DPChallenge /
    AVA ids). One JSON per attribute mapping "<id>.jpg" to a list of comments: ``color_lighting.json``,
    ``composition.json``, ``depth_and_focus.json`` (-> depth_of_field), ``impression_and_subject.json``
    (-> general_impression), ``use_of_camera.json`` (-> exposure); any other .json whose stem is an
    attribute name (canonical_attribute) is read too. Aestheval's merged ``dpc.json`` (a list of
    ``{"im_id", "comments", "attribute"}``) is used when there are no per-attribute files. Images:
    ``images/<id>.jpg`` (or ``<root>/<id>.jpg``). Split: ``<split>.txt`` / ``<split>.csv`` /
    ``<split>_ids.csv`` (one id or file name a line) in the root or ``splits/`` when any such file exists,
    else hash_split(id). Score: from ``AVA.txt`` in the root when present. references: every comment once
    (a comment filed under two attributes counted once); target: format_critique of the longest comment
    of each attribute; attributes: canonical attribute -> comments.

dpc2022 -- DPC2022 (Zhong et al., AAAI 2023 "Aesthetically Relevant Image Captioning",
    github.com/PengZai/ARIC; download from the Baidu link in its README). Per-image ``<ID>.json`` with
    ``ID``, ``avg_all_users_score`` (DPChallenge's 1..10 scale, identity; negative = unrated -> None),
    ``raw_comments``, ``clean_comments`` (each a comment, or a list of its sentences),
    ``score_comments`` (sentences with ``comment.comment`` and their aesthetic relevance ``sum_score``).
    Looked for in ``clean_and_all_score/``, ``anotation/clean_and_all_score/`` (the release's spelling),
    ``annotation/clean_and_all_score/``, ``json/``, else the root. Split lists ``train.csv``, ``val.csv``,
    ``test.csv`` (column ``ID``; a header-less first column also works) in the root, ``splits/``,
    ``anotation/train/``, ``anotation/test_and_val/`` (or ``annotation/...``); without them,
    hash_split(ID). Images ``<ID>.jpg`` in ``img_256x256/``, ``images/``, ``img/`` or the root.
    references: clean_comments (else cleaned raw_comments, else the score_comments sentences);
    target: the score_comments sentence with the highest sum_score, else the longest reference.

rpcd -- Reddit Photo Critique Dataset (Nieto et al., NeurIPS 2022 D&B; github.com/mediatechnologycenter/
    Aestheval; JSONs on Zenodo record 6656802, images scraped from r/photocritique by its scripts).
    ``processed_info_<split>.json`` or ``processed_<split>.json`` (split ``train``/``validation``/
    ``test``): a JSON list of records ``{"im_id", "im_paths", "first_level_comments_values": [...],
    "mean_score", ...}``. Without them, a records JSON (a list, or Aestheval's column dict as in
    ``reddit_photocritique_image_comments.json``; PATH may name it) with ``<split>_ids.csv`` (one id a line,
    no header; ``validation_ids.csv`` for val) in the root, ``splits/`` or ``datasplits/reddit/``, else
    hash_split(im_id). im_id, when absent, comes from the image name ``<id>-image.jpg``. Image: ``im_paths``
    relative to the root, else ``images/``, ``photocritique/images/`` by file name. Score: ``mean_score``
    (0..1, a sentiment-based score) x 10, as Aestheval does. references: the first-level comments;
    target: the longest; attributes: none.

jsonl -- our generic format. PATH is a ``.jsonl`` file (records may carry ``"split"``; without it every
    record belongs to the requested split) or a folder with ``<split>.jsonl`` (``validation.jsonl`` also
    found for val). One object a line: ``{"image": path relative to the file's folder or absolute,
    "critique": str, "attributes": {name: str | [str]}, "score": 0..10, "id": str, "references": [str]}``;
    only image and critique are required (a record without either is malformed), other keys are ignored.
    id defaults to the image path as written. references: critique + ``references``; target: critique.

Saliency (`load_saliency`):

salicon -- SALICON (Jiang et al., CVPR 2015; LSUN'17 release, salicon.net): ``images/<split>/*.jpg``,
    ``maps/<split>/<stem>.png``, ``fixations/<split>/<stem>.mat`` (split folders train, val, test; test has
    no maps). The .mat holds ``gaze`` (one struct per observer with ``fixations``: K x 2, (x, y), 1-based)
    and ``resolution`` ([height, width]).
mit1003 -- MIT1003 (Judd et al., ICCV 2009; people.csail.mit.edu/tjudd/WherePeopleLook):
    ``ALLSTIMULI/<stem>.jpeg``, ``ALLFIXATIONMAPS/<stem>_fixMap.jpg`` (continuous) and
    ``<stem>_fixPts.jpg`` (binary fixation points). No official split -> hash_split(stem).
folder -- ``folder:IMAGES_DIR,MAPS_DIR[,FIXATIONS_DIR]``: maps and fixations matched to images by stem
    (any image extension or .npy). Every image belongs to the requested split.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .attributes import ATTRIBUTES, canonical_attribute, format_critique

log = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "SALIENCY_FORMATS",
    "CaptionSample",
    "LoadReport",
    "SaliencySample",
    "load_captions",
    "load_saliency",
    "read_fixation_map",
    "read_fixations",
    "clean_comment",
    "hash_split",
    "normalise_split",
]

FORMATS = ("pccd", "ava", "dpc", "dpc2022", "rpcd", "jsonl")
SALIENCY_FORMATS = ("salicon", "mit1003", "folder")
SPLITS = ("train", "val", "test")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


# ----------------------------------------------------------------------------------------------------------
# records and report


@dataclass
class CaptionSample:
    id: str
    image: Path  # absolute
    references: list[str]  # every reference critique for this image (>= 1)
    target: str  # the training target text (see the format notes for how it is chosen)
    attributes: dict[str, list[str]]  # canonical attribute -> comments
    score: float | None  # 0..10
    split: str  # train / val / test


@dataclass
class LoadReport:
    format: str
    path: str
    split: str
    loaded: int = 0
    missing_images: list[str] = field(default_factory=list)  # "id (expected path)"
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (record locator, reason)

    def summary(self) -> str:
        def n(k: int, word: str) -> str:
            return f"{k} {word}{'' if k == 1 else 's'}"

        parts = [f"{self.loaded} loaded", n(len(self.missing_images), "missing image")]
        if self.missing_images:
            parts[-1] += f" (first: {self.missing_images[0]})"
        parts.append(n(len(self.malformed), "malformed record"))
        if self.malformed:
            loc, why = self.malformed[0]
            parts[-1] += f" (first: {loc}: {why})"
        return f"{self.format}:{self.path} {self.split}: " + ", ".join(parts)


@dataclass
class SaliencySample:
    id: str
    image: Path
    saliency_map: Path | None
    fixations: Path | None


# ----------------------------------------------------------------------------------------------------------
# helpers

_SPLIT_ALIASES = {
    "train": "train", "training": "train", "restval": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}


def normalise_split(split: str | None) -> str | None:
    """"train" / "val" / "test" for the usual spellings, None for anything else."""
    if not isinstance(split, str):
        return None
    return _SPLIT_ALIASES.get(split.strip().lower())


def _split_names(split: str) -> list[str]:
    """File-name spellings of a split, ours first ("val" -> val, validation, valid, dev)."""
    return [split] + [k for k, v in _SPLIT_ALIASES.items() if v == split and k != split]


def hash_split(id: str, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Deterministic train/val/test assignment of an id (SHA-1, independent of PYTHONHASHSEED)."""
    x = int.from_bytes(hashlib.sha1(str(id).encode("utf-8")).digest()[:8], "big") / 2**64
    if x < ratios[0]:
        return "train"
    return "val" if x < ratios[0] + ratios[1] else "test"


_BR_RE = re.compile(r"<\s*(?:br|/p|p|/div|div|li)\b[^<>]*>", re.I)
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_MD_LINK_RE = re.compile(r"\[([^\]\n]+)\]\(\s*(?:https?://|www\.)[^)\s]*\s*\)", re.I)
_URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"'()\[\]]*[^\s<>\"'()\[\].,;:!?]", re.I)
_SPACED_URL_RE = re.compile(r"\s*" + _URL_RE.pattern, re.I)
_GLUED_SENTENCE_RE = re.compile(r"(?<=[a-z][.!?])(?=[A-Z][a-z])")
_DEAD = {"[deleted]", "[removed]"}


def _drop_url(m: re.Match) -> str:
    # "see http://x.org." -> "see." (no space left before punctuation); elsewhere the URL becomes a space
    following = m.string[m.end() : m.end() + 1]
    return "" if following and following in ".,;:!?" else " "


def clean_comment(text: Any) -> str:
    """Conservative clean-up of a scraped comment (see the module docstring); '' for non-text."""
    if not isinstance(text, str):
        return ""
    t = html.unescape(text)
    t = _BR_RE.sub(" ", t)
    t = _TAG_RE.sub("", t)
    t = _MD_LINK_RE.sub(r"\1", t)
    t = _SPACED_URL_RE.sub(_drop_url, t)
    t = _GLUED_SENTENCE_RE.sub(" ", t)
    # collapse runs of spaces but keep line breaks: a labelled critique has one attribute per line
    t = "\n".join(" ".join(line.split()) for line in t.splitlines() if line.strip())
    return "" if t in _DEAD else t


def _natural_key(s: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", s) if p != "")


def _stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    root, ext = os.path.splitext(base)
    return root if ext.lower() in IMAGE_EXTS else base


class _DirIndex:
    """One listing of a folder, for exact and extension-lenient look-ups without a stat per candidate."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.names: dict[str, str] = {}
        self.stems: dict[str, str] = {}
        try:
            with os.scandir(folder) as it:
                entries = sorted(e.name for e in it if e.is_file())
        except OSError:
            entries = []
        for name in entries:
            self.names.setdefault(name.lower(), name)
            root, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTS:
                self.stems.setdefault(root.lower(), name)
            elif not ext or ext.lower() not in (".json", ".csv", ".txt", ".mat", ".npy", ".jsonl"):
                self.stems.setdefault(name.lower(), name)  # extension-less files (PCCD's titles)

    def find(self, name: str) -> Path | None:
        """`name` exactly (case-insensitively), else an image with the same stem."""
        hit = self.names.get(name.lower()) or self.stems.get(_stem(name).lower()) or self.stems.get(name.lower())
        return self.folder / hit if hit else None


class _Indexes:
    def __init__(self):
        self._cache: dict[Path, _DirIndex] = {}

    def find(self, folder: Path, name: str) -> Path | None:
        if folder not in self._cache:
            self._cache[folder] = _DirIndex(folder)
        return self._cache[folder].find(name)


class _Collector:
    """Samples plus the report's problem lists, with duplicate-id detection."""

    def __init__(self, split: str):
        self.split = split
        self.samples: dict[str, CaptionSample] = {}
        self.missing: list[tuple[str, str]] = []
        self.malformed: list[tuple[str, str]] = []
        self.seen: set[str] = set()

    def bad(self, locator: str, reason: str) -> None:
        self.malformed.append((locator, reason))

    def add(self, locator: str, sample: CaptionSample | None, image_expected: str | None = None) -> None:
        """Add a sample whose image was resolved (sample.image set) or report the image as missing."""
        if sample is None:
            return
        if sample.id in self.seen:
            self.bad(locator, f"duplicate id {sample.id!r} (first one kept)")
            return
        self.seen.add(sample.id)
        if image_expected is not None:
            self.missing.append((sample.id, f"{sample.id} ({image_expected})"))
            return
        self.samples[sample.id] = sample


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _score(value: Any, lo: float = 0.0, hi: float = 10.0, scale: float = 1.0) -> tuple[float | None, str | None]:
    """(score on 0..10, None) or (None, reason). None/""/"N" is an absent score, not an error."""
    if value is None or (isinstance(value, str) and value.strip().upper() in ("", "N", "NA", "N/A", "NAN")):
        return None, None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None, f"score {value!r} is not a number"
    if not math.isfinite(x):
        return None, None
    x *= scale
    if not lo <= x <= hi:
        return None, f"score {value!r} outside its range"
    return x, None


def _read_id_list(path: Path) -> list[str]:
    """Ids from a split file: a CSV with an ID-like column, or one id (or file name) a line."""
    ids: list[str] = []
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        return ids
    header = [c.strip().lower() for c in rows[0]]
    col = 0
    for name in ("id", "im_id", "image_id", "image", "filename", "im_paths", "image_name"):
        if name in header:
            col = header.index(name)
            rows = rows[1:]
            break
    for r in rows:
        if col < len(r) and r[col].strip():
            ids.append(_stem(r[col].strip()))
    return ids


def _first_existing(paths: Iterable[Path]) -> Path | None:
    for p in paths:
        if p.exists():
            return p
    return None


def _ava_scores(root: Path) -> dict[str, float]:
    """Mean rating per image id from AVA's AVA.txt (index, id, ten vote counts for 1..10, tags, challenge)."""
    path = root / "AVA.txt"
    out: dict[str, float] = {}
    if not path.is_file():
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 12:
                continue
            try:
                counts = np.array([float(c) for c in parts[2:12]])
            except ValueError:
                continue
            if counts.sum() > 0:
                out[parts[1]] = float((counts * np.arange(1, 11)).sum() / counts.sum())
    return out


def _longest(texts: list[str]) -> str:
    return max(texts, key=len) if texts else ""


# ----------------------------------------------------------------------------------------------------------
# PCCD

_PCCD_KEYS = ("general_impression", "subject_of_photo", "composition", "use_of_camera", "depth_of_field",
              "color_lighting", "focus")


def _load_pccd(path: Path, split: str, col: _Collector, idx: _Indexes) -> None:
    root = path if path.is_dir() else path.parent
    files: list[Path]
    hashed = True
    if path.is_file():
        files = [path]
    else:
        per_split = [root / f"{pre}{s}.json" for pre in ("processed_info_", "processed_", "guru_") for s in _split_names(split)]
        hit = _first_existing(per_split)
        if hit:
            files, hashed = [hit], False
        else:
            main = _first_existing([root / "guru.json", root / "raw.json"])
            if main is None:
                cands = sorted(p for p in root.glob("*.json"))
                if len(cands) != 1:
                    raise FileNotFoundError(f"pccd: no guru.json / raw.json in {root} (found {[p.name for p in cands]})")
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


# ----------------------------------------------------------------------------------------------------------
# AVA-Captions (Karpathy JSON)


def _single_json(path: Path, fmt: str) -> Path:
    if path.is_file():
        return path
    cands = sorted(path.glob("*.json"))
    if len(cands) != 1:
        raise FileNotFoundError(f"{fmt}: give the caption JSON itself in the spec; {path} holds {[p.name for p in cands]}")
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


# ----------------------------------------------------------------------------------------------------------
# DPC-Captions

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
    csv_dirs = [root, root / "splits"] + [root / a / b for a in ("anotation", "annotation") for b in ("train", "test_and_val", "")]
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


# ----------------------------------------------------------------------------------------------------------
# RPCD


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
        have_lists = any((d / f"{s}_ids.csv").is_file() for d in list_dirs for s in ("train", "validation", "val", "test"))
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


# ----------------------------------------------------------------------------------------------------------
# generic JSONL


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


_LOADERS: dict[str, Callable[[Path, str, _Collector, _Indexes], None]] = {
    "pccd": _load_pccd,
    "ava": _load_ava,
    "dpc": _load_dpc,
    "dpc2022": _load_dpc2022,
    "rpcd": _load_rpcd,
    "jsonl": _load_jsonl,
}


def _parse_spec(spec: str, formats: Iterable[str]) -> tuple[str, str]:
    fmt, sep, rest = spec.partition(":")
    fmt = fmt.strip().lower()
    if not sep or fmt not in formats or not rest:
        raise ValueError(f"dataset spec {spec!r}: expected FORMAT:PATH with FORMAT one of {', '.join(formats)}")
    return fmt, os.path.expanduser(rest)


def _finish(report: LoadReport) -> None:
    if report.missing_images or report.malformed:
        log.warning("%s", report.summary())
    else:
        log.info("%s", report.summary())


def load_captions(spec: str, split: str = "train") -> tuple[list[CaptionSample], LoadReport]:
    """Load one split of a captioning dataset given as "FORMAT:PATH" (FORMAT in FORMATS)."""
    fmt, raw_path = _parse_spec(spec, FORMATS)
    s = normalise_split(split)
    if s is None:
        raise ValueError(f"unknown split {split!r}: use train, val or test")
    path = Path(raw_path)
    if not path.exists():
        raise FileNotFoundError(f"{fmt}: {path} does not exist")
    col = _Collector(s)
    _LOADERS[fmt](path, s, col, _Indexes())
    samples = sorted(col.samples.values(), key=lambda x: _natural_key(x.id))
    missing = [m for _, m in sorted(col.missing, key=lambda t: _natural_key(t[0]))]
    report = LoadReport(fmt, raw_path, s, len(samples), missing, list(col.malformed))
    _finish(report)
    return samples, report


# ----------------------------------------------------------------------------------------------------------
# saliency datasets


def _image_files(folder: Path) -> list[Path]:
    try:
        return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
                      key=lambda p: _natural_key(p.stem))
    except OSError:
        return []


def _by_stem(folder: Path | None, exts: tuple[str, ...], suffix: str = "") -> dict[str, Path]:
    """stem (minus `suffix`) -> file, for files in `folder` with one of `exts`."""
    out: dict[str, Path] = {}
    if folder is None or not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in exts and p.stem.endswith(suffix):
            out.setdefault(p.stem[: len(p.stem) - len(suffix)] if suffix else p.stem, p)
    return out


def _pair_saliency(images: dict[str, Path], maps: dict[str, Path], fixes: dict[str, Path], split: str,
                   report: LoadReport, need_map: bool, keep: Callable[[str], bool]) -> list[SaliencySample]:
    out = []
    for sid in sorted(images, key=_natural_key):
        if not keep(sid):
            continue
        m, f = maps.get(sid), fixes.get(sid)
        if need_map and m is None and f is None:
            report.malformed.append((sid, "no saliency map or fixations"))
            continue
        out.append(SaliencySample(sid, images[sid].resolve(), m.resolve() if m else None, f.resolve() if f else None))
    for sid in sorted((set(maps) | set(fixes)) - set(images), key=_natural_key):
        if keep(sid):
            report.missing_images.append(f"{sid} ({(maps.get(sid) or fixes.get(sid))})")
    report.loaded = len(out)
    return out


def load_saliency(spec: str, split: str = "train") -> tuple[list[SaliencySample], LoadReport]:
    """Load a saliency dataset split: "salicon:PATH", "mit1003:PATH", "folder:IMAGES_DIR,MAPS_DIR[,FIX_DIR]"."""
    fmt, raw = _parse_spec(spec, SALIENCY_FORMATS)
    s = normalise_split(split)
    if s is None:
        raise ValueError(f"unknown split {split!r}: use train, val or test")
    report = LoadReport(fmt, raw, s)
    map_exts = IMAGE_EXTS + (".npy",)
    if fmt == "salicon":
        root = Path(raw)
        if not root.is_dir():
            raise FileNotFoundError(f"salicon: {root} is not a folder")
        sub = next((n for n in _split_names(s) if (root / "images" / n).is_dir()), s)
        images = {p.stem: p for p in _image_files(root / "images" / sub)}
        maps_dir, fix_dir = root / "maps" / sub, root / "fixations" / sub
        maps = _by_stem(maps_dir, map_exts)
        fixes = _by_stem(fix_dir, (".mat", ".png", ".jpg", ".npy"))
        # test has no ground truth: only demand maps where the split has a maps folder
        samples = _pair_saliency(images, maps, fixes, s, report, maps_dir.is_dir() or fix_dir.is_dir(), lambda _: True)
    elif fmt == "mit1003":
        root = Path(raw)
        if not root.is_dir():
            raise FileNotFoundError(f"mit1003: {root} is not a folder")
        stim = _first_existing([root / "ALLSTIMULI", root / "stimuli"]) or root
        fm = _first_existing([root / "ALLFIXATIONMAPS", root / "fixationmaps"])
        images = {p.stem: p for p in _image_files(stim)}
        maps = _by_stem(fm, map_exts, "_fixMap")
        fixes = _by_stem(fm, map_exts, "_fixPts")
        samples = _pair_saliency(images, maps, fixes, s, report, True, lambda sid: hash_split(sid) == s)
    else:
        dirs = [Path(os.path.expanduser(d.strip())) for d in raw.split(",")]
        if len(dirs) not in (2, 3) or not all(d.is_dir() for d in dirs):
            raise FileNotFoundError(f"folder: expected IMAGES_DIR,MAPS_DIR[,FIXATIONS_DIR] folders, got {raw!r}")
        images = {p.stem: p for p in _image_files(dirs[0])}
        maps = _by_stem(dirs[1], map_exts)
        fixes = _by_stem(dirs[2], (".mat", ".npy") + IMAGE_EXTS) if len(dirs) == 3 else {}
        samples = _pair_saliency(images, maps, fixes, s, report, True, lambda _: True)
    _finish(report)
    return samples, report


def _read_gray(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float64)
            return a / (65535.0 if a.max() > 255 else 255.0)
        return np.asarray(im.convert("L"), dtype=np.float64) / 255.0


def read_fixation_map(path: str | os.PathLike) -> np.ndarray:
    """A continuous saliency / fixation-density map as float32 in [0, 1] (an image, or a .npy array)."""
    p = Path(path)
    if p.suffix.lower() == ".npy":
        a = np.asarray(np.load(p), dtype=np.float64)
        a = a.mean(axis=2) if a.ndim == 3 else a
        a = np.clip(np.nan_to_num(a), 0, None)
        if a.max() > 1:
            a = a / a.max()
    else:
        a = _read_gray(p)
    return a.astype(np.float32)


def _fixations_from_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    mat = loadmat(str(path))
    if "gaze" in mat:
        res = np.asarray(mat.get("resolution", [[480, 640]])).ravel()
        h, w = int(res[0]), int(res[1])
        out = np.zeros((h, w), dtype=bool)
        for subject in np.asarray(mat["gaze"]).ravel():
            pts = np.asarray(subject["fixations"], dtype=np.float64).reshape(-1, 2)
            pts = pts[np.isfinite(pts).all(axis=1)]
            xs = np.round(pts[:, 0]).astype(int) - 1  # MATLAB coordinates are 1-based (x, y)
            ys = np.round(pts[:, 1]).astype(int) - 1
            ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
            out[ys[ok], xs[ok]] = True
        return out
    # other datasets store the binary map itself (e.g. "fixLocs"): take the first 2-D numeric array
    for k, v in mat.items():
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype.kind in "biuf" and v.size > 4:
            return v > 0
    raise ValueError(f"{path}: no 'gaze' struct or 2-D fixation array")


def read_fixations(path: str | os.PathLike) -> np.ndarray:
    """A binary (H, W) fixation map: from a binary image (.png/.jpg; JPEG noise removed by thresholding at half
    the maximum), a .npy array (> 0), or a .mat (SALICON's per-observer fixation lists, or a 2-D array)."""
    p = Path(path)
    suf = p.suffix.lower()
    if suf == ".mat":
        return _fixations_from_mat(p)
    if suf == ".npy":
        a = np.asarray(np.load(p))
        return (a[..., 0] if a.ndim == 3 else a) > 0
    a = _read_gray(p)
    mx = a.max()
    return a > mx / 2 if mx > 0 else np.zeros(a.shape, dtype=bool)
