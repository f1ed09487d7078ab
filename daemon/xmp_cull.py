"""A cull's decision in the photo's XMP sidecar: xmp:Rating -1 for rejects, the group and the reason in our namespace.

Written through the same machinery as the critique (daemon/xmp.py: pyexiv2 under PYEXIV2_LOCK; sidecar_files.py:
regular files only, links refused, atomic replace, every foreign value checked unchanged before the rename). Our
namespace (`asecritic`) gains:

    asecritic:CullDecision      simple                pick | keep | reject
    asecritic:CullGroup         simple                the group's number in that cull (0, 1, ... by capture time)
    asecritic:CullLeader        simple                the file name of the group's pick (a stable group key)
    asecritic:CullGroupSize     simple                frames in the group
    asecritic:CullRank          simple                1 = the pick
    asecritic:CullReason        Lang Alt (x-default)  the one-line reason
    asecritic:CullDate          simple                ISO 8601 time of the cull
    asecritic:CullWroteRating   simple                the xmp:Rating this cull wrote (absent: it wrote none)
    asecritic:CullPriorRating   simple                the xmp:Rating before it did (absent: there was none)

xmp:Rating: a reject gets -1 (darktable's and Lightroom's reject); the pick gets `pick_rating` stars when asked and
its rating is lower; a keep, and the pick without `pick_rating`, keeps its rating. A rating is only replaced when it
is empty, 0, the critic's own (asecritic:WrittenRating) or this cull's earlier one, or with `overwrite_rating`; a
re-cull that no longer rejects a frame puts back the rating it had before. The critique's keys are left alone, and
a re-critique (write_sidecar) leaves these.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .sidecar_files import SidecarError, commit, read_existing
from .xmp import (
    _NS,
    _REPLACE_TRIES,
    _WRITE_LOCK,
    K_RATING,
    K_WRITTEN_RATING,
    PYEXIV2_LOCK,
    _as_text,
    _clean_text,
    _lang_alt,
    _modified_packet,
    _open_xmp,
    sidecar_path,
)

__all__ = ["CULL_PREFIX", "CullSidecarOptions", "apply_decisions", "read_cull", "write_cull"]

CULL_PREFIX = _NS + "Cull"  # every key of ours that a cull writes starts with it (write_sidecar keeps them)
K_DECISION, K_GROUP, K_LEADER = CULL_PREFIX + "Decision", CULL_PREFIX + "Group", CULL_PREFIX + "Leader"
K_SIZE, K_RANK, K_REASON, K_DATE = CULL_PREFIX + "GroupSize", CULL_PREFIX + "Rank", CULL_PREFIX + "Reason", \
    CULL_PREFIX + "Date"
K_WROTE, K_PRIOR = CULL_PREFIX + "WroteRating", CULL_PREFIX + "PriorRating"
REJECT_RATING = "-1"


@dataclass
class CullSidecarOptions:
    """How --apply treats xmp:Rating.

    Args:
        pick_rating: stars (1..5) the pick is raised to when its rating is lower; None leaves the pick's rating.
        overwrite_rating: replace a rating the user set (any value but 0) too.
        write_rating: False writes the group and reason only, no xmp:Rating at all.
    """

    pick_rating: int | None = None
    overwrite_rating: bool = False
    write_rating: bool = True


def _rating_changes(cur: dict, decision: str, options: CullSidecarOptions) -> tuple[dict, dict]:
    """(changes to xmp:Rating and our rating records, what happened) for one decision."""
    now = (_as_text(cur.get(K_RATING)) or "").strip()
    wrote = (_as_text(cur.get(K_WROTE)) or "").strip()
    ours = bool(now) and now == wrote
    prior = (_as_text(cur.get(K_PRIOR)) or "").strip() if ours else now
    replaceable = (not now or now == "0" or ours or options.overwrite_rating
                   or now == (_as_text(cur.get(K_WRITTEN_RATING)) or "").strip())
    target = prior
    if decision == "reject":
        target = REJECT_RATING
    elif decision == "pick" and options.pick_rating is not None:
        try:
            before = int(float(prior)) if prior else 0
        except ValueError:
            before = 0
        if before < options.pick_rating:
            target = str(options.pick_rating)
    changes: dict = {}
    if not options.write_rating or not replaceable:
        # Nothing of the rating is touched; our records stay as they are only while they still describe it.
        if wrote and not ours:
            changes.update({K_WROTE: None, K_PRIOR: None})
        return changes, {"rating": now or None, "kept_rating": bool(now) and target != now}
    changes[K_RATING] = target or None
    if target and target != prior:
        changes[K_WROTE] = target
        changes[K_PRIOR] = prior or None
    else:
        changes.update({K_WROTE: None, K_PRIOR: None})
    return changes, {"rating": target or None, "kept_rating": False}


def _build(old: bytes | None, d: dict, options: CullSidecarOptions, target: Path) -> tuple[bytes, dict]:
    def make_changes(cur: dict) -> tuple[dict, dict]:
        changes, report = _rating_changes(cur, d["decision"], options)
        changes = {k: v for k, v in changes.items() if v is not None or k in cur}
        changes.update({
            K_DECISION: d["decision"], K_GROUP: str(int(d["group"])), K_LEADER: _clean_text(d.get("leader") or ""),
            K_SIZE: str(int(d.get("group_size", 1))), K_RANK: str(int(d.get("rank", 1))),
            K_REASON: _lang_alt(_clean_text(d.get("reason") or "")),
            K_DATE: datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })
        if not changes[K_LEADER]:
            del changes[K_LEADER]
            if K_LEADER in cur:
                changes[K_LEADER] = None
        return changes, report

    return _modified_packet(old, target, make_changes, passthrough=())


def write_cull(image_path, decision: dict, options: CullSidecarOptions | None = None) -> dict:
    """Write one photo's cull decision into its sidecar (created when missing); returns {"sidecar", "rating",
    "kept_rating"} (kept_rating: the user's rating was left where the decision would have changed it).

    Args:
        image_path: the photo (its sidecar is `<name>.xmp` beside it, darktable's naming).
        decision: a CullDecision.to_dict(), optionally with "leader" (the file name of the group's pick).
        options: the rating policy (CullSidecarOptions() when None).

    Raises SidecarError (the old sidecar untouched) when it cannot be done: a link or FIFO in its place, XMP
    exiv2 cannot parse, a folder it may not write.
    """
    options = options or CullSidecarOptions()
    target = sidecar_path(image_path)
    with _WRITE_LOCK:
        for _ in range(_REPLACE_TRIES):
            old = read_existing(target)
            data, report = _build(old, decision, options, target)
            if commit(target, old, data):
                return {"sidecar": str(target), **report}
    raise SidecarError(target, "another program kept rewriting the sidecar; gave up", errno.EAGAIN)


def read_cull(path) -> dict:
    """The cull fields of a sidecar (or of an image's sidecar): decision, group, leader, group_size, rank, reason,
    date, rating; {} when no cull was written. SidecarError when the sidecar is missing or unreadable."""
    p = Path(path)
    if p.suffix.lower() != ".xmp":
        p = sidecar_path(p)
    data = read_existing(p, follow=True)
    if data is None:
        raise SidecarError(p, "no such sidecar", errno.ENOENT)
    if not data.strip():
        return {}
    with PYEXIV2_LOCK:
        img = _open_xmp(data, p)
        try:
            cur = img.read_xmp()
        finally:
            img.close()
    if K_DECISION not in cur:
        return {}
    out = {"decision": _as_text(cur.get(K_DECISION)), "reason": _as_text(cur.get(K_REASON)) or "",
           "leader": _as_text(cur.get(K_LEADER)), "date": _as_text(cur.get(K_DATE)),
           "rating": _as_text(cur.get(K_RATING))}
    for field, key in (("group", K_GROUP), ("group_size", K_SIZE), ("rank", K_RANK)):
        value = _as_text(cur.get(key))
        out[field] = int(value) if value and value.lstrip("-").isdigit() else None
    return out


def apply_decisions(decisions: list[dict], options, errors: dict, progress=None) -> int:
    """Write each decision into its photo's sidecar (the leader = the group's pick); returns how many failed.

    Args:
        decisions: CullDecision.to_dict() records; each gains "sidecar" and "rating" (or "sidecar_error").
        options: xmp_cull.CullSidecarOptions.
        errors: failures go here too ({path: message}).
        progress: called as progress(done, total) every 25 sidecars.
    """
    leaders = {d["group"]: Path(d["path"]).name for d in decisions if d["decision"] == "pick"}
    failed = 0
    for i, d in enumerate(decisions):
        if progress is not None and i and i % 25 == 0:
            progress(i, len(decisions))
        try:
            d.update(write_cull(d["path"], {**d, "leader": leaders.get(d["group"])}, options))
        except (SidecarError, OSError, ValueError) as e:
            d["sidecar_error"] = str(e)
            errors[d["path"]] = str(e)
            failed += 1
    return failed
