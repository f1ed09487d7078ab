"""Verdicts known from how a training image was made: a recorded defect edit outranks the teacher's reading.

    verdicts = corrected(analysis.verdicts, record["augment"])

The analytic teacher reads every image afresh, and on two defects it is weak: it finds tilt only where the
frame has clear lines, and a cut-off subject only where saliency says so (held-out: tilt 69 %, cut-off 32 %).
But the dataset *made* those images - it rotated this one by 9 degrees, cropped that one through its subject -
so for them the truth is known, not guessed. Where an item's edit determines a verdict and the teacher said
something else, the edit's verdict is written instead, and the score and the critique follow it (the score from
the teacher's own terms with the corrected verdicts, the critique phrased from them). The student then learns
the defect from the pixels, not the teacher's blind spots. Only edits strong enough to be a defect count: the
eight defect edits of edits.py (each drawn in a clearly defective range) and the augmentations' rotations of
MIN_TILT_DEG or more and subject-cutting crops.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# Edit kind -> (attribute, the labels that name the defect); the first is written when the teacher said another.
EDIT_VERDICTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "underexpose": ("exposure", ("underexposed",)),
    "overexpose": ("exposure", ("overexposed",)),
    "blur": ("sharpness", ("soft",)),
    "desaturate": ("saturation", ("muted", "monochrome")),
    "cool_cast": ("white_balance", ("cool cast",)),
    "tilt": ("tilt", ("tilted",)),
    "noise": ("noise", ("noisy",)),
    "cut_crop": ("framing", ("cut off",)),
}
MIN_STOPS = 1.5  # the exposure edits' own lower bound
MIN_TILT_DEG = 5.0  # a smaller lean is within what a photographer may leave, and the teacher's call stands


def known_verdicts(augment: dict) -> dict[str, tuple[str, ...]]:
    """attribute -> the labels an item's recorded edits allow (only attributes the edits determine).

    Args:
        augment: the dataset record's `augment` parameters (dataset.augment, plus "edit" for a defect twin).
    """
    known: dict[str, tuple[str, ...]] = {}
    if abs(augment.get("rotate_deg", 0.0)) >= MIN_TILT_DEG:
        known["tilt"] = EDIT_VERDICTS["tilt"][1]
    if "cut_crop" in augment:
        known["framing"] = EDIT_VERDICTS["cut_crop"][1]
    edit = augment.get("edit") or {}
    kind = edit.get("kind")
    if kind not in EDIT_VERDICTS or _undone(kind, edit, augment):
        return known
    attribute, labels = EDIT_VERDICTS[kind]
    known[attribute] = labels
    return known


def _undone(kind: str, edit: dict, augment: dict) -> bool:
    """The item's own augmentation works against the edit (+2 stops on an item already 2 stops dark, a blue
    cast over a warm one): the result is not known to be defective, and the teacher's reading stands."""
    if kind in ("underexpose", "overexpose"):
        net = edit.get("stops", 0.0) + augment.get("exposure_stops", 0.0)
        return abs(net) < MIN_STOPS or (net > 0) != (kind == "overexpose")
    if kind == "cool_cast":
        return (augment.get("white_balance") or {}).get("kind", "cool") != "cool"
    return False


def corrected(verdicts: dict[str, str], augment: dict) -> dict[str, str]:
    """The teacher's verdicts with every verdict an edit determines set to the edit's label where they differ."""
    out = dict(verdicts)
    for attribute, labels in known_verdicts(augment).items():
        if out.get(attribute) not in labels:
            out[attribute] = labels[0]
    return out


def relabel(record: dict, seed: int) -> dict:
    """A dataset record with its verdicts corrected by its edits; score, critique, attributes and tags follow.
    Unchanged records come back as they are. The wording is drawn from its own seeded stream (the item's id),
    so a dataset relabelled in place equals one generated with the correction.

    Args:
        record: one dataset line (needs "verdicts", "measurements", "augment", "image").
        seed: the dataset's seed.
    """
    from ase_model.tags import suggest_tags

    from .analytic import Analysis, score_of, score_terms
    from .phrasing import write_critique

    verdicts = corrected(record["verdicts"], record.get("augment") or {})
    if verdicts == record["verdicts"]:
        return record
    m = record["measurements"]
    analysis = Analysis(measurements=m, verdicts=verdicts, score=score_of(m, verdicts),
                        notes=score_terms(m, verdicts))
    rng = random.Random(f"ase-starter-known:{seed}:{record['image']}")
    critique, attributes = write_critique(analysis, rng)
    return {**record, "critique": critique, "attributes": attributes, "score": analysis.score,
            "verdicts": verdicts, "tags": suggest_tags(critique), "teacher_verdicts": record["verdicts"]}


def relabel_dataset(data_dir: Path, seed: int) -> dict[str, int]:
    """Relabel a dataset generated before the correction, in place (records only: no pixel is touched).
    Each split file is replaced atomically; summary.json then says `known_verdicts`. Returns split -> the
    number of records changed."""
    changed: dict[str, int] = {}
    for split in ("train", "test", "pretrain"):
        path = data_dir / f"{split}.jsonl"
        if not path.exists():
            continue
        lines, n = [], 0
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            new = relabel(record, seed)
            n += new is not record
            lines.append(json.dumps(new) if new is not record else line)
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        tmp.replace(path)
        changed[split] = n
    summary_path = data_dir / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary.update(known_verdicts=True, relabelled=changed)
    summary_path.write_text(json.dumps(summary, indent=2))
    return changed


__all__ = ["EDIT_VERDICTS", "MIN_TILT_DEG", "corrected", "known_verdicts", "relabel", "relabel_dataset"]
