"""Reads a critique back into verdicts, flags what contradicts them, and repairs it.

The starter's critiques are written in a closed grammar (`ase_model.starter.phrasing`): every sentence is a
template that states one verdict, gives advice for one defect, or sums up one score band. So reading back is
exact matching, not language understanding: a sentence, with case, whitespace and punctuation normalised, is
a template or it is unknown. A garbled splice of two templates, a half sentence cut off by the token limit,
or free text from another model all read as unknown.

    reading = read_back(text)                     # per sentence: statement / advice / overall / unknown
    report = check(text, verdicts, score)         # contradictions, conflicts, bad advice, unknown sentences
    text, report = repair(text, verdicts, score)  # the verdicts win; the result reads back clean

Sentences of the earlier phrasing (tilt in degrees, exposure advice in stops, one advice for any colour cast)
still read back, so the previous starter model is measured fairly; repair rewords them in today's grammar.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field

from ase_model.attributes import format_critique, parse_critique

from .phrasing import (
    DEFECT_PENALTY,
    NO_SUGGESTION,
    OVERALL,
    SECTION,
    STATEMENT_ORDER,
    SUGGESTIONS,
    TEMPLATES,
    advice,
    band,
    main_defect,
)

__all__ = ["Sentence", "Reading", "Problem", "Report", "read_back", "check", "repair"]

ANY_CAST = "any cast"  # the defect of the earlier phrasing's white-balance advice, which named no direction

# The earlier phrasing (the starter model shipped before issue 14): {deg} is a whole number, {stops} an amount.
LEGACY: dict[tuple[str, str | None, str | None], list[str]] = {
    ("statement", "exposure", "well exposed"): ["The frame is nicely exposed."],
    ("statement", "exposure", "underexposed"): ["The frame is underexposed and murky."],
    ("statement", "exposure", "overexposed"): ["The exposure runs hot, so the frame looks washed out.",
                                               "The frame is overexposed and needs darkening."],
    ("statement", "noise", "clean"): ["Smooth areas stay free of noise."],
    ("statement", "saturation", "monochrome"): ["The frame is rendered in shades of grey."],
    ("statement", "white_balance", "warm cast"): ["An orange cast tints the whole frame."],
    ("statement", "white_balance", "cool cast"): ["A blue cast tints the whole frame."],
    ("statement", "white_balance", "green cast"): ["A green tint covers the frame.",
                                                   "A greenish cast tints the whole frame."],
    ("statement", "white_balance", "magenta cast"): ["A magenta tint covers the frame.",
                                                     "A pink cast tints the whole frame."],
    ("statement", "sharpness", "sharp"): ["The main detail is tack sharp."],
    ("statement", "sharpness", "soft"): ["Detail is soft throughout."],
    ("statement", "composition", "off balance"): ["The main interest drifts to the edge, so the balance is off."],
    ("statement", "tilt", "tilted"): ["The frame is tilted by about {deg} degrees.",
                                      "The lines lean by about {deg} degrees; it needs straightening.",
                                      "It looks crooked, off level by about {deg} degrees.",
                                      "A tilt of about {deg} degrees makes the frame look crooked."],
    ("advice", "exposure", "underexposed"): ["Lift the exposure by about {stops}.", "Brighten it by about {stops}.",
                                             "Give it about {stops} more exposure."],
    ("advice", "exposure", "overexposed"): ["Pull the exposure down by about {stops}.", "Darken it by about {stops}.",
                                            "Give it about {stops} less exposure."],
    ("advice", "white_balance", ANY_CAST): ["Correct the white balance.", "Neutralise the white balance.",
                                            "Set the white balance on a grey area."],
    ("advice", "tilt", "tilted"): ["Straighten the frame before anything else."],
}
_PLACEHOLDERS = {"{deg}": r"\d+", "{stops}": r"(?:half a stop|one stop|\d+(?: \d+)? stops)"}


@dataclass(frozen=True)
class Sentence:
    """One sentence of a critique and what it says.

    kind: "statement" (attribute, label: a verdict), "advice" (attribute, label: the defect it fixes; both None
    for "nothing needs changing"), "overall" (label: the score band) or "unknown".
    """

    text: str
    section: str
    kind: str
    attribute: str | None = None
    label: str | None = None
    legacy: bool = False


@dataclass
class Reading:
    sentences: list[Sentence]

    def statements(self) -> dict[str, list[str]]:
        """Verdict name -> the labels its statements give, in text order."""
        out: dict[str, list[str]] = {}
        for s in self.sentences:
            if s.kind == "statement":
                out.setdefault(s.attribute, []).append(s.label)
        return out

    def verdicts(self) -> dict[str, str]:
        """What the text says, one label per verdict (the first where statements disagree)."""
        return {a: labels[0] for a, labels in self.statements().items()}

    @property
    def unknown(self) -> int:
        return sum(s.kind == "unknown" for s in self.sentences)


@dataclass
class Problem:
    index: int    # the sentence's index in Reading.sentences
    kind: str     # unknown | contradiction (against a verdict) | conflict (two statements) | advice | overall
    message: str


@dataclass
class Report:
    """What check() found in a text; after repair() also what repair changed (counts of sentences)."""

    reading: Reading
    problems: list[Problem] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # verdicts with words that the text never states
    replaced: int = 0
    dropped: int = 0
    added: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def contradictions(self) -> int:
        """Problems other than unknown sentences."""
        return sum(p.kind != "unknown" for p in self.problems)

    def changes(self) -> dict[str, int]:
        return {"replaced": self.replaced, "dropped": self.dropped, "added": self.added}


def _normalise(sentence: str) -> str:
    text = sentence.lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", re.sub(r"[-_\u2010-\u2015]", " ", text)).split())


@functools.cache
def _grammar() -> tuple[dict[str, tuple], list[tuple[re.Pattern, tuple]], dict[str, str]]:
    """(exact: normalised sentence -> key, patterns: [(regex, key)], canonical: normalised -> template text)."""
    exact: dict[str, tuple] = {}
    canonical: dict[str, str] = {}

    def add(key: tuple, sentence: str, legacy: bool) -> None:
        norm = _normalise(sentence)
        if exact.get(norm, key) != key:
            raise ValueError(f"the sentence {sentence!r} has two meanings: {exact[norm]} and {key}")
        exact[norm] = key + (legacy,)
        canonical[norm] = sentence

    for (attribute, label), sentences in TEMPLATES.items():
        for s in sentences:
            add(("statement", attribute, label), s, False)
    for (attribute, label), sentences in SUGGESTIONS.items():
        for s in sentences:
            add(("advice", attribute, label), s, False)
    for s in NO_SUGGESTION:
        add(("advice", None, None), s, False)
    for b, sentences in OVERALL.items():
        for s in sentences:
            add(("overall", None, b), s, False)
    patterns = []
    for key, sentences in LEGACY.items():
        for s in sentences:
            if "{" not in s:
                add(key, s, True)
                continue
            regex = re.escape(_normalise(s.replace("{deg}", "qqdegqq").replace("{stops}", "qqstopsqq")))
            regex = regex.replace("qqdegqq", _PLACEHOLDERS["{deg}"]).replace("qqstopsqq", _PLACEHOLDERS["{stops}"])
            patterns.append((re.compile(f"^{regex}$"), key + (True,)))
    return exact, patterns, canonical


def _classify(sentence: str, section: str) -> Sentence:
    exact, patterns, _ = _grammar()
    norm = _normalise(sentence)
    key = exact.get(norm) or next((k for p, k in patterns if p.match(norm)), None)
    if key is None:
        return Sentence(sentence, section, "unknown")
    kind, attribute, label, legacy = key
    return Sentence(sentence, section, kind, attribute, label, legacy)


def read_back(text: str) -> Reading:
    """Every sentence of a critique, in order, with what it says.

    Args:
        text: a critique in labelled sections (ase_model.attributes.format_critique) or free text.
    """
    sentences = []
    for section, body in parse_critique(text or "").items():
        for sentence in re.split(r"(?<=[.!?])\s+", body.strip()):
            if sentence.strip():
                sentences.append(_classify(sentence.strip(), section))
    return Reading(sentences)


def _fixes(defect: tuple[str | None, str | None], label: str | None) -> bool:
    """Advice for `defect` fits a statement (or verdict) that its attribute is `label`."""
    return label == defect[1] or (defect[1] == ANY_CAST and label is not None and label.endswith(" cast"))


def check(text: str, verdicts: dict[str, str] | None = None, score: float | None = None) -> Report:
    """The problems of a critique: on its own, and against verdicts and a score when given.

    Args:
        text: the critique.
        verdicts: verdict name -> label (analytic verdicts, or an attribute head's); names it lacks are not checked.
        score: the 0-10 score the overall sentence's band must match.

    Flags unknown sentences; statements against a verdict ("n/a" means nothing may be said); two statements
    with different labels for one verdict; advice for a defect no statement names, or that a statement or
    verdict contradicts, or "nothing needs changing" beside a defect; an overall band other than the score's.
    """
    reading = read_back(text)
    report = Report(reading)
    problems = report.problems
    verdicts = verdicts or {}
    stated = reading.statements()
    for i, s in enumerate(reading.sentences):
        if s.kind == "unknown":
            problems.append(Problem(i, "unknown", f"not a sentence of the critique grammar: {s.text!r}"))
        elif s.kind == "statement":
            if len(set(stated[s.attribute])) > 1:
                labels = " and ".join(repr(x) for x in dict.fromkeys(stated[s.attribute]))
                problems.append(Problem(i, "conflict", f"{s.attribute} is said to be {labels}"))
            want = verdicts.get(s.attribute)
            if want is not None and want != s.label:
                why = "nothing should be said" if want == "n/a" else f"the verdict is {want!r}"
                problems.append(Problem(i, "contradiction", f"says {s.attribute} is {s.label!r}; {why}"))
        elif s.kind == "advice":
            message = _advice_problem(s, stated, verdicts)
            if message:
                problems.append(Problem(i, "advice", message))
        elif s.kind == "overall":
            if score is not None and s.label != band(score):
                problems.append(Problem(i, "overall", f"reads as {s.label!r}; a score of {score:.1f} is "
                                                      f"{band(score)!r}"))
            elif len({x.label for x in reading.sentences if x.kind == "overall"}) > 1:
                problems.append(Problem(i, "conflict", "overall sentences of different bands"))
    report.missing = [(a, label) for a, label in verdicts.items() if (a, label) in TEMPLATES and a not in stated]
    return report


def _advice_problem(s: Sentence, stated: dict[str, list[str]], verdicts: dict[str, str]) -> str | None:
    if s.attribute is None:
        named = [(a, label) for a, labels in stated.items() for label in labels if (a, label) in DEFECT_PENALTY]
        named += [(a, label) for a, label in verdicts.items() if (a, label) in DEFECT_PENALTY]
        return f"says nothing needs changing, but {named[0][0]} is {named[0][1]!r}" if named else None
    defect = (s.attribute, s.label)
    if s.attribute not in stated:
        return f"advice for {s.attribute} {s.label!r}, which no statement names"
    if not any(_fixes(defect, label) for label in stated[s.attribute]):
        return f"advice for {s.attribute} {s.label!r}, but the critique says {stated[s.attribute][0]!r}"
    if s.attribute in verdicts and not _fixes(defect, verdicts[s.attribute]):
        return f"advice for {s.attribute} {s.label!r}, but the verdict is {verdicts[s.attribute]!r}"
    return None


def repair(text: str, verdicts: dict[str, str], score: float | None = None, seed: int = 0) -> tuple[str, Report]:
    """The critique made to agree with the verdicts and the score; it reads back clean (check() finds nothing).

    Args:
        text: the critique (any text; what is outside the grammar is dropped).
        verdicts: verdict name -> label; these win. Names it lacks keep the text's statement unless the text
            contradicts itself there (then nothing is said).
        score: the 0-10 score the overall sentence follows (None: the text's first overall sentence stays).
        seed: picks the wording of new sentences (deterministic).

    Returns (text, the report of check() on the input, with the counts of sentences replaced, dropped, added).
    A statement against its verdict is replaced by one for the verdict (dropped when the verdict says nothing:
    "n/a", intact highlights); verdicts the text misses get a sentence; unknown sentences and repeats are
    dropped; advice that fits no defect is replaced by advice for the largest one.
    """
    report = check(text, verdicts, score)
    reading = report.reading
    rng = random.Random(seed)
    canonical = _grammar()[2]

    def wording(s: Sentence, pool: list[str]) -> str:
        return rng.choice(pool) if s.legacy else canonical[_normalise(s.text)]

    by_attr: dict[str, list[Sentence]] = {}
    for s in reading.sentences:
        if s.kind == "statement":
            by_attr.setdefault(s.attribute, []).append(s)
    report.dropped += reading.unknown
    chosen: dict[str, str] = {}
    final: dict[str, str] = {}
    names = [a for a in STATEMENT_ORDER if a in by_attr or a in verdicts]
    names += sorted((set(by_attr) | set(verdicts)) - set(names))
    for name in names:
        said = by_attr.get(name, [])
        if name in verdicts:
            key = (name, verdicts[name])
            agree = [s for s in said if s.label == key[1]]
            if key in TEMPLATES:
                chosen[name] = wording(agree[0], TEMPLATES[key]) if agree else rng.choice(TEMPLATES[key])
                final[name] = key[1]
                report.replaced += bool(said and not agree)
                report.added += not said
            report.dropped += len(said) - bool(key in TEMPLATES and said)
        elif said and len({s.label for s in said}) == 1:  # no verdict: keep what the text says, said once
            chosen[name], final[name] = wording(said[0], TEMPLATES[(name, said[0].label)]), said[0].label
            report.dropped += len(said) - 1
        else:  # no verdict and the text disagrees with itself: say nothing
            report.dropped += len(said)

    overall = _pick_overall(reading, score, rng, report)
    tip = _pick_advice(reading, final, rng, report, wording)
    sections: dict[str, list[str]] = {}
    for name in names:
        if name in chosen:
            sections.setdefault(SECTION[name], []).append(chosen[name])
    attributes = {key: " ".join(sections[key]) for key in ("composition", "color_lighting", "exposure", "focus")
                  if key in sections}
    closing = [x for x in (overall, tip) if x]
    if closing:
        attributes["general_impression"] = " ".join(closing)
    return format_critique(attributes), report


def _pick_overall(reading: Reading, score: float | None, rng: random.Random, report: Report) -> str | None:
    said = [s for s in reading.sentences if s.kind == "overall"]
    want = band(score) if score is not None else (said[0].label if said else None)
    if want is None:
        return None
    fit = [s for s in said if s.label == want]
    report.dropped += len(said) - (1 if said else 0)
    if fit:
        return _grammar()[2][_normalise(fit[0].text)]
    report.replaced += bool(said)
    report.added += not said
    return rng.choice(OVERALL[want])


def _pick_advice(reading: Reading, final: dict[str, str], rng: random.Random, report: Report, wording) -> str:
    said = [s for s in reading.sentences if s.kind == "advice"]
    defects = [(a, label) for a, label in final.items() if (a, label) in DEFECT_PENALTY]
    report.dropped += max(0, len(said) - 1)
    for s in said:
        if s.attribute is None and not defects:
            return wording(s, NO_SUGGESTION)
        if s.attribute is not None and _fixes((s.attribute, s.label), final.get(s.attribute)):
            return wording(s, SUGGESTIONS[(s.attribute, final[s.attribute])])
    report.replaced += bool(said)
    report.added += not said
    return advice(main_defect(final), rng)
