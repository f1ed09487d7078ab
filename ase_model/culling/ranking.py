"""Ranking inside a group and the decisions: pick, keep or reject, each with a one-line reason.

The rule (docs/culling.md):
- Each frame's defects are measured against its group: soft (detail on the group's common subject or over the
  frame below `soft_ratio` of the group's most detailed frame that is neither noisy, off in exposure nor blown;
  "focus on the background" when the rest keeps its detail or the subject lost clearly more; else "motion
  blur" when the edges' anisotropy moved `motion_anisotropy` off the group's median), exposure
  (`exposure_stops` or more off the group's median), noise (`noise_factor` times the group's median and above
  `noise_floor`), blown highlights (`clip_excess` more of the frame than the group's median).
- A frame with a defect is rejected; a frame without one is kept, however much better the pick is. So a clean
  frame is never rejected for sharing a group with a better one, and every reject names what is wrong with it.
- The pick is the frame with the fewest defects, then the best quality (the critic's score plus the subject's
  relative sharpness); the pick is never rejected (in a group where every frame is defective it says so).
- With a personal profile (`personal` scores), its score takes the critic's place in the quality, and the
  reasons say "personal score"; defects still come first (a profile does not rescue a blurred frame).
- A group of one is its own pick; its reason repeats the critic's defect verdicts, if any.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .features import CullFeatures, region_detail
from .grouping import GroupingConfig, frames, group_frames

DECISIONS = ("pick", "keep", "reject")
_SINGLE_VERDICTS = {("sharpness", "soft"): "soft", ("exposure", "underexposed"): "underexposed",
                    ("exposure", "overexposed"): "overexposed", ("noise", "noisy"): "noisy",
                    ("highlights", "clipped"): "clipped highlights"}


@dataclass
class CullConfig:
    """Culling thresholds (grouping's and ranking's).

    Args:
        grouping: the grouping thresholds.
        soft_ratio: a frame with less than this share of the group's most detail (on the subject or over the
            frame) is soft.
        motion_anisotropy: a soft frame whose edge anisotropy is this far off the group's median is motion blur.
        exposure_stops: this many stops or more off the group's median exposure is a defect.
        noise_factor: noise this many times the group's median ...
        noise_floor: ... and above this (0..255 units) is a defect.
        clip_excess: this share of the frame more blown than the group's median is a defect.
        sharpness_weight: the weight of the subject's relative detail (0..1) against the critic's score.
    """

    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    soft_ratio: float = 0.85
    motion_anisotropy: float = 0.2
    exposure_stops: float = 1.0
    noise_factor: float = 1.6
    noise_floor: float = 4.0
    clip_excess: float = 0.05
    sharpness_weight: float = 3.0


@dataclass
class CullDecision:
    """The verdict on one file.

    Args:
        path: the file.
        group: the group's id (0, 1, ... in capture-time order).
        decision: "pick", "keep" or "reject".
        reason: one line saying why.
        rank: 1 = the pick, in quality order inside the group.
        group_size: frames in the group (a RAW+JPEG pair is one frame).
        defects: short names of the frame's defects (e.g. ["soft", "under"]).
        personal_score: the photo's score by a personal profile, when the cull ranked by one (else None, and
            left out of `to_dict`).
    """

    path: str
    group: int
    decision: str
    reason: str
    rank: int = 1
    group_size: int = 1
    defects: list[str] = field(default_factory=list)
    personal_score: float | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.personal_score is None:  # a cull without a profile: the records stay as they were
            del out["personal_score"]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> CullDecision:
        if d["decision"] not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {d['decision']!r}")
        return cls(path=str(d["path"]), group=int(d["group"]), decision=str(d["decision"]), reason=str(d["reason"]),
                   rank=int(d.get("rank", 1)), group_size=int(d.get("group_size", 1)),
                   defects=[str(x) for x in d.get("defects", [])],
                   personal_score=None if d.get("personal_score") is None else float(d["personal_score"]))


_STOP_WORDS = {1.0: "one stop", 1.5: "1.5 stops", 2.0: "two stops", 2.5: "2.5 stops", 3.0: "three stops"}
# Short defect name -> how the group summary counts it.
_SUMMARY = {"soft": "soft on the subject", "background": "focused on the background", "motion": "motion blur",
            "under": "under", "over": "over", "noisy": "noisy", "clipped": "clipped highlights"}


def _stops(d: float) -> str:
    half = max(1.0, round(abs(d) * 2) / 2)
    return _STOP_WORDS.get(half, f"{half:g} stops")


def _rel(m: dict[str, float], ref: dict[str, float], key: str) -> float:
    return m[key] / ref[key] if ref[key] > 0 else 1.0


def _group_measurements(reps: Sequence[CullFeatures]) -> list[dict[str, float]]:
    """The frames' measurements, with detail re-measured on the group's common subject: the most salient
    quarter of the cells of the members' mean saliency (a frame's own map moves with its blur; a shared region
    compares like with like). Frames stored without a grid keep their own measurements."""
    ms = [dict(r.measurements) for r in reps]
    if not all(r.grid.get("saliency") for r in reps):
        return ms
    sal = np.mean([np.asarray(r.grid["saliency"], np.float64) for r in reps], axis=0)
    subject = sal >= np.percentile(sal, 75)
    for m, r in zip(ms, reps):
        m["subject_detail"] = region_detail(r.grid, subject)
        m["background_detail"] = region_detail(r.grid, ~subject)
        m["frame_detail"] = region_detail(r.grid, np.ones_like(subject))
    return ms


def _defects(m: dict[str, float], ref: dict[str, float], cfg: CullConfig) -> list[tuple[str, str]]:
    """(short name, phrase) for each defect of a frame against its group's reference values."""
    out = []
    noisy = m["noise_sigma"] >= max(cfg.noise_factor * ref["noise"], cfg.noise_floor)
    if noisy:  # noise adds gradients: its detail says nothing about focus
        out.append(("noisy", "noisy"))
    subject, frame, rest = (_rel(m, ref, k) for k in ("subject_detail", "frame_detail", "background_detail"))
    if not noisy and min(subject, frame) < cfg.soft_ratio:
        # Shake blurs the whole frame alike; a focus miss leaves the subject softer than the rest.
        if subject < cfg.soft_ratio and (rest >= cfg.soft_ratio or subject < cfg.soft_ratio * rest):
            out.append(("background", "focus on the background, soft on the subject"))
        elif abs(m["motion_anisotropy"] - ref["anis"]) >= cfg.motion_anisotropy:
            out.append(("motion", "motion blur"))
        else:
            out.append(("soft", "soft on the subject"))
    d = m["exposure_ev"] - ref["ev"]
    if d <= -cfg.exposure_stops:
        out.append(("under", f"{_stops(d)} under"))
    elif d >= cfg.exposure_stops:
        out.append(("over", f"{_stops(d)} over"))
    elif m["highlight_clip"] - ref["clip"] >= cfg.clip_excess:
        out.append(("clipped", "clipped highlights"))
    return out


def _reference(ms: Sequence[dict[str, float]], cfg: CullConfig) -> dict[str, float]:
    """The group's reference: the median exposure, anisotropy, clipping and noise, and the most
    detail among the frames neither noisy, nor off the median exposure, nor blown (noise and clipping move
    detail)."""
    # The median, not the least: a blurred or darkened frame reads less noise (texture is read as noise too).
    noise = statistics.median(m["noise_sigma"] for m in ms)
    ev = statistics.median(m["exposure_ev"] for m in ms)
    clip = statistics.median(m["highlight_clip"] for m in ms)
    fair = [m for m in ms if m["noise_sigma"] < max(cfg.noise_factor * noise, cfg.noise_floor)
            and abs(m["exposure_ev"] - ev) < cfg.exposure_stops and m["highlight_clip"] - clip < cfg.clip_excess] or ms
    ref = {k: max(m[k] for m in fair) for k in ("subject_detail", "frame_detail", "background_detail")}
    ref.update(noise=noise, ev=ev, anis=statistics.median(m["motion_anisotropy"] for m in fair),
               clip=clip)
    return ref


def _summary(defects: Sequence[list[tuple[str, str]]]) -> str:
    counts: dict[str, int] = {}
    for ds in defects:
        for short, phrase in ds[:1]:  # a frame counts once, for its first defect
            key = phrase if short in ("under", "over") else _SUMMARY[short]
            counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def rank_group(reps: Sequence[CullFeatures], config: CullConfig | None = None,
               personal: Sequence[float] | None = None) -> list[tuple[int, str, str, list[str]]]:
    """(rank, decision, reason, defects) per frame of one group, in the order given.

    Args:
        reps: the group's frames (one CullFeatures each).
        config: thresholds (CullConfig() when None).
        personal: the frames' personal scores (a profile's, 0..10): the quality that ranks clean frames uses them
            in place of the critic's score, and the reasons name the "personal score". None: the critic's score.
    """
    cfg = config or CullConfig()
    n = len(reps)
    scores = [f.score for f in reps] if personal is None else [float(p) for p in personal]
    label = "score" if personal is None else "personal score"
    if n == 1:
        f = reps[0]
        flagged = [w for (k, v), w in _SINGLE_VERDICTS.items() if f.verdicts.get(k) == v]
        said = f"; the critic finds it {', '.join(flagged)}" if flagged else f" ({label} {scores[0]:.1f})"
        reason = "only frame" + said
        return [(1, "pick", reason, [])]
    ms = _group_measurements(reps)
    ref = _reference(ms, cfg)
    defects = [_defects(m, ref, cfg) for m in ms]
    quality = [s + cfg.sharpness_weight * min(1.0, _rel(m, ref, "subject_detail")) for s, m in zip(scores, ms)]
    order = sorted(range(n), key=lambda i: (len(defects[i]), -quality[i], reps[i].path))
    rank = {i: r + 1 for r, i in enumerate(order)}
    pick = order[0]
    sharpest = max(range(n), key=lambda i: ms[i]["subject_detail"] if not defects[i] else -1.0)
    out = []
    for i in range(n):
        names = [s for s, _ in defects[i]]
        if i == pick:
            lead = f"sharpest on the subject of {n}" if i == sharpest else f"best of {n} ({label} {scores[i]:.1f})"
            if defects[i]:
                lead = f"best of {n}, though {', '.join(p for _, p in defects[i])}"
            if personal is not None and (i == sharpest or defects[i]):  # say which score ranked
                lead += f" ({label} {scores[i]:.1f})"
            others = _summary([defects[j] for j in range(n) if j != i])
            out.append((1, "pick", lead + (f"; {others}" if others else ""), names))
        elif defects[i]:
            out.append((rank[i], "reject", "; ".join(p for _, p in defects[i]), names))
        else:
            rel = _rel(ms[i], ref, "subject_detail")
            out.append((rank[i], "keep", f"clean, #{rank[i]} of {n} (subject {min(rel, 1.0):.0%} as sharp as the "
                                         f"sharpest, {label} {scores[i]:.1f} vs the pick's {scores[pick]:.1f})", names))
    return out


def cull(records: Sequence[CullFeatures], config: CullConfig | None = None,
         personal: Sequence[float | None] | None = None) -> list[CullDecision]:
    """Group and rank photos whose CullFeatures are known (no image decoding): one decision per record, in the
    order given. RAW+JPEG files of one frame share the frame's decision.

    Args:
        records: the photos' features (any order; an empty list gives an empty list).
        config: thresholds (CullConfig() when None).
        personal: per record, its personal score by a profile (or None where there is none): a group whose
            frames all have one is ranked by it (rank_group), and every decision carries its photo's
            `personal_score`. None: the critic's score ranks.
    """
    cfg = config or CullConfig()
    if not records:
        return []
    frame_list = frames(records)
    reps = [records[fr[0]] for fr in frame_list]
    labels = group_frames(reps, cfg.grouping)
    members: dict[int, list[int]] = {}
    for k, g in enumerate(labels):
        members.setdefault(g, []).append(k)
    out: list[CullDecision | None] = [None] * len(records)
    for g, ks in members.items():
        mine = None if personal is None else [personal[frame_list[k][0]] for k in ks]
        if mine is not None and any(p is None for p in mine):  # one scale per group: the critic's, then
            mine = None
        for k, (rank, decision, reason, names) in zip(ks, rank_group([reps[k] for k in ks], cfg, mine)):
            for i in frame_list[k]:
                own = None if personal is None or personal[i] is None else round(float(personal[i]), 3)
                out[i] = CullDecision(path=records[i].path, group=g, decision=decision, reason=reason, rank=rank,
                                      group_size=len(ks), defects=names, personal_score=own)
    return out  # type: ignore[return-value]


__all__ = ["DECISIONS", "CullConfig", "CullDecision", "cull", "rank_group"]
