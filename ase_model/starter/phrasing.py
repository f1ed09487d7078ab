"""Critique text from the analytic critic's verdicts: short PCCD-style attribute sentences in varied wording.

Every template is true of its verdict and contains a vocabulary phrase for the verdict's tag (and no phrase of
another tag), so `ase_model.tags.suggest_tags(critique)` returns exactly the verdicts' tags; the tests check
this template by template. Words like "subject" are avoided for the saliency-based composition verdicts: the
measurement finds where the visual weight is, not what the subject is.

Critiques stay short (about 40-70 words) because a tiny starter model with a tokenizer trained on this corpus
has to learn them.
"""

from __future__ import annotations

import math
import random

from ase_model.attributes import format_critique

from .analytic import Analysis, score_terms

# (verdict name, label) -> sentences. {deg} is the measured tilt in whole degrees.
TEMPLATES: dict[tuple[str, str], list[str]] = {
    ("exposure", "well exposed"): [
        "The exposure is well judged.",
        "It is well exposed across the frame.",
        "Exposure looks right for the scene.",
        "The frame is nicely exposed.",
        "Exposure is spot on.",
    ],
    ("exposure", "underexposed"): [
        "The image is underexposed.",
        "It looks too dark overall.",
        "The frame is underexposed and murky.",
        "It is too dark and needs brightening.",
        "Underexposure leaves the picture dim and muddy.",
    ],
    ("exposure", "overexposed"): [
        "The image is overexposed.",
        "It is too bright overall and looks washed out.",
        "The exposure runs hot, so the frame looks washed out.",
        "The frame is overexposed and needs darkening.",
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
        "Smooth areas stay free of noise.",
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
        "The frame is rendered in shades of grey.",
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
        "An orange cast tints the whole frame.",
        "It runs warm, with a yellowish tint.",
        "A warm colour cast covers the scene.",
    ],
    ("white_balance", "cool cast"): [
        "There is a cool cast.",
        "The white balance is too cool.",
        "A blue cast tints the whole frame.",
        "It runs cold, with a bluish tint.",
        "A cool colour cast covers the scene.",
    ],
    ("white_balance", "green cast"): [
        "There is a green cast.",
        "A green tint covers the frame.",
        "The colour leans green.",
        "A greenish cast tints the whole frame.",
    ],
    ("white_balance", "magenta cast"): [
        "There is a magenta cast.",
        "A magenta tint covers the frame.",
        "The colour leans magenta.",
        "A pink cast tints the whole frame.",
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
        "The main detail is tack sharp.",
        "Edges are crisp and well focused.",
        "Fine detail is rendered clearly.",
    ],
    ("sharpness", "soft"): [
        "The image is soft.",
        "It lacks sharpness.",
        "Edges are soft and detail is mushy.",
        "The picture looks blurry.",
        "Detail is soft throughout.",
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
        "The main interest drifts to the edge, so the balance is off.",
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
        "The frame is tilted by about {deg} degrees.",
        "The lines lean by about {deg} degrees; it needs straightening.",
        "It looks crooked, off level by about {deg} degrees.",
        "A tilt of about {deg} degrees makes the frame look crooked.",
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

# The single most useful suggestion, for the largest score penalty. {stops} is an exposure correction.
SUGGESTIONS: dict[str, list[str]] = {
    "underexposed": ["Lift the exposure by about {stops}.", "Brighten it by about {stops}.", "Give it about {stops} more exposure."],
    "overexposed": ["Pull the exposure down by about {stops}.", "Darken it by about {stops}.", "Give it about {stops} less exposure."],
    "clipped": ["Protect the highlights when shooting.", "Recover the brightest areas in editing.", "Expose a little less to save the highlights."],
    "soft": ["Use a faster shutter speed or focus more carefully.", "Steady the camera and check focus.", "Reshoot with more careful focusing."],
    "noisy": ["Apply noise reduction or use a lower ISO.", "A lower ISO would keep it cleaner.", "Gentle noise reduction would help."],
    "oversaturated": ["Pull the saturation back.", "Ease off the saturation.", "Reduce the saturation a little."],
    "muted": ["Add some saturation to bring the colours to life.", "Raise the saturation a little.", "Give the colours a gentle boost."],
    "cast": ["Correct the white balance.", "Neutralise the white balance.", "Set the white balance on a grey area."],
    "flat": ["Add contrast with a gentle tone curve.", "Raise the contrast a little.", "Stretch the tones to fill the histogram."],
    "harsh": ["Ease the contrast to hold the tones.", "Lower the contrast a little.", "Open up the deepest tones."],
    "tilted": ["Straighten the frame.", "Rotate it to level the lines.", "Straighten the frame before anything else."],
    "off balance": ["Recrop to move the main interest toward a third.", "Recrop so the weight sits closer to the middle.", "Reframe to bring the main interest inward."],
    "none": ["Little needs changing.", "Keep this approach.", "Only small refinements remain."],
}


def band(score: float) -> str:
    return "strong" if score >= 7.0 else "solid" if score >= 5.5 else "flawed" if score >= 4.0 else "weak"


def _stops(mean_luma: float) -> str:
    """Exposure change (stops, to the nearest half) that brings mean luma to about 0.45, in words."""
    def lin(v: float) -> float:
        v = min(max(v, 1e-3), 1.0)
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    stops = abs(math.log2(lin(0.45) / lin(mean_luma)))
    stops = max(0.5, min(3.0, round(stops * 2) / 2))
    if stops == 1.0:
        return "one stop"
    return f"{stops:g} stops" if stops != 0.5 else "half a stop"


def _pick(rng: random.Random, key: tuple[str, str], **fmt) -> str:
    return rng.choice(TEMPLATES[key]).format(**fmt)


def _suggestion(analysis: Analysis, rng: random.Random) -> str:
    v = analysis.verdicts
    notes = analysis.notes or score_terms(analysis.measurements, v)
    penalties = {k: x for k, x in notes.items() if x < 0}
    if not penalties:
        return rng.choice(SUGGESTIONS["none"])
    worst = min(sorted(penalties), key=lambda k: penalties[k])  # sorted first: ties resolve by name
    mean = analysis.measurements.get("mean_luminance", 0.45)
    if worst == "exposure":
        key = v["exposure"] if v["exposure"] != "well exposed" else "clipped"
    elif worst == "sharpness":
        key = "soft"
    elif worst == "noise":
        key = "noisy"
    elif worst == "saturation":
        key = v["saturation"]
    elif worst == "white_balance":
        key = "cast"
    elif worst == "contrast":
        key = v["contrast"]
    elif worst == "tilt":
        key = "tilted"
    else:
        key = "off balance"
    return rng.choice(SUGGESTIONS[key]).format(stops=_stops(mean))


def write_critique(analysis: Analysis, rng: random.Random) -> tuple[str, dict[str, str]]:
    """(text, attributes) for an analysis; text == format_critique(attributes). Deterministic given rng's state."""
    v, m = analysis.verdicts, analysis.measurements
    exposure = [_pick(rng, ("exposure", v["exposure"]))]
    if v.get("highlights") == "clipped":
        exposure.append(_pick(rng, ("highlights", "clipped")))
    exposure.append(_pick(rng, ("noise", v["noise"])))
    colour = [_pick(rng, ("saturation", v["saturation"])), _pick(rng, ("white_balance", v["white_balance"])),
              _pick(rng, ("contrast", v["contrast"]))]
    focus = [_pick(rng, ("sharpness", v["sharpness"]))]
    composition = [_pick(rng, ("composition", v["composition"]))]
    if v.get("tilt") in ("level", "tilted"):
        deg = max(1, round(abs(m.get("tilt_deg", 0.0))))
        composition.append(_pick(rng, ("tilt", v["tilt"]), deg=deg))
    overall = [rng.choice(OVERALL[band(analysis.score)]), _suggestion(analysis, rng)]
    attributes = {
        "composition": " ".join(composition),
        "color_lighting": " ".join(colour),
        "exposure": " ".join(exposure),
        "focus": " ".join(focus),
        "general_impression": " ".join(overall),
    }
    return format_critique(attributes), attributes
