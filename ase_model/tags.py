"""Tags from a controlled, hierarchical aesthetic vocabulary, matched deterministically against a critique.

The design keeps tags out of the language model's hands (no "answer in JSON" that junk can leak from): the
critique is free text, and tags are the vocabulary entries whose phrases it uses. The vocabulary
(`vocab/aesthetic_vocabulary.json`) maps tag paths without the root ("exposure|underexposed") to evidence
phrases. Matching rules:

- case-insensitive, on whole words; hyphens and underscores read as spaces ("well-exposed" = "well exposed"),
  curly quotes as straight ones;
- overlapping mentions are resolved by the longest match ("no visible noise" -> noise|clean beats "noise" ->
  noise|noisy; "soft light" -> lighting|soft light beats "soft" -> focus|soft); ties by position, then tag name;
- a mention is dropped when a negator ("not", "no", "without", "never", "nor", "*n't", ...) occurs within the
  few words before it in the same clause ("not underexposed", "no noise", "isn't soft", "without any tilt").
  Clauses end at punctuation and at "but"/"and"/"although"/..., so "no noise, but soft" still tags soft,
  while "or"/"nor" carry the negation on ("no noise or blur").

`tag_for_verdict` maps the analytic critic's verdicts (ase_model.starter.analytic) to their tags ("n/a", "no clear
evidence", names none); the starter's phrasing templates are tested to produce exactly those tags, which keeps
generated text and tags consistent.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

DEFAULT_VOCABULARY = Path(__file__).with_name("vocab") / "aesthetic_vocabulary.json"
SEPARATOR = "|"

# How many words before a mention a negator may sit (covers "not at all soft", "without any visible tilt").
NEGATION_WINDOW = 4
_NEGATORS = frozenset(
    "not no never without nor neither hardly barely nothing none nowhere lacks lacking lack avoid avoids avoiding "
    "cannot cant isnt arent wasnt werent dont doesnt didnt hasnt havent hadnt wont shouldnt couldnt wouldnt mustnt "
    "aint".split()
)
_NEGATOR_BIGRAMS = frozenset({("free", "of"), ("rather", "than"), ("instead", "of"), ("far", "from")})
# Words that close the clause a negation can reach.
_CLAUSE_BREAKS = frozenset("but and yet although though however while whereas so because which".split())
_PUNCT_BREAK = re.compile(r"[.,;:!?()\[\]{}\"\n]")
_WORD = re.compile(r"[a-z0-9&']+")

# The analytic critic's verdicts (attribute, label) -> tag path without root. None: the verdict names no tag.
VERDICT_TAGS: dict[tuple[str, str], str | None] = {
    ("exposure", "underexposed"): "exposure|underexposed",
    ("exposure", "well exposed"): "exposure|well exposed",
    ("exposure", "overexposed"): "exposure|overexposed",
    ("highlights", "clipped"): "exposure|clipped highlights",
    ("highlights", "intact"): None,
    ("sharpness", "sharp"): "focus|sharp",
    ("sharpness", "soft"): "focus|soft",
    ("saturation", "monochrome"): "color|black and white",
    ("saturation", "muted"): "color|muted",
    ("saturation", "natural"): "color|natural",
    ("saturation", "vivid"): "color|vibrant",
    ("saturation", "oversaturated"): "color|oversaturated",
    ("white_balance", "neutral"): "color|neutral white balance",
    ("white_balance", "warm cast"): "color|warm cast",
    ("white_balance", "cool cast"): "color|cool cast",
    ("white_balance", "green cast"): "color|green cast",
    ("white_balance", "magenta cast"): "color|magenta cast",
    ("contrast", "flat"): "contrast|flat",
    ("contrast", "balanced"): "contrast|balanced",
    ("contrast", "harsh"): "contrast|harsh",
    ("noise", "clean"): "noise|clean",
    ("noise", "noisy"): "noise|noisy",
    ("tilt", "level"): "composition|level horizon",
    ("tilt", "tilted"): "composition|tilted horizon",
    ("tilt", "n/a"): None,
    ("composition", "rule of thirds"): "composition|rule of thirds",
    ("composition", "centered"): "composition|centered",
    ("composition", "off balance"): "composition|off balance",
    ("composition", "n/a"): None,
    ("framing", "cut off"): "composition|cut off",
    ("framing", "n/a"): None,
}


def _normalize(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = re.sub(r"[-_\u2010-\u2015]+", " ", text)
    return re.sub(r"[ \t\r\f\v]+", " ", text)


def _phrase_pattern(phrase: str) -> re.Pattern:
    words = _normalize(phrase).split()
    return re.compile(r"(?<![a-z0-9])" + r"\s+".join(re.escape(w) for w in words) + r"(?![a-z0-9])")


def load_vocabulary(path: str | Path | None = None) -> dict[str, list[str]]:
    """The vocabulary as {tag path without root: [phrases]} (a fresh copy; '_' keys are left out).

    Args:
        path: a vocabulary JSON file (default: DEFAULT_VOCABULARY).
    """
    return {tag: list(phrases) for tag, phrases in _load(str(path or DEFAULT_VOCABULARY))[0].items()}


def exclusive_groups(path: str | Path | None = None) -> list[frozenset[str]]:
    """Sets of tags that contradict each other (at most one of each set describes a photo).

    Args:
        path: a vocabulary JSON file (default: DEFAULT_VOCABULARY).
    """
    return list(_load(str(path or DEFAULT_VOCABULARY))[1])


@functools.lru_cache(maxsize=8)
def _load(path: str):
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    vocab: dict[str, tuple[str, ...]] = {}
    for tag, phrases in raw.items():
        if tag.startswith("_"):
            continue
        if not isinstance(phrases, list) or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise ValueError(f"vocabulary entry {tag!r} must be a list of non-empty phrases")
        parts = [p.strip() for p in tag.split(SEPARATOR)]
        if not all(parts):
            raise ValueError(f"bad tag path {tag!r}")
        vocab[SEPARATOR.join(parts)] = tuple(dict.fromkeys(" ".join(_normalize(p).split()) for p in phrases))
    groups = tuple(frozenset(g) for g in raw.get("_exclusive", []))
    # (pattern, tag, phrase) in a fixed order so that matching is deterministic.
    patterns = tuple((_phrase_pattern(p), tag, p) for tag in sorted(vocab) for p in vocab[tag])
    return vocab, groups, patterns


def _is_negated(norm: str, start: int) -> bool:
    """A negator among the few words before `start`, inside the same clause."""
    before = norm[:start]
    cut = max((m.end() for m in _PUNCT_BREAK.finditer(before)), default=0)
    words = [w.replace("'", "") for w in _WORD.findall(before[cut:])]
    window: list[str] = []
    for w in reversed(words):
        if w in _CLAUSE_BREAKS:
            break
        window.append(w)
        if len(window) >= NEGATION_WINDOW:
            break
    window.reverse()
    if any(w in _NEGATORS for w in window):
        return True
    return any((a, b) in _NEGATOR_BIGRAMS for a, b in zip(window, window[1:]))


def find_mentions(text: str, path: str | Path | None = None) -> list[tuple[int, int, str, str, bool]]:
    """Every kept mention after longest-match resolution: (start, end, tag, phrase, negated), in text order.

    Positions refer to the normalised text (same length as lower-cased input with hyphens as spaces).

    Args:
        text: the critique (None or "" finds nothing).
        path: a vocabulary JSON file (default: DEFAULT_VOCABULARY).
    """
    _, _, patterns = _load(str(path or DEFAULT_VOCABULARY))
    norm = _normalize(text or "")
    candidates = []
    for pattern, tag, phrase in patterns:
        for m in pattern.finditer(norm):
            candidates.append((m.start(), m.end(), tag, phrase))
    # Longest first; then leftmost; then tag name: a total order, so the outcome never depends on dict order.
    candidates.sort(key=lambda c: (-(c[1] - c[0]), c[0], c[2]))
    taken: list[tuple[int, int]] = []
    kept = []
    for start, end, tag, phrase in candidates:
        if any(start < e and s < end for s, e in taken):
            continue
        taken.append((start, end))
        kept.append((start, end, tag, phrase, _is_negated(norm, start)))
    kept.sort()
    return kept


def suggest_tags(text: str, root: str = "aesthetics", max_tags: int | None = None,
                 path: str | Path | None = None) -> list[str]:
    """Hierarchical tags evidenced by `text`, sorted and deduplicated, e.g. ["aesthetics|exposure|underexposed"].

    Args:
        text: the critique.
        root: the tags' top level; "" gives paths without a root.
        max_tags: keep only the most-mentioned tags (ties: first mention, then name), then sort them.
        path: a vocabulary JSON file (default: DEFAULT_VOCABULARY).
    """
    counts: dict[str, list[int]] = {}
    for start, _end, tag, _phrase, negated in find_mentions(text, path):
        if negated:
            continue
        entry = counts.setdefault(tag, [0, start])
        entry[0] += 1
    tags = sorted(counts)
    if max_tags is not None:
        ranked = sorted(tags, key=lambda t: (-counts[t][0], counts[t][1], t))
        tags = sorted(ranked[: max(0, max_tags)])
    return [_with_root(t, root) for t in tags]


def _with_root(tag: str, root: str) -> str:
    root = (root or "").strip().strip(SEPARATOR)
    return f"{root}{SEPARATOR}{tag}" if root else tag


def tag_for_verdict(attribute: str, label: str, root: str = "aesthetics") -> str | None:
    """The tag an analytic verdict stands for (None for verdicts that name nothing, e.g. tilt 'n/a').

    Raises KeyError for a verdict not in VERDICT_TAGS.

    Args:
        attribute: the verdict's attribute, e.g. "exposure".
        label: its label, e.g. "underexposed".
        root: the tag's top level ("" for none).
    """
    key = (attribute, label)
    if key not in VERDICT_TAGS:
        raise KeyError(f"unknown verdict {attribute}={label!r}")
    tag = VERDICT_TAGS[key]
    return None if tag is None else _with_root(tag, root)


def verdict_tags(verdicts: dict[str, str], root: str = "aesthetics") -> list[str]:
    """Sorted tags of a whole verdict dict (verdicts without a tag are skipped).

    Args:
        verdicts: attribute -> label, as the analytic critic gives them.
        root: the tags' top level ("" for none).
    """
    return sorted({t for k, v in verdicts.items() if (k, v) in VERDICT_TAGS and (t := tag_for_verdict(k, v, root))})


def conflicts(tags: list[str], root: str = "aesthetics") -> list[frozenset[str]]:
    """The exclusive groups that `tags` hits more than once (contradictory tagging).

    Args:
        tags: tag paths, with or without `root`.
        root: the top level to strip before comparing.
    """
    plain = {t[len(root) + 1:] if root and t.startswith(root + SEPARATOR) else t for t in tags}
    return [g for g in exclusive_groups() if len(g & plain) > 1]
