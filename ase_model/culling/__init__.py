"""Culling a shoot: group bursts and near-duplicates, pick the best of each, flag the rejects, with reasons.

    feats = features_for(critic, paths)          # new photos: one critique each, plus ~30-60 ms of measurements
    for d in cull(feats):                        # known photos: no decoding, < 0.1 ms a photo
        print(d.path, d.group, d.decision, d.reason)

See docs/culling.md for the rule, its limits and the measured table.
"""

from .features import CullFeatures, capture_time, descriptor, features_for, features_from, measure, similarity
from .grouping import RAW_SUFFIXES, GroupingConfig, frames, group_frames
from .ranking import DECISIONS, CullConfig, CullDecision, cull, rank_group

__all__ = [
    "DECISIONS", "RAW_SUFFIXES", "CullConfig", "CullDecision", "CullFeatures", "GroupingConfig", "capture_time",
    "cull", "descriptor", "features_for", "features_from", "frames", "group_frames", "measure", "rank_group",
    "similarity",
]
