"""A critique's main remark: the one sentence a photographer should read first (torch-free).

    main_remark(result)   # result: a critique as a dict (text, attributes, tags), e.g. the daemon's result

The sentence that names the most serious fault the critique's tags report (FAULTS, in order: exposure before focus
before colour casts ...), found by matching the tag's vocabulary phrases sentence by sentence (ase_model.tags, the
same matcher that made the tags, so a negated mention is never taken). A critique with no fault gives its overall
verdict's first sentence; one without that, its first sentence. Used by the demo report's summary table.
"""

from __future__ import annotations

import re

from .attributes import ATTRIBUTES
from .tags import SEPARATOR, find_mentions

__all__ = ["FAULTS", "MAX_CHARS", "main_remark"]

# Faults (vocabulary tags without the root), most serious first: what spoils a photo outright, then what an edit
# fixes, then matters of taste.
FAULTS = (
    "exposure|underexposed", "exposure|overexposed", "focus|missed focus", "focus|camera shake", "focus|motion blur",
    "focus|soft", "exposure|clipped highlights", "exposure|crushed shadows", "color|warm cast", "color|cool cast",
    "color|green cast", "color|magenta cast", "composition|tilted horizon", "color|oversaturated", "color|muted",
    "contrast|flat", "contrast|harsh", "noise|noisy", "subject|no clear subject", "composition|cut off",
    "composition|distracting elements", "composition|cluttered background", "composition|off balance",
)
MAX_CHARS = 160

_LABEL = re.compile(r"^\s*(?:" + "|".join(re.escape(v) for v in ATTRIBUTES.values()) + r")\s*:\s*", re.I | re.M)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(_LABEL.sub("", text or "")) if any(c.isalnum() for c in s)]


def _short(sentence: str) -> str:
    return sentence if len(sentence) <= MAX_CHARS else sentence[: MAX_CHARS - 1].rstrip() + "…"


def main_remark(result: dict) -> str:
    """The critique's main remark, one sentence ("" for an empty critique).

    Args:
        result: a critique as a dict with "text", and optionally "tags" (with or without their root) and
            "attributes" (attribute key -> text; "general_impression" is the overall verdict).
    """
    sentences = _sentences(result.get("text", ""))
    leaves = {SEPARATOR.join(t.split(SEPARATOR)[-2:]) for t in result.get("tags") or ()}
    for fault in (f for f in FAULTS if f in leaves):
        for sentence in sentences:
            if any(tag == fault and not negated for _, _, tag, _, negated in find_mentions(sentence)):
                return _short(sentence)
    overall = _sentences((result.get("attributes") or {}).get("general_impression", ""))
    return _short((overall or sentences or [""])[0])
