"""The `lines` output format of `ase-client critique` (the darktable plugin's contract) and the score -> stars map.

One `key<TAB>value` line per field, values escaped to one line (escape), a block per image that ends with `end`;
`token` lines (`--stream`) come before their image's block. tests/fixtures/lines_golden.txt is the golden example
that the Python tests and the Lua plugin's tests both parse. plugin_darktable/ase_critic.lua holds the Lua copy of
parse_lines and rating_from_score (darktable cannot import Python); tests pin the two to the fixture.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["TOKEN_KEY", "escape", "unescape", "format_token", "format_lines", "parse_lines", "rating_from_score"]

TOKEN_KEY = "token"
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def escape(value: Any) -> str:
    """One-line form of a value: backslash, newline, tab and carriage return become \\\\ \\n \\t \\r."""
    return "".join(_ESCAPES.get(ch, ch) for ch in str(value))


def unescape(text: str) -> str:
    """Inverse of `escape` (an unknown escape keeps its character: `\\x` -> `x`)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def format_token(text: str) -> str:
    """One `token` line of `--stream --format lines`: a piece of the critique's text as it is generated. Token lines
    precede the image's block; parsers skip them (parse_lines) or show them live (the darktable plugin)."""
    return f"{TOKEN_KEY}\t{escape(text)}\n"


def format_lines(image: str, result: dict | None = None, error: tuple[str, str] | None = None,
                 saliency_path: str | None = None, rating: int | None = None) -> str:
    """One image's block in the `lines` format, ending with `end` (see docs/protocol.md).

    Args:
        image: the image as the user named it.
        result: the critique's result object (a reply's `result`, or CritiqueResult.to_dict()).
        error: (code, message) instead of a result.
        saliency_path: where the saliency map was written, if it was.
        rating: the stars (rating_from_score), if known.
    """
    lines = [("image", image)]
    if error is not None:
        lines.append(("error", f"{escape(error[0])}\t{escape(error[1])}"))
        return "".join(f"{k}\t{v if k == 'error' else escape(v)}\n" for k, v in lines) + "end\n"
    assert result is not None
    lines.append(("score", f"{float(result['score']):.3f}"))
    if result.get("personal_score") is not None:  # only when the request named a profile
        lines.append(("personal_score", f"{float(result['personal_score']):.3f}"))
    if rating is not None:
        lines.append(("rating", str(int(rating))))
    lines += [("tag", t) for t in result.get("tags", [])]
    lines += [(f"attr.{k}", v) for k, v in result.get("attributes", {}).items()]
    lines.append(("text", result.get("text", "")))
    if saliency_path:
        lines.append(("saliency", saliency_path))
    lines.append(("cached", "true" if result.get("cached") else "false"))
    lines.append(("model", result.get("model", "")))
    return "".join(f"{k}\t{escape(v)}\n" for k, v in lines) + "end\n"


def parse_lines(text: str) -> list[dict]:
    """Parse `lines` output back into one dict per image (tags as a list, attributes as a dict)."""
    blocks, cur = [], None
    for line in text.splitlines():
        if not line:
            continue
        key, _, value = line.partition("\t")
        if key == "end":
            if cur is not None:
                blocks.append(cur)
            cur = None
            continue
        if key == "image":
            cur = {"image": unescape(value), "tags": [], "attributes": {}}
        elif cur is None:
            continue  # e.g. `token` lines of --stream before a block
        elif key == "tag":
            cur["tags"].append(unescape(value))
        elif key.startswith("attr."):
            cur["attributes"][key[5:]] = unescape(value)
        elif key == "error":
            code, _, message = value.partition("\t")
            cur["error"] = {"code": unescape(code), "message": unescape(message)}
        elif key in ("score", "personal_score"):
            cur[key] = float(value)
        elif key == "rating":
            cur["rating"] = int(value)
        elif key == "cached":
            cur["cached"] = value == "true"
        else:
            cur[key] = unescape(value)
    return blocks


def rating_from_score(score: float) -> int:
    """Map a 0..10 aesthetic score to xmp:Rating stars, 1..5.

    Five equal bands of two points, lower bound included (the score is first rounded to the two
    decimals stored in asecritic:Score, so the stars always agree with the stored score):

        score (0..10)    stars
        [0, 2)           1
        [2, 4)           2
        [4, 6)           3
        [6, 8)           4
        [8, 10]          5

    Scores outside 0..10 are clamped. The result is never 0 (unrated) and never -1 (rejected):
    the critic rates, it does not cull. NaN raises ValueError.

    Args:
        score: the critique's score.
    """
    s = float(score)
    if math.isnan(s):
        raise ValueError("score is NaN")
    s = min(10.0, max(0.0, round(s, 2)))
    return min(5, int(s // 2) + 1)
