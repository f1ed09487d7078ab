"""The read-back checker: every sentence of a critique back into verdicts, what contradicts them, and the repair
that makes the words agree with the verdicts (at run time: the attribute head's)."""

from __future__ import annotations

import random

import pytest
import torch

from ase_model.starter.analytic import Analysis
from ase_model.starter.checker import LEGACY, check, read_back, repair
from ase_model.starter.phrasing import (
    CONTRACT_LABELS,
    DEFECT_PENALTY,
    NO_SUGGESTION,
    OVERALL,
    SUGGESTIONS,
    TEMPLATES,
    band,
    write_critique,
)
from ase_model.tags import suggest_tags, verdict_tags

# The attribute head's labels of the starter model shipped before issue 14: no framing, no "n/a" composition.
OLD_LABELS = {"composition": ["rule of thirds", "centered", "off balance"], "contrast": ["flat", "balanced", "harsh"],
              "exposure": ["underexposed", "well exposed", "overexposed"], "highlights": ["clipped", "intact"],
              "noise": ["clean", "noisy"], "saturation": ["monochrome", "muted", "natural", "vivid", "oversaturated"],
              "sharpness": ["sharp", "soft"], "tilt": ["level", "tilted", "n/a"],
              "white_balance": ["neutral", "warm cast", "cool cast", "green cast", "magenta cast"]}


def one(text: str):
    [s] = read_back(text).sentences
    return s.kind, s.attribute, s.label


def random_verdicts(rng: random.Random) -> dict[str, str]:
    return {a: rng.choice(labels) for a, labels in CONTRACT_LABELS.items()}


def assert_clean(text: str, verdicts: dict[str, str], score: float) -> None:
    report = check(text, verdicts, score)
    assert report.ok, (text, [p.message for p in report.problems])
    said = read_back(text).verdicts()
    assert said == {a: v for a, v in verdicts.items() if (a, v) in TEMPLATES}, text
    assert suggest_tags(text) == verdict_tags(verdicts), text


def test_every_template_reads_back_to_its_own_verdict():
    for (attribute, label), sentences in TEMPLATES.items():
        for s in sentences:
            assert one(s) == ("statement", attribute, label), s
            assert one(s.upper().replace(".", " !")) == ("statement", attribute, label)  # case, punctuation
    for (attribute, label), sentences in SUGGESTIONS.items():
        for s in sentences:
            assert one(s) == ("advice", attribute, label), s
    for s in NO_SUGGESTION:
        assert one(s) == ("advice", None, None)
    for b, sentences in OVERALL.items():
        for s in sentences:
            assert one(s) == ("overall", None, b)


def test_the_earlier_phrasing_still_reads_back():
    """The previous starter model's sentences (tilt in degrees, exposure advice in stops) are measured fairly."""
    for key, sentences in LEGACY.items():
        for s in sentences:
            text = s.format(deg=7, stops="1.5 stops")
            [r] = read_back(text).sentences
            assert (r.kind, r.attribute, r.label, r.legacy) == key + (True,), text
    assert one("Lift the exposure by about half a stop.") == ("advice", "exposure", "underexposed")
    assert one("The frame is tilted by about many degrees.")[0] == "unknown"


@pytest.mark.parametrize("seed", range(3))
def test_the_teachers_own_critiques_read_back_clean(seed):
    rng = random.Random(seed)
    for _ in range(300):
        v = random_verdicts(rng)
        terms = {a: -p for (a, label), p in DEFECT_PENALTY.items() if v.get(a) == label}
        a = Analysis({}, v, round(rng.uniform(1.0, 9.5), 1), terms)
        text, _ = write_critique(a, rng)
        assert_clean(text, v, a.score)
        assert read_back(text).unknown == 0


# ---- the bad examples of issue 14 --------------------------------------------------------------------------------
def test_a_pink_cast_on_a_blue_photo_is_a_contradiction():
    report = check("Colour and lighting: A pink cast tints the whole frame.", {"white_balance": "cool cast"})
    [p] = report.problems
    assert p.kind == "contradiction" and "magenta cast" in p.message and "cool cast" in p.message


def test_tack_sharp_on_a_blurred_photo_is_a_contradiction():
    report = check("Focus: The main detail is tack sharp.", {"sharpness": "soft"})
    assert [p.kind for p in report.problems] == ["contradiction"]
    assert check("Focus: The picture looks blurry.", {"sharpness": "soft"}).ok


def test_a_garbled_splice_is_unknown():
    text = "Exposure: Smooth areas stay free of noise gives the surfaces a gritty test areas clip to white."
    report = check(text)
    assert [p.kind for p in report.problems] == ["unknown"] and report.reading.unknown == 1
    assert check("Exposure: The image is clean, with no visible noise. Noise is clearly visible.").problems[0].kind \
        == "conflict"


def test_thirds_then_move_toward_a_third_is_a_contradiction():
    text = ("Composition: The main interest sits on one of the thirds.\n"
            "Overall: A sound picture with room to improve. Recrop to move the main interest toward a third.")
    report = check(text)
    assert [(p.index, p.kind) for p in report.problems] == [(2, "advice")] and report.contradictions == 1
    off = text.replace("The main interest sits on one of the thirds.", "The composition feels lopsided.")
    assert check(off).ok


def test_rule_of_thirds_for_a_centred_portrait_is_a_contradiction():
    report = check("Composition: Placement follows the rule of thirds.", {"composition": "centered"})
    assert [p.kind for p in report.problems] == ["contradiction"]
    report = check("Composition: Placement follows the rule of thirds. The frame is level.",
                   {"composition": "n/a", "tilt": "n/a"})
    assert [p.kind for p in report.problems] == ["contradiction", "contradiction"]  # n/a: say nothing
    assert "nothing should be said" in report.problems[0].message


def test_advice_and_overall_checks():
    assert check("Overall: Little needs changing.", {"sharpness": "soft"}).problems[0].kind == "advice"
    assert check("Focus: The image is soft.\nOverall: Keep this approach.").problems[0].kind == "advice"
    report = check("Overall: A sound picture with room to improve.", score=3.0)
    assert [p.kind for p in report.problems] == ["overall"] and "weak" in report.problems[0].message
    assert check("Overall: A sound picture with room to improve.", score=6.0).ok
    report = check("Focus: The image is soft.\nOverall: Raise the contrast a little.")
    assert "no statement names" in report.problems[0].message
    report = check("Colour and lighting: There is a warm cast.\nOverall: Warm the white balance up.")
    assert [p.kind for p in report.problems] == ["advice"]  # advice for a cool cast on a warm one
    legacy = "Colour and lighting: There is a warm cast.\nOverall: Correct the white balance."
    assert check(legacy).ok and not check(legacy, {"white_balance": "neutral"}).ok


def test_missing_verdicts_and_free_text():
    report = check("Focus: The image is soft.", {"sharpness": "soft", "noise": "noisy", "tilt": "n/a"})
    assert report.ok and report.missing == [("noise", "noisy")]
    free = "What a lovely moment! The light on her face is gorgeous, though I'd crop tighter."
    report = check(free)
    assert report.reading.unknown == len(report.reading.sentences) == 2 and not report.ok
    assert check("").ok and read_back("").sentences == []


# ---- repair --------------------------------------------------------------------------------------------------------
ISSUE_TEXT = "\n".join([
    "Composition: The main interest sits on one of the thirds. The frame is tilted by about 3 degrees.",
    "Colour and lighting: Colours pop. A pink cast tints the whole frame. Contrast is balanced.",
    "Exposure: Smooth areas stay free of noise gives the surfaces a gritty test areas clip to white. "
    "The image is underexposed.",
    "Focus: The main detail is tack sharp.",
    "Overall: A sound picture with room to improve. Recrop to move the main interest toward a third. Little needs",
])


def test_repair_makes_the_issue_text_agree():
    v = {"composition": "centered", "tilt": "n/a", "framing": "cut off", "saturation": "vivid",
         "white_balance": "cool cast", "contrast": "balanced", "exposure": "underexposed", "highlights": "intact",
         "noise": "noisy", "sharpness": "soft"}
    text, report = repair(ISSUE_TEXT, v, 3.2)
    assert_clean(text, v, 3.2)
    # replaced: thirds, pink, tack sharp, the overall band, the advice; dropped: the tilt (n/a), the splice, the
    # half sentence; added: the framing and noise statements
    assert report.changes() == {"replaced": 5, "dropped": 3, "added": 2}
    assert "Colours pop." in text and "The image is underexposed." in text  # what was right stays as it was
    assert repair(ISSUE_TEXT, v, 3.2)[0] == text  # deterministic
    advice = read_back(text).sentences[-1]
    assert (advice.kind, advice.attribute, advice.label) == ("advice", "exposure", "underexposed")


def test_repair_keeps_a_clean_critique_as_it_is():
    rng = random.Random(5)
    for _ in range(50):
        v = random_verdicts(rng)
        terms = {a: -p for (a, label), p in DEFECT_PENALTY.items() if v.get(a) == label}
        a = Analysis({}, v, round(rng.uniform(1.0, 9.5), 1), terms)
        text, _ = write_critique(a, rng)
        fixed, report = repair(text, v, a.score, seed=rng.randrange(100))
        assert fixed == text and report.changes() == {"replaced": 0, "dropped": 0, "added": 0}


@pytest.mark.parametrize("seed", range(3))
def test_repair_of_any_mix_reads_back_clean(seed):
    """Texts made of random template sentences (right, wrong, repeated, advice for anything), garbage and
    truncation, in random sections: repaired, they agree with the verdicts, the score and the tags."""
    rng = random.Random(seed)
    pool = [s for ss in [*TEMPLATES.values(), *SUGGESTIONS.values(), *OVERALL.values(), NO_SUGGESTION] for s in ss]
    pool += ["Nice shot!", "The frame is tilted by about 4 degrees.", "Smooth areas stay free of noise gives the"]
    labels = ["Composition", "Colour and lighting", "Exposure", "Focus", "Overall"]
    for _ in range(300):
        v = random_verdicts(rng)
        for name in rng.sample(sorted(v), rng.randrange(3)):  # heads that lack some verdicts
            del v[name]
        score = round(rng.uniform(1.0, 9.5), 1)
        lines = [f"{rng.choice(labels)}: " + " ".join(rng.choices(pool, k=rng.randrange(1, 5)))
                 for _ in range(rng.randrange(0, 6))]
        text, _ = repair("\n".join(lines), v, score, seed=rng.randrange(1000))
        report = check(text, v, score)
        assert report.ok, (text, [p.message for p in report.problems])
        said = read_back(text).verdicts()
        assert all(said[a] == label for a, label in v.items() if (a, label) in TEMPLATES), text
        assert all(a not in said for a, label in v.items() if (a, label) not in TEMPLATES), text
        assert set(verdict_tags(v)) <= set(suggest_tags(text)), text
        again, _ = repair(text, v, score, seed=123)
        assert again == text  # a repaired text needs no more repair


def test_repair_without_a_verdict_keeps_the_text_unless_it_disagrees_with_itself():
    text = "Focus: The image is soft.\nComposition: The frame is tilted."
    fixed, _ = repair(text, {"sharpness": "soft"}, None)
    assert "The frame is tilted." in fixed
    fixed, report = repair("Composition: The frame is tilted. The frame is level.", {"sharpness": "soft"})
    assert read_back(fixed).verdicts() == {"sharpness": "soft"} and report.dropped == 2


def test_repair_rewords_the_earlier_phrasing():
    text = "Composition: The frame is tilted by about 6 degrees.\nOverall: Lift the exposure by about one stop."
    fixed, report = repair(text, {"tilt": "tilted", "exposure": "underexposed"}, None)
    assert "degrees" not in fixed and "stop" not in fixed
    assert report.changes() == {"replaced": 0, "dropped": 0, "added": 1}  # reworded, plus the exposure statement
    assert check(fixed, {"tilt": "tilted", "exposure": "underexposed"}).ok


# ---- at run time: the Critic with an attribute head ---------------------------------------------------------------
def test_critic_repairs_the_text_with_its_heads_verdicts(photos):
    """A tiny model with the shipped model's (old) head labels, its head forced to given verdicts: the random
    decoder's gibberish becomes a critique of exactly those verdicts, in the usual form."""
    from ase_model import ASEForConditionalGeneration
    from ase_model.critic import Critic
    from ase_model.testing import build_processor, tiny_config

    config = tiny_config(attribute_labels=OLD_LABELS)
    torch.manual_seed(0)
    model = ASEForConditionalGeneration(config).eval()
    processor = build_processor(config)
    head = model.model.attribute_head
    want = {"composition": "off balance", "contrast": "flat", "exposure": "overexposed", "highlights": "clipped",
            "noise": "clean", "saturation": "muted", "sharpness": "soft", "tilt": "tilted",
            "white_balance": "cool cast"}
    bias = torch.zeros(sum(head.sizes))
    for name, offset in zip(head.labels, head.offsets):
        bias[offset + head.labels[name].index(want[name])] = 50.0
    with torch.no_grad():
        head.mlp[-1].bias.copy_(bias)
    critic = Critic(model, processor, "tiny-with-head")
    [c] = critic.critique([photos["coffee"]], max_new_tokens=12)
    assert c.verdicts == want
    assert_clean(c.text, want, c.score)
    assert c.raw_text != c.text and c.repairs["added"] >= len(want) - 1
    assert set(c.attributes) == {"composition", "color_lighting", "exposure", "focus", "general_impression"}
    assert c.tags == verdict_tags(want) and "aesthetics|composition|tilted horizon" in c.tags
    assert set(c.to_dict()) == {"image", "text", "attributes", "score", "tags", "model", "timings"}  # wire unchanged
    raw = Critic(model, processor, "tiny-with-head", repair=False)
    [r] = raw.critique([photos["coffee"]], max_new_tokens=12)
    assert r.text == c.raw_text and r.repairs is None
    assert band(c.score) in {s.label for s in read_back(c.text).sentences if s.kind == "overall"}
