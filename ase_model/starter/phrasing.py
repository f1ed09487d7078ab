"""Critique text from the analytic critic's verdicts: short PCCD-style attribute sentences in varied wording.

The sentences form a closed grammar that `ase_model.starter.checker` reads back, so every template obeys:

- a statement names exactly one verdict (attribute, label), an advice sentence one defect, an overall sentence
  one score band; no sentence appears under two keys and none is a word-prefix of another;
- a statement contains a vocabulary phrase for its verdict's tag and no phrase of another tag, so
  `ase_model.tags.suggest_tags(critique)` returns exactly the verdicts' tags (the tests check every template);
- nothing a student model cannot see in the pixels (no measured degrees or stops), and nothing for a verdict
  of "n/a" (no clear evidence: say nothing) or for intact highlights.

Advice is for the largest score penalty (`analytic.score_terms`) and only for a defect a statement names, so it
never contradicts one ("move toward a third" only for an off-balance frame). Words like "subject" are avoided in
statements: the saliency-based verdicts find where the visual weight is, not what the subject is.

Critiques stay short (about 40-70 words) because a tiny starter model with a tokenizer trained on this corpus
has to learn them.
"""

from __future__ import annotations

import random

from ase_model.attributes import format_critique

from .analytic import VERDICT_LABELS, Analysis, score_terms

__all__ = ["TEMPLATES", "OVERALL", "SUGGESTIONS", "NO_SUGGESTION", "CONTRACT_LABELS", "SECTION", "STATEMENT_ORDER",
           "DEFECT_PENALTY", "advice", "band", "main_defect", "write_critique"]

# The verdicts the phrasing covers: the teacher's (one list for teacher, phrasing, checker and tags).
CONTRACT_LABELS: dict[str, tuple[str, ...]] = VERDICT_LABELS

# (verdict name, label) -> sentences. Verdicts without an entry ("n/a", intact highlights) get no sentence.
TEMPLATES: dict[tuple[str, str], list[str]] = {
    ("exposure", "well exposed"): [
        "The exposure is well judged.",
        "It is well exposed across the frame.",
        "Exposure looks right for the scene.",
        "The picture is nicely exposed.",
        "Exposure is spot on.",
    ],
    ("exposure", "underexposed"): [
        "The image is underexposed.",
        "It looks too dark overall.",
        "The picture is underexposed and murky.",
        "It is too dark and needs brightening.",
        "Underexposure leaves the picture dim and muddy.",
    ],
    ("exposure", "overexposed"): [
        "The image is overexposed.",
        "It is too bright overall and looks washed out.",
        "The exposure runs hot, so the picture looks washed out.",
        "The picture is overexposed and needs darkening.",
        "Overexposure makes the picture look burnt out.",
    ],
    ("highlights", "clipped"): [
        "Some highlights are clipped.",
        "The brightest areas clip to white.",
        "There are blown highlights.",
        "Highlight detail is lost in places.",
    ],
    ("noise", "clean"): [
        "The image is clean, with no visible noise.",
        "Noise is well controlled.",
        "Smooth tones stay free of noise.",
        "There is little noise.",
        "Surfaces stay clean and free of grain.",
    ],
    ("noise", "noisy"): [
        "Visible noise spoils the smooth areas.",
        "The image is noisy, especially in smooth areas.",
        "There is obvious grain throughout.",
        "Digital noise gives the surfaces a gritty texture.",
        "Noise is clearly visible.",
    ],
    ("saturation", "natural"): [
        "Colours look natural.",
        "Saturation is natural.",
        "Colours are natural and believable.",
        "The palette has natural colour.",
        "Saturation is restrained and realistic.",
    ],
    ("saturation", "vivid"): [
        "Colours are vivid.",
        "The colours are rich and vibrant.",
        "Colours pop.",
        "Bold colours give it energy.",
        "The palette is vivid and lively.",
    ],
    ("saturation", "oversaturated"): [
        "The colours are oversaturated.",
        "Saturation is pushed too far, and colours look artificial.",
        "Colours look garish.",
        "The image is too saturated.",
        "Oversaturation makes the colours bleed.",
    ],
    ("saturation", "muted"): [
        "Colours are muted.",
        "The colour is desaturated and dull.",
        "It looks drained of colour.",
        "The palette is muted and subdued.",
        "Colours are dull and faded.",
    ],
    ("saturation", "monochrome"): [
        "It is a black and white image.",
        "The monochrome rendering relies on tone alone.",
        "As a black and white picture, it relies on tone.",
        "The picture is rendered in shades of grey.",
    ],
    ("white_balance", "neutral"): [
        "White balance is neutral.",
        "Whites look clean, with no colour cast.",
        "The colour balance is neutral.",
        "Tones stay neutral, free of any colour cast.",
        "The white balance looks right.",
    ],
    ("white_balance", "warm cast"): [
        "There is a warm cast.",
        "The white balance is too warm.",
        "An orange cast tints the whole scene.",
        "It runs warm, with a yellowish tint.",
        "A warm colour cast covers the scene.",
    ],
    ("white_balance", "cool cast"): [
        "There is a cool cast.",
        "The white balance is too cool.",
        "A blue cast tints the whole scene.",
        "It runs cold, with a bluish tint.",
        "A cool colour cast covers the scene.",
    ],
    ("white_balance", "green cast"): [
        "There is a green cast.",
        "A green tint covers the scene.",
        "The colour leans green.",
        "A greenish cast sits over everything.",
    ],
    ("white_balance", "magenta cast"): [
        "There is a magenta cast.",
        "A magenta tint covers the scene.",
        "The colour leans magenta.",
        "A purple cast sits over everything.",
    ],
    ("contrast", "balanced"): [
        "Contrast is well judged.",
        "Contrast is balanced.",
        "It has pleasing contrast.",
        "The tonal range is good.",
        "Contrast is moderate and healthy.",
    ],
    ("contrast", "flat"): [
        "It looks flat.",
        "The tones look flat.",
        "It lacks contrast.",
        "The image needs more contrast.",
        "Low contrast leaves it lifeless.",
    ],
    ("contrast", "harsh"): [
        "Contrast is harsh.",
        "There is too much contrast.",
        "Heavy contrast crushes the midtones.",
        "The contrast is pushed, and tones jump.",
        "Excessive contrast makes it hard on the eye.",
    ],
    ("sharpness", "sharp"): [
        "It is sharp, with crisp detail.",
        "Focus is accurate and details are crisp.",
        "Edges are crisp and well focused.",
        "Fine detail is rendered clearly.",
        "Focus is crisp where it matters.",
    ],
    ("sharpness", "soft"): [
        "The image is soft.",
        "It lacks sharpness.",
        "Edges are soft and detail is mushy.",
        "The picture looks blurry.",
        "The main detail is soft.",
    ],
    ("composition", "rule of thirds"): [
        "The main weight sits near a third.",
        "Placement follows the rule of thirds.",
        "The focal area falls near a thirds line.",
        "The visual weight rests on a third, which adds tension.",
        "The main interest sits on one of the thirds.",
    ],
    ("composition", "centered"): [
        "The main interest is centred.",
        "The visual weight sits in the centre of the frame.",
        "A central composition holds the eye.",
        "The focal area is placed dead centre.",
        "The main weight sits in the middle of the frame.",
    ],
    ("composition", "off balance"): [
        "The visual weight sits at the edge, leaving the frame unbalanced.",
        "The composition feels lopsided.",
        "The main interest drifts to the edge.",
        "The weight is lopsided, pulled to the edge of the frame.",
        "The frame feels unbalanced, with its weight near the edge.",
    ],
    ("tilt", "level"): [
        "The frame is level.",
        "Lines run straight and level.",
        "The frame is held level.",
        "The main lines are straight.",
    ],
    ("tilt", "tilted"): [
        "The frame is tilted.",
        "The lines lean, so it needs straightening.",
        "It looks crooked, off level.",
        "A visible tilt makes the frame look crooked.",
    ],
    ("framing", "cut off"): [
        "The crop cuts off part of the main interest.",
        "The edge of the frame slices through the main interest.",
        "Something important is cut off at the edge.",
        "The frame cuts through the main interest.",
    ],
}

# Overall impression by score band (no vocabulary phrases: the tags come from the attribute sentences).
OVERALL: dict[str, list[str]] = {
    "strong": [
        "Technically this is a confident, well-made photograph.",
        "There is little to fault on the technical side.",
        "A well-crafted frame overall.",
        "Overall, a polished and assured picture.",
    ],
    "solid": [
        "A sound picture with room to improve.",
        "Overall a fair result with a few weaknesses.",
        "It is a reasonable frame with some flaws.",
        "A decent effort that a few fixes would lift.",
    ],
    "flawed": [
        "Several faults hold this picture back.",
        "The technical faults outweigh its strengths.",
        "It needs correction before it comes together.",
        "Overall the frame falls below its potential.",
    ],
    "weak": [
        "Overall it is a poor frame with serious faults.",
        "Serious technical faults undermine the picture.",
        "As it stands the picture does not succeed.",
        "The faults dominate the image.",
    ],
}

# The single most useful suggestion, keyed by the defect (verdict) it fixes.
SUGGESTIONS: dict[tuple[str, str], list[str]] = {
    ("exposure", "underexposed"): ["Lift the exposure.", "Brighten it in editing.", "Give it more exposure."],
    ("exposure", "overexposed"): ["Pull the exposure down.", "Darken it in editing.", "Give it less exposure."],
    ("highlights", "clipped"): ["Protect the highlights when shooting.", "Recover the brightest areas in editing.",
                                "Expose a little less to save the highlights."],
    ("sharpness", "soft"): ["Use a faster shutter speed or focus more carefully.", "Steady the camera and check focus.",
                            "Reshoot with more careful focusing."],
    ("noise", "noisy"): ["Apply noise reduction or use a lower ISO.", "A lower ISO would keep it cleaner.",
                         "Gentle noise reduction would help."],
    ("saturation", "oversaturated"): ["Pull the saturation back.", "Ease off the saturation.",
                                      "Reduce the saturation a little."],
    ("saturation", "muted"): ["Add some saturation to bring the colours to life.", "Raise the saturation a little.",
                              "Give the colours a gentle boost."],
    ("white_balance", "warm cast"): ["Cool the white balance down.", "Shift the white balance away from orange.",
                                     "Take out the warmth with a grey point."],
    ("white_balance", "cool cast"): ["Warm the white balance up.", "Shift the white balance away from blue.",
                                     "Take out the chill with a grey point."],
    ("white_balance", "green cast"): ["Shift the tint toward magenta.", "Correct the tint to take out the green."],
    ("white_balance", "magenta cast"): ["Shift the tint toward green.", "Correct the tint to take out the magenta."],
    ("contrast", "flat"): ["Add contrast with a gentle tone curve.", "Raise the contrast a little.",
                           "Stretch the tones to fill the histogram."],
    ("contrast", "harsh"): ["Ease the contrast to hold the tones.", "Lower the contrast a little.",
                            "Open up the deepest tones."],
    ("tilt", "tilted"): ["Straighten the frame.", "Rotate it to level the lines.",
                         "Level the frame before anything else."],
    ("framing", "cut off"): ["Reframe to include the whole subject.", "Step back to keep everything in the frame.",
                             "Leave more room around the main interest."],
    ("composition", "off balance"): ["Recrop to move the main interest toward a third.",
                                     "Recrop so the weight sits closer to the middle.",
                                     "Reframe to bring the main interest inward."],
}
NO_SUGGESTION = ["Little needs changing.", "Keep this approach.", "Only small refinements remain."]

# The defects advice can be for, with the analytic critic's base penalty: the order advice follows when only
# verdicts are known (at run time); with measurements, the largest `score_terms` penalty decides.
DEFECT_PENALTY: dict[tuple[str, str], float] = {
    ("exposure", "underexposed"): 1.8, ("exposure", "overexposed"): 1.8, ("sharpness", "soft"): 1.5,
    ("noise", "noisy"): 1.0, ("tilt", "tilted"): 0.8, ("framing", "cut off"): 0.8,
    ("saturation", "oversaturated"): 0.8, ("white_balance", "warm cast"): 0.7, ("white_balance", "cool cast"): 0.7,
    ("white_balance", "green cast"): 0.7, ("white_balance", "magenta cast"): 0.7, ("contrast", "flat"): 0.6,
    ("saturation", "muted"): 0.5, ("composition", "off balance"): 0.5, ("contrast", "harsh"): 0.4,
    ("highlights", "clipped"): 0.4,
}

# Which critique section states each verdict, and the order statements come in (write_critique and the checker's
# repair both follow it).
SECTION: dict[str, str] = {
    "exposure": "exposure", "highlights": "exposure", "noise": "exposure",
    "saturation": "color_lighting", "white_balance": "color_lighting", "contrast": "color_lighting",
    "sharpness": "focus", "composition": "composition", "tilt": "composition", "framing": "composition",
}
STATEMENT_ORDER = ("composition", "tilt", "framing", "saturation", "white_balance", "contrast", "exposure",
                   "highlights", "noise", "sharpness")


def band(score: float) -> str:
    """The overall-impression band of a 0-10 score, on the star boundaries (rating_from_score: 8 and up is five
    stars, 6 four, 4 three), so the words and the stars say the same."""
    return "strong" if score >= 8.0 else "solid" if score >= 6.0 else "flawed" if score >= 4.0 else "weak"


def main_defect(verdicts: dict[str, str], terms: dict[str, float] | None = None) -> tuple[str, str] | None:
    """The defect advice should be about: the largest penalty in `terms` (analytic.score_terms, keyed by
    verdict name) that a verdict names as a defect; without terms, the largest base penalty in DEFECT_PENALTY.

    Args:
        verdicts: verdict name -> label.
        terms: score terms (negative = penalty); None when only verdicts are known.

    Returns (attribute, label), or None when nothing needs fixing.
    """
    def defect_of(key: str) -> tuple[str, str] | None:
        if key == "exposure" and verdicts.get("exposure") == "well exposed":
            key = "highlights"  # the exposure term of a well exposed photo is its clipped highlights
        pair = (key, verdicts.get(key, ""))
        return pair if pair in DEFECT_PENALTY else None

    if terms is not None:
        for key in sorted(terms, key=lambda k: (terms[k], k)):  # most negative first; ties by name
            if terms[key] < 0 and (pair := defect_of(key)):
                return pair
    # No penalty names a stated defect (a score term can be a net credit, e.g. colour): a stated defect still
    # gets its advice, never "little needs changing".
    present = [(a, label) for a, label in verdicts.items() if (a, label) in DEFECT_PENALTY]
    return min(present, key=lambda p: (-DEFECT_PENALTY[p], p), default=None)


def advice(defect: tuple[str, str] | None, rng: random.Random) -> str:
    """A suggestion for `defect` (NO_SUGGESTION for None)."""
    return rng.choice(SUGGESTIONS[defect] if defect is not None else NO_SUGGESTION)


def write_critique(analysis: Analysis, rng: random.Random) -> tuple[str, dict[str, str]]:
    """(text, attributes) for an analysis; text == format_critique(attributes). Deterministic given rng's state.

    Args:
        analysis: the analytic critic's measurements, verdicts, score and score terms.
        rng: the source of the wording choices.
    """
    v = analysis.verdicts
    sections: dict[str, list[str]] = {}
    for name in STATEMENT_ORDER:
        key = (name, v.get(name, "n/a"))
        if key in TEMPLATES:
            sections.setdefault(SECTION[name], []).append(rng.choice(TEMPLATES[key]))
    terms = analysis.notes or (score_terms(analysis.measurements, v) if analysis.measurements else {})
    overall = [rng.choice(OVERALL[band(analysis.score)]), advice(main_defect(v, terms), rng)]
    attributes = {key: " ".join(sections[key]) for key in ("composition", "color_lighting", "exposure", "focus")
                  if key in sections}
    attributes["general_impression"] = " ".join(overall)
    return format_critique(attributes), attributes
