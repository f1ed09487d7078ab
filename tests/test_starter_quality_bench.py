"""bench/starter_quality.py's counting, on hand-made records (no model): what counts as naming a defect, as a lower
score, as a star value, as an unreadable or contradicting critique."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from ase_model import tags as tag_module
from ase_model.tags import tag_for_verdict

_BENCH = Path(__file__).resolve().parents[1] / "bench" / "starter_quality.py"


def _bench():
    spec = importlib.util.spec_from_file_location("_ase_bench_starter_quality", _BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sq = _bench()


def rec(kind, tags=(), system="new", photo="p", score=5.0, verdicts=None, params=None, text=None):
    return {"system": system, "photo": photo, "kind": kind, "params": params or {}, "tags": list(tags),
            "score": score, "verdicts": verdicts or {}, "text": text}


def t(attribute, label):
    return tag_for_verdict(attribute, label)


def test_cool_cast_named_warm_is_wrong_direction_and_cool_is_named():
    assert sq.defect_named(rec("cool_cast", [t("white_balance", "cool cast")])) == "named"
    assert sq.defect_named(rec("cool_cast", [t("white_balance", "warm cast")])) == "wrong direction"
    assert sq.defect_named(rec("cool_cast", [t("white_balance", "neutral")])) == "missed"
    assert sq.defect_named(rec("cool_cast", [])) == "missed"
    # Both directions at once is a contradiction, not a naming.
    both = [t("white_balance", "cool cast"), t("white_balance", "warm cast")]
    assert sq.defect_named(rec("cool_cast", both)) != "named"


def test_naming_needs_the_defect_and_no_other_label_of_its_attribute():
    assert sq.defect_named(rec("underexpose", [t("exposure", "underexposed"), t("sharpness", "sharp")])) \
        == "named"
    assert sq.defect_named(rec("underexpose", [t("exposure", "overexposed")])) == "missed"
    assert sq.defect_named(rec("underexpose", [t("exposure", "underexposed"), t("exposure", "well exposed")])) \
        == "missed"
    assert sq.defect_named(rec("desaturate", [t("saturation", "monochrome")])) == "named"
    assert sq.defect_named(rec("desaturate", [t("saturation", "muted")])) == "named"
    assert sq.defect_named(rec("blur", [t("sharpness", "sharp")])) == "missed"
    assert sq.defect_named(rec("original", [t("exposure", "underexposed")])) is None


def test_teacher_is_judged_by_its_verdicts_not_tags():
    teacher = dict(system="teacher", tags=[t("white_balance", "cool cast")])
    assert sq.defect_named(rec("cool_cast", verdicts={"white_balance": "cool cast"}, **teacher)) == "named"
    assert sq.defect_named(rec("cool_cast", verdicts={"white_balance": "magenta cast"}, **teacher)) \
        == "wrong direction"
    assert sq.defect_named(rec("tilt", verdicts={"tilt": "n/a"}, **teacher)) == "missed"
    assert sq.defect_named(rec("cut_crop", verdicts={}, **teacher)) == "n/a"  # a teacher without framing


def test_tilts_under_five_degrees_do_not_count():
    tilted = [t("tilt", "tilted")]
    assert sq.defect_named(rec("tilt", tilted, params={"degrees": -4.9})) is None
    assert sq.defect_named(rec("tilt", tilted, params={"degrees": -5.0})) == "named"


def test_a_defect_the_tag_map_cannot_say_is_na_not_a_crash(monkeypatch):
    monkeypatch.delitem(tag_module.VERDICT_TAGS, ("framing", "cut off"), raising=False)
    assert sq.defect_named(rec("cut_crop", ["aesthetics|composition|cut off"])) == "n/a"
    monkeypatch.setitem(tag_module.VERDICT_TAGS, ("framing", "cut off"), "composition|cut off")
    assert sq.defect_named(rec("cut_crop", ["aesthetics|composition|cut off"])) == "named"
    assert sq.defect_named(rec("cut_crop", [])) == "missed"


def test_named_table_counts_per_system_and_kind():
    table = sq.named_table([rec("noise", [t("noise", "noisy")]), rec("noise", [t("noise", "clean")]),
                            rec("noise", [t("noise", "noisy")], system="previous"), rec("original")])
    assert table["new"]["noise"] == Counter(named=1, missed=1)
    assert table["previous"]["noise"] == Counter(named=1)
    assert "original" not in table["new"]


def test_misses_say_what_was_said_instead():
    records = [rec("cool_cast", [t("white_balance", "warm cast")]), rec("cool_cast", []),
               rec("cool_cast", [t("white_balance", "cool cast")]), rec("blur", [t("sharpness", "sharp")]),
               rec("blur", verdicts={"sharpness": "sharp"}, system="teacher")]
    missed = sq.misses(records)
    assert missed["new"]["cool_cast"] == Counter({"warm cast": 1, "nothing": 1})
    assert missed["new"]["blur"] == Counter({"sharp": 1})
    assert missed["teacher"]["blur"] == Counter({"sharp": 1})


def test_a_score_equal_to_the_original_is_not_lower():
    records = [rec("original", score=6.0), rec("blur", score=5.9), rec("noise", score=6.0), rec("tilt", score=6.5),
               rec("original", photo="q", score=3.0), rec("blur", photo="q", score=2.0),
               rec("original", system="teacher", score=6.0), rec("blur", system="teacher", score=6.0)]
    lower = sq.score_lower(records)
    assert lower["new"]["blur"] == (2, 2)
    assert lower["new"]["noise"] == (0, 1)
    assert lower["new"]["tilt"] == (0, 1)
    assert lower["new"]["all"] == (2, 4)
    assert lower["teacher"]["all"] == (0, 1)  # each system against its own original


def test_stars_count_originals_only():
    records = [rec("original", photo=str(i), score=s) for i, s in enumerate((1.0, 3.0, 5.0, 7.0, 7.9, 9.5))]
    records.append(rec("blur", photo="0", score=0.0))
    stars = sq.star_histogram(records)["new"]
    assert stars == Counter({1: 1, 2: 1, 3: 1, 4: 2, 5: 1})


def test_distinct_sentences_per_100_critiques_drop_section_labels():
    a = "Exposure: The frame is nicely exposed. Focus: Fine detail is rendered clearly."
    b = "Exposure: The frame is nicely exposed. Focus: The picture looks soft."
    assert sq.distinct_per_100([rec("original", text=a), rec("blur", text=b)])["new"] == pytest.approx(150.0)


def test_checker_figures_from_a_fake_checker():
    def check(text, verdicts=None, score=None):  # the shape of ase_model.starter.checker.check's Report
        said = [SimpleNamespace(attribute="exposure" if "exposed" in x else None) for x in sq.sentences(text)]
        problems = [SimpleNamespace(index=i, kind="unknown") for i, x in enumerate(said) if x.attribute is None]
        if (verdicts or {}).get("exposure") == "overexposed":
            problems.append(SimpleNamespace(index=0, kind="contradiction"))
        if score is not None and score < 1:
            problems.append(SimpleNamespace(index=0, kind="overall"))
        return SimpleNamespace(reading=SimpleNamespace(sentences=said, unknown=sum(x.attribute is None for x in said)),
                               problems=problems, contradictions=sum(p.kind != "unknown" for p in problems))

    checker = SimpleNamespace(check=check)
    text = "Exposure: The frame is nicely exposed. Garbled words here."
    c = sq.run_checker(checker, text, {"exposure": "well exposed"}, 6.0, {"exposure": "overexposed"})
    assert c == {"sentences": 2, "unknown": 1, "self": 0, "own": 0, "teacher": 1, "teacher_attributes": ["exposure"]}
    assert sq.run_checker(checker, text, {"exposure": "well exposed"}, 0.5, {})["own"] == 1  # the score counts
    assert sq.run_checker(checker, text, None, 6.0, {"exposure": "well exposed"})["own"] is None
    other = {"sentences": 8, "unknown": 0, "self": 1, "own": 2, "teacher": 0, "teacher_attributes": []}
    table = sq.checker_table([{**rec("original"), "check": c}, {**rec("blur"), "check": other}])
    assert table["new"]["unreadable"] == pytest.approx(1 / 10)
    assert table["new"]["self"] == pytest.approx(1 / 2)
    assert table["new"]["own"] == pytest.approx(1 / 2)
    assert table["new"]["teacher"] == pytest.approx(1 / 2)
    assert table["new"]["teacher:exposure"] == pytest.approx(1 / 2)
    assert sq._top(table["new"]) == "exposure 50%"
    assert sq.checker_table([rec("original")]) is None
    assert sq.checker_table([{**rec("original"), "check": c}], "check_raw") is None


def test_heldout_photos_come_from_the_holdout_source_with_file_safe_names(monkeypatch):
    import sys

    from PIL import Image

    given = {"opencv-doc:one": Image.new("L", (4, 4)), "opencv-doc:two/x y": Image.new("RGB", (5, 5))}
    fake = SimpleNamespace(holdout_photos=lambda max_side: given, HOLDOUT_SOURCE="opencv-doc", SKIPPED=["opencv-doc:z"])
    monkeypatch.setitem(sys.modules, "ase_model.starter.sources", fake)
    monkeypatch.setattr("ase_model.starter.sources", fake, raising=False)
    photos, origin = sq.heldout_photos(None)
    assert "'opencv-doc'" in origin and "opencv-doc:z" in origin
    assert [n for n, _ in photos] == ["opencv-doc_one", "opencv-doc_two_x_y"]
    assert all(im.mode == "RGB" for _, im in photos)
    assert len(sq.heldout_photos(1)[0]) == 1


def test_the_report_marks_targets_and_says_what_it_cannot_measure(capsys):
    cool, warm = t("white_balance", "cool cast"), t("white_balance", "warm cast")
    records = [rec("original", score=6.0), rec("cool_cast", [cool], score=5.0), rec("blur", score=6.0),
               rec("original", photo="q", score=2.0), rec("cool_cast", [warm], photo="q", score=1.0)]
    systems = ["new"]
    sq.print_named(records, systems)
    sq.print_misses(records, systems)
    sq.print_lower(records, systems)
    sq.print_stars(records, systems)
    sq.print_words(records, systems)
    sq.print_cost({"seconds": {"new": {"cpu": 0.4, "wall": 0.9}}, "megabytes": {"new": 17.0}}, systems)
    out = capsys.readouterr().out
    assert "| cool_cast (90%) | 50% (1/2) MISSED, wrong direction 1 |" in out
    assert "| blur (90%) | 0% (0/1) MISSED |" in out  # a critique that names nothing misses
    assert "| noise (90%) | - |" in out  # no noise edit
    assert "| cool_cast | warm cast 1 |" in out
    assert "| all | 67% (2/3) MISSED |" in out
    assert "| distinct | 2 MISSED |" in out
    assert "checker missing" in out
    assert "0.400 ok / 0.900" in out and "17.0 MISSED" in out


def test_run_checker_on_the_real_checker():
    from ase_model.starter import checker
    from ase_model.starter.phrasing import TEMPLATES

    under, clean = TEMPLATES[("exposure", "underexposed")][0], TEMPLATES[("noise", "clean")][0]
    text = f"Exposure: {under} {clean} Purple elephants dance here."
    c = sq.run_checker(checker, text, {"exposure": "underexposed", "noise": "clean"}, None,
                       {"exposure": "well exposed", "noise": "clean"})
    assert (c["sentences"], c["unknown"], c["self"], c["own"]) == (3, 1, 0, 0)
    assert c["teacher"] == 1 and c["teacher_attributes"] == ["exposure"]


def test_alarms_count_defects_on_the_originals_only():
    records = [
        {"system": "new", "kind": "original", "verdicts": {"noise": "noisy", "white_balance": "cool cast"}},
        {"system": "new", "kind": "original", "verdicts": {"noise": "clean", "white_balance": "neutral"}},
        {"system": "new", "kind": "noise", "verdicts": {"noise": "noisy"}},  # an edit: not an alarm
        {"system": "new", "kind": "original", "verdicts": None},  # not judged: not counted
    ]
    alarms = sq.original_alarms(records)["new"]
    assert alarms["noise"] == (1, 2) and alarms["white_balance"] == (1, 2) and alarms["tilt"] == (0, 2)
