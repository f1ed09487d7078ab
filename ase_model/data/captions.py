"""`load_captions`: one split of a captioning dataset, by format (docs/training.md, "The loaders in detail")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .ava import _load_ava
from .base import (
    FORMATS,
    CaptionSample,
    LoadReport,
    _Collector,
    _finish,
    _Indexes,
    _natural_key,
    _parse_spec,
    normalise_split,
)
from .dpc import _load_dpc, _load_dpc2022
from .jsonl import _load_jsonl
from .pccd import _load_pccd
from .rpcd import _load_rpcd

__all__ = ["load_captions"]

_LOADERS: dict[str, Callable[[Path, str, _Collector, _Indexes], None]] = {
    "pccd": _load_pccd,
    "ava": _load_ava,
    "dpc": _load_dpc,
    "dpc2022": _load_dpc2022,
    "rpcd": _load_rpcd,
    "jsonl": _load_jsonl,
}


def load_captions(spec: str, split: str = "train") -> tuple[list[CaptionSample], LoadReport]:
    """Load one split of a captioning dataset; returns the samples (natural id order) and the report.

    Args:
        spec: "FORMAT:PATH" with FORMAT in FORMATS (layouts: docs/training.md).
        split: train, val or test (usual spellings accepted, see normalise_split).
    """
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
