"""Grouping a shoot: RAW+JPEG pairs into frames, frames into bursts and near-duplicates.

Rule: frames are taken in capture-time order; a frame joins the open group it resembles most (descriptor
cosine >= `min_similarity`) among the groups whose latest frame is at most `max_gap_s` seconds before it;
otherwise it opens a group of its own. Both conditions must hold, so two shots of one scene minutes apart stay
apart, and so do two different scenes shot a second apart. Looking at every open group, not only the latest,
keeps bursts apart when a photographer alternates between two subjects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..folders import RAW_SUFFIXES, pair_indices
from .features import CullFeatures


@dataclass
class GroupingConfig:
    """Grouping thresholds.

    Args:
        max_gap_s: the longest pause between two frames of one group (seconds).
        min_similarity: the lowest descriptor cosine for a frame to join a group (its best match in it).
    """

    max_gap_s: float = 5.0
    min_similarity: float = 0.80


def frames(records: Sequence[CullFeatures]) -> list[list[int]]:
    """Indices of `records` grouped into frames: files in one folder with one stem (IMG_1.CR2 + IMG_1.JPG) are
    one frame. The first index of each frame is its representative (a RAW when there is one, else the first
    file): the RAW is the master whose features represent the frame. Frames are in the order of their first file.
    The rule is ase_model.folders.pair_indices, which the folder critiques share.

    Args:
        records: the photos' features.
    """
    return pair_indices([r.path for r in records], master="raw")


def group_frames(reps: Sequence[CullFeatures], config: GroupingConfig | None = None) -> list[int]:
    """A group id per frame (0, 1, ... in capture-time order of each group's first frame).

    Args:
        reps: one CullFeatures per frame (its representative).
        config: the thresholds (GroupingConfig() when None).
    """
    config = config or GroupingConfig()
    n = len(reps)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: (reps[i].capture_time, reps[i].path))
    desc = np.asarray([r.descriptor for r in reps], np.float32)
    norms = np.linalg.norm(desc, axis=1, keepdims=True)
    desc = np.divide(desc, norms, out=np.zeros_like(desc), where=norms > 0)
    groups: list[list[int]] = []
    last_time: list[float] = []
    label = [-1] * n
    for i in order:
        t = reps[i].capture_time
        best, best_sim = -1, config.min_similarity
        for g in range(len(groups) - 1, -1, -1):
            if t - last_time[g] > config.max_gap_s:
                continue
            sim = float((desc[groups[g]] @ desc[i]).max())
            if sim >= best_sim:
                best, best_sim = g, sim
        if best < 0:
            groups.append([i])
            last_time.append(t)
            label[i] = len(groups) - 1
        else:
            groups[best].append(i)
            last_time[best] = max(last_time[best], t)
            label[i] = best
    return label


__all__ = ["RAW_SUFFIXES", "GroupingConfig", "frames", "group_frames"]
