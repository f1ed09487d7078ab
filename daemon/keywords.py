"""Which of our tags may go into a sidecar's flat keyword list (dc:subject), and in what form.

Our tags always go into the hierarchical list (lr:hierarchicalSubject, what darktable reads as its tags) under the
tag root: "aesthetics|exposure|underexposed". The flat list is the photographer's own: Lightroom, digiKam and
darktable's exports carry it into published files and stock uploads. Leaves like "clean", "balanced", "natural",
"sharp" or branch names like "color" mean nothing there without their parent, so at most the leaves that read well
alone ("underexposed", "golden hour", "long exposure") go in, and only when a folder asks for it (`flat_keywords`,
off by default; docs/watcher.md says why).
"""

from __future__ import annotations

__all__ = ["READABLE_LEAVES", "flat_keywords", "rooted"]

# family|leaf tags of the vocabulary (ase_model/vocab) whose leaf says what it means on its own. Left out: bare
# adjectives that need their family ("clean" noise, "balanced" contrast, "natural" colour, "sharp"/"soft" focus,
# "flat", "deep", "harsh", "punchy", "muted", "vibrant", "centered", "cut off", "expression") and the overall
# verdicts ("competent", "needs work", "striking"), which are judgements, not keywords.
READABLE_LEAVES = frozenset({
    "color|black and white", "color|complementary colors", "color|selective color", "color|warm cast",
    "color|cool cast", "color|green cast", "color|magenta cast", "color|oversaturated", "color|neutral white balance",
    "color|warm palette", "color|cool palette",
    "composition|clean background", "composition|cluttered background", "composition|diagonals",
    "composition|distracting elements", "composition|framing", "composition|high angle", "composition|low angle",
    "composition|leading lines", "composition|level horizon", "composition|tilted horizon", "composition|loose crop",
    "composition|tight crop", "composition|minimalism", "composition|negative space", "composition|off balance",
    "composition|patterns", "composition|rule of thirds", "composition|symmetry",
    "depth of field|bokeh",
    "exposure|clipped highlights", "exposure|crushed shadows", "exposure|high dynamic range", "exposure|overexposed",
    "exposure|underexposed", "exposure|well exposed",
    "focus|camera shake", "focus|missed focus", "focus|motion blur",
    "lighting|backlit", "lighting|blue hour", "lighting|dramatic light", "lighting|golden hour", "lighting|hard light",
    "lighting|high key", "lighting|low key", "lighting|night", "lighting|side light", "lighting|silhouette",
    "lighting|soft light",
    "noise|noisy",
    "style|abstract", "style|architecture", "style|documentary", "style|landscape", "style|portrait",
    "style|still life", "style|street", "style|wildlife",
    "subject|clear subject", "subject|no clear subject", "subject|storytelling",
    "technique|hdr", "technique|long exposure", "technique|macro", "technique|panning", "technique|vignette",
})


def rooted(tag: str, root: str) -> str:
    """`tag` under the tag root ("exposure|underexposed" -> "aesthetics|exposure|underexposed"); unchanged when it
    is already there or the root is empty.

    Args:
        tag: a tag path, parts separated by "|".
        root: the tag root, e.g. "aesthetics".
    """
    root = root.strip("|")
    if not root or tag == root or tag.startswith(root + "|"):
        return tag
    return f"{root}|{tag}"


def flat_keywords(tags, root: str) -> list[str]:
    """The leaves of `tags` that read well alone (READABLE_LEAVES), in order, each once.

    Args:
        tags: our tags, rooted or not.
        root: the tag root to look past.
    """
    root = root.strip("|")
    out: list[str] = []
    for tag in tags:
        path = tag[len(root) + 1:] if root and tag.startswith(root + "|") else tag
        if path.lower() in READABLE_LEAVES:
            leaf = path.split("|")[-1]
            if leaf not in out:
                out.append(leaf)
    return out
