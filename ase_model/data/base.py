"""What every dataset loader shares: the sample and report records, split rules, comment clean-up,
folder look-ups and the problem collector (docs/training.md, "The loaders in detail")."""

from __future__ import annotations

import csv
import hashlib
import html
import json
import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("ase_model.data")  # one logger for the whole package, as before the split

__all__ = [
    "FORMATS",
    "SALIENCY_FORMATS",
    "SPLITS",
    "IMAGE_EXTS",
    "CaptionSample",
    "LoadReport",
    "SaliencySample",
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
    """One photo of a captioning dataset with its critiques.

    Args:
        id: the dataset's id for the photo.
        image: the image file (absolute).
        references: every reference critique for this image (>= 1).
        target: the training target text (how it is chosen: docs/training.md, per format).
        attributes: canonical attribute -> comments.
        score: 0..10, or None when the dataset gives none.
        split: train, val or test.
    """

    id: str
    image: Path
    references: list[str]
    target: str
    attributes: dict[str, list[str]]
    score: float | None
    split: str


@dataclass
class LoadReport:
    """What a load found: how many samples, and every missing image and malformed record.

    Args:
        format: the dataset format (FORMATS or SALIENCY_FORMATS).
        path: the PATH part of the spec, as given.
        split: the split loaded.
        loaded: how many samples were returned.
        missing_images: "id (expected path)" for each record whose image is absent.
        malformed: (record locator, reason) for each record that could not be read.
    """

    format: str
    path: str
    split: str
    loaded: int = 0
    missing_images: list[str] = field(default_factory=list)
    malformed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: the counts, with the first missing image and the first malformed record."""
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
    """One photo of a saliency dataset.

    Args:
        id: the image's file stem.
        image: the image file (absolute).
        saliency_map: the continuous map's file (see read_fixation_map), if the split has one.
        fixations: the binary fixations' file (see read_fixations), if the split has one.
    """

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
    """"train" / "val" / "test" for the usual spellings, None for anything else.

    Args:
        split: a split name in any usual spelling ("validation", "dev", "restval", ...), any case.
    """
    if not isinstance(split, str):
        return None
    return _SPLIT_ALIASES.get(split.strip().lower())


def _split_names(split: str) -> list[str]:
    """File-name spellings of a split, ours first ("val" -> val, validation, valid, dev)."""
    return [split] + [k for k, v in _SPLIT_ALIASES.items() if v == split and k != split]


def hash_split(id: str, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Deterministic train/val/test assignment of an id (SHA-1, independent of PYTHONHASHSEED).

    Args:
        id: the sample's id (converted with str()).
        ratios: the train, val and test fractions.
    """
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
    """Conservative clean-up of a scraped comment (docs/training.md, "The loaders in detail"); '' for non-text.

    Args:
        text: the comment as scraped (anything that is not a str gives '').
    """
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
