"""Controlled vocabulary + deterministic tagger, and its agreement with the starter's phrasing templates."""

from __future__ import annotations

import json
import random

import pytest

from ase_model.starter.analytic import VERDICT_LABELS
from ase_model.starter.phrasing import CONTRACT_LABELS, NO_SUGGESTION, OVERALL, SUGGESTIONS, TEMPLATES
from ase_model.tags import (
    DEFAULT_VOCABULARY,
    VERDICT_TAGS,
    conflicts,
    exclusive_groups,
    load_vocabulary,
    suggest_tags,
    tag_for_verdict,
    verdict_tags,
)


def plain(text: str) -> list[str]:
    return suggest_tags(text, root="")


def test_vocabulary_is_well_formed():
    vocab = load_vocabulary()
    assert len(vocab) >= 60
    for tag, phrases in vocab.items():
        assert 2 <= len(tag.split("|")) <= 3 and all(p.strip() == p and p for p in tag.split("|")), tag
        assert phrases and all(p.strip() for p in phrases), tag
    # The families the brief names, plus a broad PCCD-style set.
    for tag in ["exposure|underexposed", "exposure|overexposed", "exposure|well exposed", "exposure|clipped highlights",
                "color|muted", "color|vibrant", "color|oversaturated", "color|warm cast", "color|cool cast",
                "color|neutral white balance", "contrast|flat", "contrast|punchy", "focus|sharp", "focus|soft",
                "noise|noisy", "noise|clean", "composition|tilted horizon", "composition|level horizon",
                "composition|rule of thirds", "composition|centered", "composition|off balance",
                "composition|leading lines", "composition|symmetry", "composition|negative space",
                "composition|framing",
                "depth of field|shallow", "depth of field|bokeh", "lighting|silhouette", "lighting|backlit",
                "lighting|golden hour", "lighting|high key", "lighting|low key", "focus|motion blur",
                "technique|long exposure", "color|black and white", "composition|minimalism",
                "composition|cluttered background", "composition|cut off", "composition|tight crop"]:
        assert tag in vocab, tag
    for group in exclusive_groups():
        assert group <= set(vocab), group
    for tag in VERDICT_TAGS.values():
        assert tag is None or tag in vocab


def test_load_vocabulary_returns_a_copy():
    a = load_vocabulary()
    a["exposure|underexposed"].append("zzz")
    assert "zzz" not in load_vocabulary()["exposure|underexposed"]


@pytest.mark.parametrize("text,tag", [
    ("The image is underexposed.", "exposure|underexposed"),
    ("It is far too dark and murky.", "exposure|underexposed"),
    ("Way TOO BRIGHT, the sky is blown out.", "exposure|overexposed"),
    ("A well-exposed frame.", "exposure|well exposed"),
    ("The highlights are clipped on the forehead.", "exposure|clipped highlights"),
    ("Colours are muted.", "color|muted"),
    ("Vivid colours everywhere.", "color|vibrant"),
    ("Saturation is pushed too far.", "color|oversaturated"),
    ("There is a warm cast from the tungsten lamps.", "color|warm cast"),
    ("A cold blue cast.", "color|cool cast"),
    ("The white balance is neutral.", "color|neutral white balance"),
    ("It looks flat.", "contrast|flat"),
    ("Punchy, high-contrast processing.", "contrast|punchy"),
    ("Tack-sharp eyes.", "focus|sharp"),
    ("The face is slightly soft.", "focus|soft"),
    ("Noisy shadows.", "noise|noisy"),
    ("The horizon is tilted.", "composition|tilted horizon"),
    ("A level horizon.", "composition|level horizon"),
    ("Placed on the rule-of-thirds lines.", "composition|rule of thirds"),
    ("The subject is centred.", "composition|centered"),
    ("The frame feels off balance.", "composition|off balance"),
    ("The crop cuts off her feet.", "composition|cut off"),
    ("The horizon is crooked.", "composition|tilted horizon"),
    ("Leading lines pull you in.", "composition|leading lines"),
    ("Lovely bokeh.", "depth of field|bokeh"),
    ("A silhouette against the sky at golden hour.", "lighting|silhouette"),
    ("A silhouette against the sky at golden hour.", "lighting|golden hour"),
    ("A long exposure smooths the sea.", "technique|long exposure"),
    ("In black-and-white the shapes read better.", "color|black and white"),
])
def test_positives(text, tag):
    assert tag in plain(text)


@pytest.mark.parametrize("text,tag", [
    ("The image is not underexposed.", "exposure|underexposed"),
    ("There is no noise.", "noise|noisy"),
    ("It isn't soft.", "focus|soft"),
    ("It isn\u2019t soft.", "focus|soft"),  # curly apostrophe
    ("The horizon is level, without any tilt.", "composition|tilted horizon"),
    ("Neither too dark nor too bright.", "exposure|underexposed"),
    ("Neither too dark nor too bright.", "exposure|overexposed"),
    ("It is not at all blurry.", "focus|soft"),
    ("No noise or blur anywhere.", "focus|soft"),
    ("Free of noise.", "noise|noisy"),
    ("Nothing is blown out.", "exposure|overexposed"),
    ("The colours never look garish.", "color|oversaturated"),
])
def test_negations_give_no_tag(text, tag):
    assert tag not in plain(text)


def test_negation_stops_at_the_clause():
    assert "focus|soft" in plain("There is no noise, but the image is soft.")
    assert "focus|soft" in plain("No noise and a soft image.")
    assert "exposure|underexposed" in plain("The exposure is not bad; the image is underexposed.")
    # A negator far before the phrase (beyond the window) does not reach it.
    assert "exposure|underexposed" in plain("Not what I expected from this lens in such light: underexposed.")


def test_longest_match_wins():
    assert plain("Soft light falls on the face.") == ["lighting|soft light"]
    assert plain("With no visible noise.") == ["noise|clean"]
    assert plain("Motion blur on the wheels.") == ["focus|motion blur"]
    assert plain("Washed-out colours.") == ["color|muted"]
    assert plain("Sharp shadows under the eyes.") == ["lighting|hard light"]
    assert plain("A shallow depth of field.") == ["depth of field|shallow"]


def test_word_boundaries_and_case():
    assert plain("SHARPER than expected, a sharpened file") == []  # 'sharp' only as a whole word
    assert plain("UNDEREXPOSED") == ["exposure|underexposed"]
    assert plain("") == [] and plain("   ") == []


def test_root_handling_and_sorting():
    text = "Underexposed and soft, with a warm cast."
    tags = suggest_tags(text)
    assert tags == ["aesthetics|color|warm cast", "aesthetics|exposure|underexposed", "aesthetics|focus|soft"]
    assert suggest_tags(text, root="") == [t.split("|", 1)[1] for t in tags]
    assert suggest_tags(text, root="photo|critic")[0] == "photo|critic|color|warm cast"
    assert suggest_tags(text, root="aesthetics|") == tags
    assert tags == sorted(set(tags))


def test_max_tags_keeps_the_most_mentioned():
    text = "Soft. Very soft, blurry even. Underexposed. A warm cast."
    assert plain(text) == ["color|warm cast", "exposure|underexposed", "focus|soft"]
    assert suggest_tags(text, root="", max_tags=1) == ["focus|soft"]
    assert suggest_tags(text, root="", max_tags=2) == ["exposure|underexposed", "focus|soft"]  # ties: first mention
    assert suggest_tags(text, root="", max_tags=0) == []


def test_deterministic_whatever_the_vocabulary_order(tmp_path):
    text = ("Well exposed, tack sharp and free of noise, though the colours are muted and it looks flat; "
            "the horizon is tilted and the soft light is lovely. No blown highlights.")
    expected = plain(text)
    assert expected == plain(text)
    raw = json.loads(DEFAULT_VOCABULARY.read_text(encoding="utf-8"))
    items = list(raw.items())
    random.Random(7).shuffle(items)
    shuffled = {k: (list(reversed(v)) if isinstance(v, list) and not k.startswith("_") else v) for k, v in items}
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(shuffled), encoding="utf-8")
    assert suggest_tags(text, root="", path=path) == expected


# Every verdict of the contract (issue 14) and whatever the teacher gives today.
ALL_VERDICTS = sorted({(a, label) for labels in (VERDICT_LABELS, CONTRACT_LABELS) for a, ls in labels.items()
                       for label in ls})


def test_every_verdict_maps_to_a_tag():
    for attribute, label in ALL_VERDICTS:
        tag = tag_for_verdict(attribute, label)
        if label == "n/a" or (attribute, label) == ("highlights", "intact"):
            assert tag is None
        else:
            assert tag and tag.startswith("aesthetics|"), (attribute, label)
            assert tag_for_verdict(attribute, label, root="") == tag.split("|", 1)[1]
    with pytest.raises(KeyError):
        tag_for_verdict("exposure", "perfect")
    assert verdict_tags({"exposure": "underexposed", "tilt": "n/a", "sharpness": "soft", "framing": "n/a",
                         "composition": "n/a"}) == ["aesthetics|exposure|underexposed", "aesthetics|focus|soft"]
    assert tag_for_verdict("framing", "cut off") == "aesthetics|composition|cut off"
    assert tag_for_verdict("tilt", "tilted") == "aesthetics|composition|tilted horizon"


def test_every_template_gives_exactly_its_verdict_tag():
    """What keeps generated critiques and tags consistent: each template sentence for a verdict is found by the
    tagger as that verdict's tag, and as nothing else."""
    for attribute, label in ALL_VERDICTS:
        tag = tag_for_verdict(attribute, label, root="")
        if tag is None:
            assert (attribute, label) not in TEMPLATES  # "n/a" and intact highlights: nothing is said
            continue
        templates = TEMPLATES[(attribute, label)]
        assert len(templates) >= 4, (attribute, label)
        for template in templates:
            assert plain(template) == [tag], (attribute, label, template)


def test_overall_and_suggestions_add_no_contradiction():
    for sentences in OVERALL.values():
        for s in sentences:
            assert plain(s) == [], s
    for s in NO_SUGGESTION:
        assert plain(s) == [], s
    for defect, sentences in SUGGESTIONS.items():  # advice may name its own defect's tag, nothing else
        for s in sentences:
            assert plain(s) in ([], [tag_for_verdict(*defect, root="")]), (defect, s)


def test_conflicts_helper():
    assert conflicts(suggest_tags("Underexposed. Well exposed.")) != []
    assert conflicts(suggest_tags("Underexposed and soft.")) == []
