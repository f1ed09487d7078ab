"""Can the built-in critic be trusted on photos it has never seen? The held-out benchmark of issue 14.

    .venv/bin/python bench/starter_quality.py [--model DIR] [--previous DIR] [--limit N] [--out DIR] [--json]

Every held-out photo (a whole source never used in training: ase_model.starter.sources.holdout_photos) is
brought to 512 px on the long side (never upscaled) and saved as JPEG q92 with its eight defect edits
(ase_model.starter.edits, strength drawn by a rng seeded per photo and kind). The new model and the previous
shipped model critique all of them through ase_model.critic.Critic, the path users get (with the run-time repair
of the text, which needs an attribute head: a previous model without one is run as it shipped); the teacher
(ase_model.starter.analytic.analyze) judges the same files and its phrasing writes its text. Printed side by
side, each target with ok/MISSED:
  * defect named, per edit kind: the critique's tags name the edit's defect, and no other label of that
    attribute (the teacher: its verdict); a cool cast named warm, green or magenta is counted as wrong direction;
  * score lower than the original's (a tie is not lower), over all edits and per kind;
  * stars over the originals (daemon's rating_from_score): histogram and the number of distinct values;
  * sentences the checker (ase_model.starter.checker) cannot read back, and critiques that contradict themselves,
    their own attribute-head verdicts and score, or the teacher's verdicts (also for the decoder's text before
    the run-time repair, and which attributes contradict the teacher most);
  * distinct sentences per 100 critiques;
  * warm CPU critique time (batch 1, one torch thread, median over the originals) and the largest weight file.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ase_model.starter.known import EDIT_VERDICTS, MIN_TILT_DEG  # noqa: E402  (after the path insert)

PREVIOUS_COMMIT = "4668fc6"  # the starter shipped before this one
SIZE = 512
# Edit kind -> (attribute, the labels that name it): the same map the training labels are corrected by.
EXPECTED = {kind: (attribute, set(labels)) for kind, (attribute, labels) in EDIT_VERDICTS.items()}
WRONG_DIRECTION = {"cool_cast": {"warm cast", "green cast", "magenta cast"}}
NAMED_TARGET = {"tilt": 0.80, "cut_crop": 0.80}  # the rest: 0.90
TARGETS = {"lower": 0.95, "stars": 4, "unreadable": 0.01, "contradicting": 0.01, "seconds": 0.5, "megabytes": 16.0}


# ---- metrics on records: {"system", "photo", "kind", "params", "text", "score", "tags", "verdicts", "check"} -
def _labels_said(tags: list[str], attribute: str, accepted: set[str]) -> set[str] | None:
    """Labels of `attribute` whose tag is among `tags`; None if the tag map has no tag for the accepted labels
    (the vocabulary cannot say it yet)."""
    from ase_model.starter.analytic import VERDICT_LABELS
    from ase_model.tags import tag_for_verdict

    label_tags = {}
    for label in set(VERDICT_LABELS.get(attribute, ())) | accepted:
        try:
            label_tags[label] = tag_for_verdict(attribute, label)
        except KeyError:
            continue
    if not any(label_tags.get(label) for label in accepted):
        return None
    return {label for label, tag in label_tags.items() if tag and tag in set(tags)}


def _said(rec: dict) -> set[str] | None:
    """The labels of the edit's attribute that the system gives (the teacher: its verdict); None: it cannot."""
    attribute, accepted = EXPECTED[rec["kind"]]
    if rec["system"] == "teacher":
        verdict = rec["verdicts"].get(attribute)
        return None if verdict is None else {verdict}
    return _labels_said(rec.get("tags") or [], attribute, accepted)


def defect_named(rec: dict) -> str | None:
    """"named", "wrong direction", "missed", "n/a" (the system cannot say it) or None (not an edit that counts)."""
    kind = rec["kind"]
    if kind not in EXPECTED:
        return None
    if kind == "tilt" and abs(rec.get("params", {}).get("degrees", MIN_TILT_DEG)) < MIN_TILT_DEG:
        return None
    said, accepted = _said(rec), EXPECTED[kind][1]
    if said is None:
        return "n/a"
    if said & accepted and said <= accepted:
        return "named"
    return "wrong direction" if said & WRONG_DIRECTION.get(kind, set()) else "missed"


def named_table(records: list[dict]) -> dict[str, dict[str, Counter]]:
    """system -> edit kind -> Counter of defect_named outcomes."""
    out: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for rec in records:
        outcome = defect_named(rec)
        if outcome is not None:
            out[rec["system"]][rec["kind"]][outcome] += 1
    return out


def misses(records: list[dict]) -> dict[str, dict[str, Counter]]:
    """system -> edit kind -> Counter of what was said instead where the defect was not named ("nothing", a
    label, or labels joined by "+")."""
    out: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for rec in records:
        if defect_named(rec) in ("missed", "wrong direction"):
            out[rec["system"]][rec["kind"]]["+".join(sorted(_said(rec))) or "nothing"] += 1
    return out


def score_lower(records: list[dict]) -> dict[str, dict[str, tuple[int, int]]]:
    """system -> edit kind (and "all") -> (edits scored strictly below their original, edits)."""
    original = {(r["system"], r["photo"]): r["score"] for r in records if r["kind"] == "original"}
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in records:
        base = original.get((r["system"], r["photo"]))
        if r["kind"] == "original" or base is None or r["score"] is None:
            continue
        for key in (r["kind"], "all"):
            counts[r["system"]][key][0] += r["score"] < base
            counts[r["system"]][key][1] += 1
    return {s: {k: (v[0], v[1]) for k, v in kinds.items()} for s, kinds in counts.items()}


def star_histogram(records: list[dict]) -> dict[str, Counter]:
    """system -> Counter of stars (1..5) over the originals."""
    from ase_daemon.xmp import rating_from_score

    out: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        if r["kind"] == "original" and r["score"] is not None:
            out[r["system"]][rating_from_score(r["score"])] += 1
    return out


# Verdicts that report a defect: on an unedited original, a false alarm (or a flaw the photo really has).
DEFECTS = {"exposure": {"underexposed", "overexposed"}, "sharpness": {"soft"}, "noise": {"noisy"},
           "white_balance": {"warm cast", "cool cast", "green cast", "magenta cast"}, "tilt": {"tilted"},
           "framing": {"cut off"}}


def original_alarms(records: list[dict]) -> dict[str, dict[str, tuple[int, int]]]:
    """system -> attribute -> (originals whose verdicts report that defect, originals with verdicts)."""
    out: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for system in {r["system"] for r in records}:
        judged = [r["verdicts"] for r in records if r["system"] == system and r["kind"] == "original" and r["verdicts"]]
        for attribute, bad in DEFECTS.items():
            out[system][attribute] = (sum(v.get(attribute) in bad for v in judged), len(judged))
    return out


def sentences(text: str) -> list[str]:
    """The critique's sentences, section labels dropped."""
    from ase_model.attributes import parse_critique

    parts = parse_critique(text or "").values()
    return [s for part in parts for s in re.split(r"(?<=[.!?])\s+", part) if s.strip()]


def distinct_per_100(records: list[dict]) -> dict[str, float]:
    """system -> distinct sentences per 100 critiques."""
    seen, n = defaultdict(set), Counter()
    for r in records:
        if r.get("text"):
            n[r["system"]] += 1
            seen[r["system"]].update(s.lower() for s in sentences(r["text"]))
    return {s: 100 * len(seen[s]) / n[s] for s in n}


def checker_table(records: list[dict], key: str = "check") -> dict[str, dict[str, float]] | None:
    """system -> the share of unreadable sentences, the shares of critiques that contradict themselves, their own
    verdicts and score, the teacher's verdicts, and per attribute the teacher's ("teacher:<attribute>"), from each
    record's `key` entry (see run_checker); None if no record was checked."""
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in records:
        c = r.get(key)
        if not c:
            continue
        row = out[r["system"]]
        row["unreadable"][0] += c["unknown"]
        row["unreadable"][1] += c["sentences"]
        for against in ("self", "own", "teacher"):
            if c.get(against) is not None:
                row[against][0] += c[against] > 0
                row[against][1] += 1
        for attribute in c.get("teacher_attributes", ()):
            row[f"teacher:{attribute}"][0] += 1
    for row in out.values():
        for k in [k for k in row if k.startswith("teacher:")]:
            row[k][1] = row["teacher"][1]
    if not out:
        return None
    return {s: {k: (v[0] / v[1] if v[1] else float("nan")) for k, v in row.items()} for s, row in out.items()}


def run_checker(checker, text: str, own: dict | None, score: float | None, teacher: dict) -> dict:
    """What the checker finds in a critique: "sentences", "unknown" (unreadable ones), and the problems other than
    unknown sentences on its own ("self": statements that disagree, advice against a statement), against the
    system's own verdicts and score ("own", None without verdicts) and against the teacher's verdicts ("teacher",
    with the attributes concerned in "teacher_attributes")."""
    alone, against = checker.check(text), checker.check(text, teacher)
    attributes = {against.reading.sentences[p.index].attribute or p.kind for p in against.problems
                  if p.kind != "unknown" and 0 <= p.index < len(against.reading.sentences)}
    return {"sentences": len(alone.reading.sentences), "unknown": alone.reading.unknown,
            "self": alone.contradictions, "own": None if not own else checker.check(text, own, score).contradictions,
            "teacher": against.contradictions, "teacher_attributes": sorted(attributes)}


# ---- photos and edits ------------------------------------------------------------------------------------------
def heldout_photos(limit: int | None) -> tuple[list[tuple[str, object]], str]:
    """[(file-safe name, RGB PIL image)] of the held-out source, and where they came from."""
    from ase_model.starter import sources

    origin = f"held-out source {sources.HOLDOUT_SOURCE!r}"
    items = list(sources.holdout_photos(max_side=SIZE).items())[:limit]
    if sources.SKIPPED:
        origin += f" (absent on this machine, skipped: {', '.join(sources.SKIPPED)})"
    return [(re.sub(r"[^\w.-]+", "_", name), img.convert("RGB")) for name, img in items], origin


def prepare(photos: list[tuple[str, object]], folder: Path, seed: int) -> list[dict]:
    """Originals (<= 512 px long side) and their eight edits as JPEG q92 in `folder`; one item per file."""
    from PIL import Image

    from ase_model.starter.edits import EDIT_KINDS, apply_edit

    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for name, img in photos:
        img = img.copy()
        img.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
        variants = [("original", img, {})]
        for kind in EDIT_KINDS:
            variants.append((kind, *apply_edit(img, kind, random.Random(f"{seed}:{name}:{kind}"))))
        for kind, image, params in variants:
            path = folder / f"{name}--{kind}.jpg"
            image.save(path, quality=92)
            items.append({"photo": name, "kind": kind, "params": params, "path": str(path)})
    return items


# ---- systems ---------------------------------------------------------------------------------------------------
def previous_model_dir(spec: str | None) -> Path:
    """--previous, or the model shipped at PREVIOUS_COMMIT, extracted once into work/previous-starter."""
    if spec:
        return Path(spec)
    dest = ROOT / "work" / "previous-starter"
    model = dest / "ase_model" / "starter_model"
    if not (model / "config.json").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_COMMIT, "ase_model/starter_model"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return model


def run_model(model_dir: Path, system: str, items: list[dict], batch: int,
              repair: bool = True) -> tuple[list[dict], dict]:
    """One record per item from Critic.critique in batches (verdicts: the attribute head's, where the Critic gives
    them), and the median warm seconds of a batch-1 critique with one torch thread over the originals:
    {"wall", "cpu"} (CPU time is what a shared machine cannot inflate)."""
    import torch

    from ase_model.critic import Critic

    # The previous model as it shipped: before the run-time repair (a Critic without `repair` has none).
    as_shipped = {"repair": False} if not repair and "repair" in inspect.signature(Critic.__init__).parameters else {}
    critic = Critic.from_pretrained(model_dir, device="cpu", **as_shipped)
    records = []
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        for it, c in zip(chunk, critic.critique([it["path"] for it in chunk])):
            records.append({**it, "system": system, "model": critic.model_id, "text": c.text, "score": c.score,
                            "tags": c.tags, "verdicts": getattr(c, "verdicts", None),
                            "raw_text": getattr(c, "raw_text", None), "repairs": getattr(c, "repairs", None)})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        originals = [it["path"] for it in items if it["kind"] == "original"]
        critic.critique(originals[:1])  # warm
        wall, cpu = [], []
        for path in originals:
            t0, c0 = time.perf_counter(), time.process_time()
            critic.critique([path])
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    finally:
        torch.set_num_threads(threads)
    return records, {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}


def run_teacher(items: list[dict], seed: int) -> list[dict]:
    """The analytic teacher's verdicts and score on every file, and its phrasing of them (the training text)."""
    from PIL import Image

    from ase_model.starter.analytic import analyze
    from ase_model.starter.phrasing import write_critique
    from ase_model.tags import suggest_tags

    records = []
    for it in items:
        with Image.open(it["path"]) as im:
            a = analyze(im.convert("RGB"))
        text = write_critique(a, random.Random(f"{seed}:{it['photo']}:{it['kind']}"))[0]
        records.append({**it, "system": "teacher", "text": text, "score": a.score, "tags": suggest_tags(text),
                        "verdicts": dict(a.verdicts)})
    return records


# ---- the report ------------------------------------------------------------------------------------------------
def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _pct(a: int, n: int) -> str:
    return f"{a / n:.0%} ({a}/{n})" if n else "-"


def _head(title: str, first: str, systems: list[str]) -> None:
    print(f"\n### {title}\n\n| {first} | " + " | ".join(systems) + " |\n|---|" + "---|" * len(systems))


def _row(label: str, cells) -> None:
    print(f"| {label} | " + " | ".join(cells) + " |")


def print_named(records: list[dict], systems: list[str]) -> None:
    from ase_model.starter.edits import EDIT_KINDS

    named = named_table(records)
    _head("Defect named, per edit (target >= 90 %; tilt and cut_crop >= 80 %)", "edit (target)", systems)
    for kind in EDIT_KINDS:
        target, cells = NAMED_TARGET.get(kind, 0.90), []
        for s in systems:
            c = named.get(s, {}).get(kind, Counter())
            n = sum(c.values())
            cell = ("-" if not n else "n/a" if c["n/a"] == n
                    else f"{_pct(c['named'], n)} {_mark(c['named'] / n >= target)}")
            cells.append(cell + (f", wrong direction {c['wrong direction']}" if kind in WRONG_DIRECTION else ""))
        _row(f"{kind} ({target:.0%})", cells)


def print_misses(records: list[dict], systems: list[str]) -> None:
    from ase_model.starter.edits import EDIT_KINDS

    missed = misses(records)
    _head("What was said instead, where the defect was not named (most frequent two)", "edit", systems)
    for kind in EDIT_KINDS:
        _row(kind, [", ".join(f"{what} {n}" for what, n in missed.get(s, {}).get(kind, Counter()).most_common(2))
                    or "-" for s in systems])


def print_lower(records: list[dict], systems: list[str]) -> None:
    from ase_model.starter.edits import EDIT_KINDS

    lower = score_lower(records)
    _head(f"Score lower than the original's (target >= {TARGETS['lower']:.0%} of all edits)", "edits", systems)
    for kind in (*EDIT_KINDS, "all"):
        pairs = [lower.get(s, {}).get(kind, (0, 0)) for s in systems]
        _row(kind, [_pct(lo, n) + (f" {_mark(lo / n >= TARGETS['lower'])}" if n and kind == "all" else "")
                    for lo, n in pairs])


def print_stars(records: list[dict], systems: list[str]) -> None:
    stars = star_histogram(records)
    _head(f"Stars over the held-out originals (target: >= {TARGETS['stars']} of the 5 values)", "stars", systems)
    for k in range(1, 6):
        _row("*" * k, [str(stars.get(s, Counter())[k]) for s in systems])
    _row("distinct", [f"{len(stars.get(s, ()))} {_mark(len(stars.get(s, ())) >= TARGETS['stars'])}" for s in systems])


def print_alarms(records: list[dict], systems: list[str]) -> None:
    alarms = original_alarms(records)
    _head("A defect reported on the unedited originals (false alarms, or flaws the photo has; report only)",
          "verdict", systems)
    for attribute, bad in DEFECTS.items():
        _row(" / ".join(sorted(bad)) if len(bad) < 3 else f"{attribute.replace('_', ' ')} cast",
             [_pct(*alarms.get(s, {}).get(attribute, (0, 0))) for s in systems])


def _top(row: dict[str, float], n: int = 4) -> str:
    ranked = sorted(((v, k.split(":", 1)[1]) for k, v in row.items() if k.startswith("teacher:")), reverse=True)
    return ", ".join(f"{name} {v:.0%}" for v, name in ranked[:n]) or "-"


def print_words(records: list[dict], systems: list[str]) -> None:
    _head("Words (the checker: ase_model.starter.checker)", "measure", systems)
    if checker_table(records) is None:
        _row("checker", ["checker missing"] * len(systems))
    for source, key in (("", "check"), ("decoder's text before repair: ", "check_raw")):
        checks = checker_table(records, key)
        if checks is None:
            continue
        for name, label in (("unreadable", "sentences the checker cannot read back (< 1 %)"),
                            ("self", "critiques contradicting themselves (< 1 %)"),
                            ("own", "critiques contradicting their own verdicts or score (< 1 %)"),
                            ("teacher", "critiques contradicting the teacher's verdicts (< 1 %)")):
            limit = TARGETS["unreadable" if name == "unreadable" else "contradicting"]
            values = [checks.get(s, {}).get(name) for s in systems]
            # The targets apply to what users read; the decoder's own text is for diagnosis.
            _row(source + label, ["-" if v is None or v != v else f"{v:.1%}" + ("" if source else
                                  f" {_mark(v < limit)}") for v in values])
        _row(source + "... against the teacher, where (share of critiques)", [_top(checks.get(s, {})) for s in systems])
    distinct = distinct_per_100(records)
    _row("distinct sentences per 100 critiques", [f"{distinct[s]:.1f}" if s in distinct else "-" for s in systems])


def print_cost(extra: dict, systems: list[str]) -> None:
    sec, mb = extra["seconds"], extra["megabytes"]
    _head("Cost", "measure", systems)
    _row("warm critique, batch 1, 1 thread: median CPU s (< 0.5) / wall s", [
        f"{sec[s]['cpu']:.3f} {_mark(sec[s]['cpu'] < TARGETS['seconds'])} / {sec[s]['wall']:.3f}" if s in sec else "-"
        for s in systems])
    _row("largest weight file, MB (<= 16)",
         [f"{mb[s]:.1f} {_mark(mb[s] <= TARGETS['megabytes'])}" if s in mb else "-" for s in systems])


def check_all(records: list[dict]) -> bool:
    """Adds "check" (the text) and "check_raw" (the decoder's own text) to every record; False: no checker."""
    try:
        from ase_model.starter import checker
    except ImportError:
        return False
    teacher = {r["path"]: r["verdicts"] for r in records if r["system"] == "teacher"}
    for r in records:
        for field, key in (("text", "check"), ("raw_text", "check_raw")):
            if r.get(field):
                r[key] = run_checker(checker, r[field], r["verdicts"], r["score"], teacher[r["path"]])
    return True


def main(argv=None) -> int:
    from ase_model.critic import default_model_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(default_model_dir()), help="the new model (default: the shipped one)")
    ap.add_argument("--previous", default=None, help=f"the previous model (default: {PREVIOUS_COMMIT}'s, extracted)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N held-out photos")
    ap.add_argument("--batch", type=int, default=8, help="critiques per batched pass")
    ap.add_argument("--seed", type=int, default=0, help="seeds the edit strengths")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the batched run (one: on a busy "
                    "2-core machine two threads ran ten times slower)")
    ap.add_argument("--out", default=None, help="folder for the images and records.json (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="write every per-image record to OUT/records.json and the "
                    "tables' figures to OUT/summary.json")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="starter-quality-"))
    photos, origin = heldout_photos(args.limit)
    if not photos:
        raise SystemExit(f"no held-out photos ({origin}): install its Debian package (./install.sh --test)")
    items = prepare(photos, out / "images", args.seed)
    print(f"{len(photos)} held-out photos from {origin}; {len(items)} images in {out / 'images'}")
    records, extra, systems = [], {"seconds": {}, "megabytes": {}}, []
    for system, model_dir in (("new", Path(args.model)), ("previous", previous_model_dir(args.previous))):
        try:
            recs, seconds = run_model(model_dir, system, items, args.batch, repair=True)
        except Exception as exc:  # the old model may not load under new code: say so, bench the rest
            if system == "new":
                raise
            print(f"{system} model {model_dir} skipped: {type(exc).__name__}: {exc}")
            continue
        records += recs
        systems.append(system)
        extra["seconds"][system] = seconds
        extra["megabytes"][system] = max(p.stat().st_size for p in model_dir.glob("*.safetensors")) / 1e6
        print(f"{system}: {recs[0]['model']} ({model_dir}), {time.perf_counter() - t0:.0f} s so far")
    records += run_teacher(items, args.seed)
    systems.append("teacher")
    if not check_all(records):
        print("checker missing (ase_model.starter.checker): no read-back or contradiction figures")
    print_named(records, systems)
    print_misses(records, systems)
    print_lower(records, systems)
    print_stars(records, systems)
    print_alarms(records, systems)
    print_words(records, systems)
    print_cost(extra, systems)
    if args.json:
        (out / "records.json").write_text(json.dumps(records, indent=1, default=str))
        summary = {"photos": origin, "named": named_table(records), "instead": misses(records),
                   "lower": score_lower(records), "stars": star_histogram(records), "checks": checker_table(records),
                   "checks_raw": checker_table(records, "check_raw"), "distinct": distinct_per_100(records), **extra}
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"\n({len(records)} critiques in {time.perf_counter() - t0:.0f} s; files in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
