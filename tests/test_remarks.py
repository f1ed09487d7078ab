"""The main remark of a critique: the sentence naming its most serious fault, on critiques of real photos written
by the starter's analytic critic and phrasing (the text the starter model learned to write)."""

from __future__ import annotations

import random

from ase_model.remarks import FAULTS, MAX_CHARS, main_remark
from ase_model.tags import find_mentions, suggest_tags


def critique_of(image) -> dict:
    from ase_model.starter.analytic import analyze
    from ase_model.starter.phrasing import write_critique

    text, attributes = write_critique(analyze(image), random.Random(0))
    return {"text": text, "attributes": attributes, "tags": suggest_tags(text)}


def test_main_remark_names_the_worst_fault(photos):
    from ase_daemon.demo import VARIANTS

    variants = {name: (source, fn) for name, source, _, fn in VARIANTS}
    # darkened / blurred copies of real photos: the remark is the sentence about that fault
    for name, fault in [("coffee-dark.jpg", "exposure|underexposed"), ("astronaut-bright.jpg", "exposure|overexposed"),
                        ("china-blurred.jpg", "focus|soft")]:
        source, fn = variants[name]
        result = critique_of(fn(photos[source]))
        leaves = {t.split("|", 1)[1] for t in result["tags"]}
        assert fault in leaves, (name, result["tags"])
        worst = next(f for f in FAULTS if f in leaves)  # the order decides when a critique names several faults
        remark = main_remark(result)
        assert remark and remark in result["text"], (name, remark)
        assert any(tag == worst and not neg for _, _, tag, _, neg in find_mentions(remark)), (name, remark)


def test_main_remark_without_a_fault():
    text = ("Composition: Lines run straight and level.\nExposure: The image is clean, with no visible noise.\n"
            "Overall: There is little to fault on the technical side. Keep it as it is.")
    result = {"text": text, "tags": suggest_tags(text),
              "attributes": {"general_impression": "There is little to fault on the technical side. Keep it."}}
    assert "aesthetics|noise|noisy" not in result["tags"]  # negated: "no visible noise" is no fault
    assert main_remark(result) == "There is little to fault on the technical side."
    assert main_remark({"text": "Exposure: Exposure is spot on. Focus is crisp."}) == "Exposure is spot on."
    assert main_remark({"text": ""}) == "" and main_remark({}) == ""
    long = main_remark({"text": "word " * 100})
    assert len(long) == MAX_CHARS and long.endswith("…")
