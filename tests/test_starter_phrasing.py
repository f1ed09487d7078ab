"""The starter's phrasing: a closed grammar of sentences whose words, tags and advice agree with the verdicts."""

from __future__ import annotations

import random
import re

import pytest

from ase_model.attributes import format_critique, parse_critique
from ase_model.starter.analytic import VERDICT_LABELS, Analysis
from ase_model.starter.phrasing import (
    CONTRACT_LABELS,
    DEFECT_PENALTY,
    NO_SUGGESTION,
    OVERALL,
    SECTION,
    SUGGESTIONS,
    TEMPLATES,
    band,
    main_defect,
    write_critique,
)
from ase_model.tags import suggest_tags, verdict_tags

LABELS = {a: tuple(dict.fromkeys(CONTRACT_LABELS.get(a, ()) + VERDICT_LABELS.get(a, ())))
          for a in {*CONTRACT_LABELS, *VERDICT_LABELS}}


def words(sentence: str) -> tuple[str, ...]:
    return tuple(re.sub(r"[^a-z0-9' ]+", " ", sentence.lower().replace("-", " ")).split())


def every_sentence() -> list[tuple[object, str]]:
    out = [(("statement",) + k, s) for k, ss in TEMPLATES.items() for s in ss]
    out += [(("advice",) + k, s) for k, ss in SUGGESTIONS.items() for s in ss]
    out += [(("advice", None), s) for s in NO_SUGGESTION]
    out += [(("overall", b), s) for b, ss in OVERALL.items() for s in ss]
    return out


def random_analysis(rng: random.Random, **fixed) -> Analysis:
    """Verdicts drawn from the contract, the teacher's base penalties as score terms."""
    v = {a: rng.choice(ls) for a, ls in LABELS.items()}
    v.update(fixed)
    terms = {a: -p for (a, label), p in DEFECT_PENALTY.items() if v.get(a) == label}
    if v["exposure"] != "well exposed" and v["highlights"] == "clipped":
        terms.pop("highlights")
    return Analysis(measurements={}, verdicts=v, score=max(1.0, 7.0 + sum(terms.values())), notes=terms)


def test_the_grammar_is_unambiguous():
    """Each sentence has one key; none is a word-prefix of another, so a sentence cut short never reads as one."""
    seen: dict[tuple[str, ...], object] = {}
    for key, sentence in every_sentence():
        w = words(sentence)
        assert w not in seen, (sentence, key, seen.get(w))
        seen[w] = key
    for a in seen:
        for b in seen:
            assert a == b or a != b[: len(a)], (a, b)


def test_no_sentence_hides_in_another_or_in_a_splice():
    """The garbled output of issue 14 joined two templates at a shared word ("... free of noise gives the
    surfaces a gritty texture"). No sentence lies inside another one with a different key, and a splice of two
    sentences at a shared word never reads as a sentence about a third thing: the checker reads it as unknown,
    or as a statement about one of the two attributes it was made of (which it then checks like any other)."""
    keyed = {words(s): k for k, s in every_sentence()}
    items = list(keyed.items())

    def topic(key):
        return key[:2]  # kind and attribute (statement / advice) or kind and band (overall)

    for wa, ka in items:
        for wb, kb in items:
            if ka == kb:
                continue
            inner = " " + " ".join(wa) + " "
            assert inner not in " " + " ".join(wb) + " ", (wa, wb)
            for i, word in enumerate(wa):
                for j, other in enumerate(wb):
                    if word == other:
                        splice = wa[: i + 1] + wb[j + 1:]
                        got = keyed.get(splice)
                        assert got is None or topic(got) in (topic(ka), topic(kb)), (wa, wb, splice, got)


def test_no_numbers_and_nothing_for_no_evidence():
    """A student cannot see a tilt's degrees or an exposure's stops; "n/a" and intact highlights say nothing."""
    for _key, sentence in every_sentence():
        assert not re.search(r"[0-9{}]", sentence), sentence
    for attribute, labels in LABELS.items():
        for label in labels:
            silent = label == "n/a" or (attribute, label) == ("highlights", "intact")
            assert ((attribute, label) in TEMPLATES) != silent, (attribute, label)
            assert attribute in SECTION


@pytest.mark.parametrize("seed", range(4))
def test_critiques_carry_exactly_the_verdicts_tags(seed):
    rng = random.Random(seed)
    for _ in range(200):
        a = random_analysis(rng)
        text, attributes = write_critique(a, rng)
        assert text == format_critique(attributes) and parse_critique(text) == attributes
        assert suggest_tags(text) == verdict_tags(a.verdicts), (a.verdicts, text)


def test_no_sentence_for_n_a():
    rng = random.Random(1)
    a = random_analysis(rng, tilt="n/a", framing="n/a", composition="n/a")
    text, attributes = write_critique(a, rng)
    assert "composition" not in attributes, text
    stated = {s for ss in (TEMPLATES.get(k, []) for k in TEMPLATES if k[0] in ("tilt", "framing", "composition"))
              for s in ss}
    assert not any(s in text for s in stated)
    a = random_analysis(rng, tilt="tilted", framing="cut off", composition="n/a")
    _, attributes = write_critique(a, rng)
    assert any(s in attributes["composition"] for s in TEMPLATES[("tilt", "tilted")])
    assert any(s in attributes["composition"] for s in TEMPLATES[("framing", "cut off")])


def test_advice_names_a_stated_defect_and_only_then():
    """Advice is for the largest penalty, and only ever for a defect the critique states: no "move toward a
    third" unless the frame is off balance, nothing to fix only when there is no defect."""
    rng = random.Random(3)
    off_balance = set(SUGGESTIONS[("composition", "off balance")])
    for _ in range(500):
        a = random_analysis(rng)
        text, attributes = write_critique(a, rng)
        overall = attributes["general_impression"]
        defect = main_defect(a.verdicts, a.notes)
        if defect is None:
            assert not any(a.verdicts.get(k[0]) == k[1] for k in DEFECT_PENALTY)
            assert any(overall.endswith(s) for s in NO_SUGGESTION)
        else:
            assert a.verdicts[defect[0]] == defect[1]
            assert a.notes[defect[0] if defect[0] != "highlights" else "highlights"] == min(a.notes.values()) or \
                defect[0] == "highlights"
            assert any(overall.endswith(s) for s in SUGGESTIONS[defect]), (defect, overall)
        if any(overall.endswith(s) for s in off_balance):
            assert a.verdicts["composition"] == "off balance"
        assert any(overall.startswith(s) for s in OVERALL[band(a.score)])


def test_main_defect():
    v = {"exposure": "well exposed", "highlights": "clipped", "sharpness": "soft", "composition": "rule of thirds"}
    assert main_defect(v) == ("sharpness", "soft")  # base penalties: soft 1.5 > clipped 0.4
    assert main_defect(v, {"exposure": -0.4, "sharpness": -1.9, "composition": 0.5}) == ("sharpness", "soft")
    assert main_defect(v, {"exposure": -2.0, "sharpness": -1.5}) == ("highlights", "clipped")
    assert main_defect({"exposure": "well exposed", "composition": "centered"}) is None
    assert main_defect({"composition": "rule of thirds"}, {"composition": 0.5}) is None
    # a penalty whose verdict is no defect (a teacher that penalised monochrome, say) falls to the next one
    assert main_defect({"saturation": "monochrome", "noise": "noisy"}, {"saturation": -2.0, "noise": -1.0}) == (
        "noise", "noisy")


def test_band_edges():
    assert [band(s) for s in (9.5, 7.0, 6.99, 5.5, 5.49, 4.0, 3.99, 1.0)] == [
        "strong", "strong", "solid", "solid", "flawed", "flawed", "weak", "weak"]


def test_critiques_are_short_and_varied():
    rng = random.Random(11)
    lengths, sentences = [], set()
    for _ in range(300):
        a = random_analysis(rng, framing=rng.choice(["n/a", "n/a", "cut off"]), tilt=rng.choice(["n/a", "level",
                                                                                                   "tilted"]))
        text, _ = write_critique(a, rng)
        body = " ".join(line.split(":", 1)[1] for line in text.splitlines())
        lengths.append(len(body.split()))
        sentences.update(re.split(r"(?<=[.!?])\s+", body.strip()))
    lengths.sort()
    assert 30 <= lengths[0] and lengths[len(lengths) // 2] <= 70 and lengths[-1] <= 90, lengths
    assert len(sentences) >= 150
