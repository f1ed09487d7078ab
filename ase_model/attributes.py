"""The aesthetic attributes a critique speaks to, and the one text format for them.

A critique is written (by the model, by dataset converters, by the starter's teacher) as labelled sections,
one per line, in this order:

    Composition: The subject sits on a third line ...
    Colour and lighting: ...
    Overall: ...

`format_critique` writes that form and `parse_critique` reads it back into a dict keyed by attribute name;
text without labels is split into sentences and each sentence is given to the attribute whose keywords it
uses (general_impression when none), so any free-form critique still yields attributes.
"""

from __future__ import annotations

import re

# key -> label used in the text. Keys follow PCCD's names where PCCD has the attribute.
ATTRIBUTES: dict[str, str] = {
    "composition": "Composition",
    "subject": "Subject",
    "color_lighting": "Colour and lighting",
    "exposure": "Exposure",
    "focus": "Focus",
    "depth_of_field": "Depth of field",
    "general_impression": "Overall",
}

# Other names datasets use for the same attributes (PCCD, DPC-Captions, RPCD ...).
ALIASES: dict[str, str] = {
    "subject_of_photo": "subject",
    "use_of_camera": "exposure",
    "color": "color_lighting",
    "colour": "color_lighting",
    "lighting": "color_lighting",
    "color_and_lighting": "color_lighting",
    "colour_and_lighting": "color_lighting",
    "focus_and_sharpness": "focus",
    "sharpness": "focus",
    "dof": "depth_of_field",
    "general": "general_impression",
    "overall": "general_impression",
    "impression": "general_impression",
}

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "composition": ("compos", "frame", "framing", "third", "crop", "horizon", "balance", "lines", "symmetr",
                    "placement", "tilt", "centre", "center"),
    "subject": ("subject", "story", "moment", "expression", "interesting"),
    "color_lighting": ("colour", "color", "light", "tone", "saturat", "cast", "white balance", "hue", "contrast",
                       "vibrant", "muted"),
    "exposure": ("expos", "bright", "dark", "highlight", "shadow", "clipped", "blown", "noise", "noisy", "grain",
                 "iso"),
    "focus": ("focus", "sharp", "soft", "blur", "detail", "crisp"),
    "depth_of_field": ("depth of field", "bokeh", "background", "aperture", "shallow", "isolat"),
}


def canonical_attribute(name: str) -> str | None:
    """Map a dataset's or a label's attribute name to ours (None when unknown).

    Args:
        name: our key ("exposure"), a dataset's alias ("use_of_camera") or a label ("Colour and lighting"), any case.
    """
    key = re.sub(r"[^a-z]+", "_", name.strip().lower()).strip("_")
    if key in ATTRIBUTES:
        return key
    if key in ALIASES:
        return ALIASES[key]
    for attr, label in ATTRIBUTES.items():
        if key == re.sub(r"[^a-z]+", "_", label.lower()).strip("_"):
            return attr
    return None


def format_critique(attributes: dict[str, str]) -> str:
    """Labelled sections, one per line, in the canonical order; empty attributes are left out.

    Args:
        attributes: canonical attribute -> its text (whitespace is collapsed; other keys are ignored).
    """
    lines = []
    for key, label in ATTRIBUTES.items():
        text = " ".join(str(attributes.get(key) or "").split())
        if text:
            lines.append(f"{label}: {text}")
    return "\n".join(lines)


_LABEL_RE = re.compile(
    r"(?:^|\n)\s*(?:[-*]\s*)?(" + "|".join(re.escape(label) for label in ATTRIBUTES.values()) + r")\s*:\s*",
    re.IGNORECASE,
)


def _attribute_of_sentence(sentence: str) -> str:
    low = sentence.lower()
    best, hits = "general_impression", 0
    for attr, words in _KEYWORDS.items():
        n = sum(low.count(w) for w in words)
        if n > hits:
            best, hits = attr, n
    return best


def parse_critique(text: str) -> dict[str, str]:
    """Attributes of a critique: labelled sections where there are labels, else sentences by keyword.

    Args:
        text: the critique (None or "" gives {}).
    """
    text = (text or "").strip()
    if not text:
        return {}
    by_label = {label.lower(): key for key, label in ATTRIBUTES.items()}
    parts = _LABEL_RE.split(text)
    out: dict[str, list[str]] = {}
    if len(parts) > 1:
        preamble = parts[0].strip()
        if preamble:
            out.setdefault("general_impression", []).append(preamble)
        for label, body in zip(parts[1::2], parts[2::2]):
            body = " ".join(body.split())
            if body:
                out.setdefault(by_label[label.lower()], []).append(body)
    else:
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
            if sentence:
                out.setdefault(_attribute_of_sentence(sentence), []).append(sentence)
    return {key: " ".join(out[key]) for key in ATTRIBUTES if key in out}
