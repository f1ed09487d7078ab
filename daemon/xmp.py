"""XMP sidecars (`IMG_0001.JPG.xmp`, darktable's naming) for photos critiqued in watched folders.

darktable, digiKam and Lightroom read such a sidecar when they import the photo. What we write:

* our own namespace (prefix ``asecritic``, URI `NAMESPACE_URI`) holds the critique, one property per
  attribute, the score, the model fingerprint, the saliency summary, the tags we suggested, the date
  and the record of which standard values we put there (so a re-critique can take back only ours);
* standard keys only where `SidecarOptions` allows: tags (lr:hierarchicalSubject under the tag root, merged
  with the user's; dc:subject only the leaves that read alone, with flat_keywords: keywords.py),
  dc:description, xmp:Rating (never overwriting the user's values).

Layout of our namespace (all written through exiv2's XMP API via pyexiv2, never as text templates):

    asecritic:Critique            Lang Alt (x-default)  the critique text
    asecritic:Attributes          Seq                   attribute keys, e.g. "composition", "color_lighting"
    asecritic:<CamelCaseKey>      Lang Alt (x-default)  one per attribute: asecritic:Composition, ...ColorLighting
    asecritic:Score               simple                score 0..10, two decimals ("7.25")
    asecritic:PersonalScore, :Profile  simple           a personal profile's score (two decimals) and its name
    asecritic:Model               simple                model fingerprint
    asecritic:Date                simple                ISO 8601 time of the critique
    asecritic:Tags                Seq                   the rooted tags suggested, "aesthetics|exposure|underexposed"
    asecritic:Saliency<Key>       simple                scalar summary values, e.g. asecritic:SaliencySpread
    asecritic:Saliency<Key>X / Y  simple                2-vectors, e.g. asecritic:SaliencyCentroidX, ...CentroidY
    asecritic:AddedTags           Seq                   lr:hierarchicalSubject entries WE added (not the user's)
    asecritic:AddedKeywords       Seq                   dc:subject entries WE added
    asecritic:WrittenRating       simple                the xmp:Rating we wrote (absent: we did not write it)
    asecritic:WroteDescription    simple "True"         dc:description x-default is our critique text

Free text (critique, attributes) is Lang Alt because exiv2 parses a simple text value that starts with
"type=" as an array/struct marker; a Lang Alt item is stored verbatim.

pyexiv2 wraps one process-wide libexiv2 whose XMP toolkit is not thread-safe: every call here holds
`PYEXIV2_LOCK`; other modules of the daemon that use pyexiv2 should hold it too.
"""

from __future__ import annotations

import errno
import math
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyexiv2

from .contract.lines import rating_from_score  # the score -> stars map is part of the contract (the plugin copies it)
from .keywords import flat_keywords, rooted
from .sidecar_files import MAX_SIDECAR_BYTES, SidecarError, commit, read_existing, remove_stale_temp_files

__all__ = ["NAMESPACE_URI", "NAMESPACE_PREFIX", "PYEXIV2_LOCK", "MAX_SIDECAR_BYTES", "SidecarOptions", "SidecarError",
           "sidecar_path", "rating_from_score", "write_sidecar", "read_sidecar", "remove_stale_temp_files"]

NAMESPACE_URI = "https://github.com/ase-mllm/ns/critic/1.0/"
NAMESPACE_PREFIX = "asecritic"

# One lock for every pyexiv2 call in the process (the XMP toolkit keeps global state).
PYEXIV2_LOCK = threading.RLock()
# Serialises whole read-modify-replace cycles so two threads cannot interleave on one sidecar.
_WRITE_LOCK = threading.Lock()

with PYEXIV2_LOCK:
    # exiv2 refuses keys of an unknown prefix: register before any read or write.
    pyexiv2.registerNs(NAMESPACE_URI, NAMESPACE_PREFIX)

_NS = f"Xmp.{NAMESPACE_PREFIX}."
K_CRITIQUE = _NS + "Critique"
K_ATTRIBUTES = _NS + "Attributes"
K_SCORE = _NS + "Score"
K_MODEL = _NS + "Model"
K_DATE = _NS + "Date"
K_TAGS = _NS + "Tags"
K_ADDED_TAGS = _NS + "AddedTags"
K_ADDED_KEYWORDS = _NS + "AddedKeywords"
K_WRITTEN_RATING = _NS + "WrittenRating"
K_WROTE_DESCRIPTION = _NS + "WroteDescription"
K_PERSONAL_SCORE, K_PROFILE = _NS + "PersonalScore", _NS + "Profile"  # a folder's profile (watcher.md)
_SALIENCY = "Saliency"
_CULL = "Cull"  # asecritic:Cull* belong to a cull's decision (xmp_cull.py): a re-critique keeps them
_RESERVED = {k[len(_NS):] for k in (K_CRITIQUE, K_ATTRIBUTES, K_SCORE, K_MODEL, K_DATE, K_TAGS, K_ADDED_TAGS,
                                     K_ADDED_KEYWORDS, K_WRITTEN_RATING, K_WROTE_DESCRIPTION, K_PERSONAL_SCORE,
                                     K_PROFILE)}

K_SUBJECT = "Xmp.dc.subject"
K_HIER = "Xmp.lr.hierarchicalSubject"
K_DESCRIPTION = "Xmp.dc.description"
K_RATING = "Xmp.xmp.Rating"

_X_DEFAULT = 'lang="x-default"'   # how pyexiv2 names the x-default item of a Lang Alt
_RDF_XML = "application/rdf+xml"  # exiv2's MIME type for an XMP sidecar

# An empty XMP packet: the container a new sidecar starts from; all content goes in through exiv2.
_EMPTY_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
    ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>\n'
    '</x:xmpmeta>\n'
    '<?xpacket end="w"?>'
).encode("utf-8")

# Characters XML 1.0 cannot carry (the XMP toolkit would turn C0 controls into spaces, and a lone
# surrogate cannot even be encoded): cleaned up front so what we write is exactly what reads back.
_XML_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_XML_INVALID = re.compile("[\ud800-\udfff\ufffe\uffff]")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_REPLACE_TRIES = 3


@dataclass
class SidecarOptions:
    """What write_sidecar writes into the standard fields (our own namespace is always written).

    Args:
        write_description: dc:description (x-default) from the critique text.
        write_tags: dc:subject + lr:hierarchicalSubject.
        write_rating: xmp:Rating from the score (see rating_from_score).
        overwrite_description: replace an existing non-empty dc:description.
        overwrite_rating: replace an existing xmp:Rating (any value, incl. 0 and -1 reject).
        tag_root: our tags live under it; old ones of ours under it are cleaned out.
        flat_keywords: dc:subject gets the leaves that read alone (keywords.py); off: none.
        personal_rating: xmp:Rating from the result's personal_score instead of its score (none without one).
    """

    write_description: bool = False
    write_tags: bool = True
    write_rating: bool = False
    overwrite_description: bool = False
    overwrite_rating: bool = False
    tag_root: str = "aesthetics"
    flat_keywords: bool = False
    personal_rating: bool = False


def sidecar_path(image_path) -> Path:
    """darktable's sidecar name: the full file name plus ".xmp" (IMG_0001.JPG -> IMG_0001.JPG.xmp).

    Args:
        image_path: the photo's path (str or path-like).
    """
    p = Path(image_path)
    return p.with_name(p.name + ".xmp")


# --------------------------------------------------------------------------------------- helpers


def _clean_text(value: Any) -> str:
    text = str(value)
    text = _XML_CONTROL.sub(" ", text)
    return _XML_INVALID.sub("\ufffd", text)


def _lang_alt(text: str) -> dict:
    return {_X_DEFAULT: text}


def _simple(value: str):
    """A simple text property, or Lang Alt when exiv2 would read a leading "type=" as a type marker."""
    return _lang_alt(value) if value.startswith("type=") else value


def _as_text(value) -> str | None:
    """Text of a simple or Lang Alt value as pyexiv2 reads it (x-default, else the first language)."""
    if value is None:
        return None
    if isinstance(value, dict):
        if _X_DEFAULT in value:
            return value[_X_DEFAULT]
        return next(iter(value.values()), None)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str) and value.startswith("type="):
        return []  # an empty array reads back as its bare type marker
    return [str(value)]


def _camel(key: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^0-9A-Za-z]+", str(key)) if p)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _num(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"saliency value {value!r} is not finite")
    return format(f, ".6g")


def _parse_scalar(text: str):
    if text in ("True", "False"):
        return text == "True"
    try:
        return float(text)
    except ValueError:
        return text


def _tag_parts(tag: str) -> list[str]:
    return [p for p in tag.split("|") if p]


def _normalise_tags(tags) -> list[str]:
    out: list[str] = []
    for t in tags or []:
        parts = [_clean_text(p).strip() for p in str(t).split("|")]
        tag = "|".join(p for p in parts if p)
        if tag and tag not in out:
            out.append(tag)
    return out


def _under_root(tag: str, root: str) -> bool:
    root = root.strip("|")
    return bool(root) and (tag == root or tag.startswith(root + "|"))


def _bag(key: str, items: list[str], changes: dict) -> None:
    """Write an rdf:Bag (what dc:subject and lr:hierarchicalSubject are) through pyexiv2.

    pyexiv2 turns a Python list into an rdf:Seq; exiv2 makes a Bag from a "type=Bag" parent and
    indexed items. An item starting with "type=" would be misread as a marker, so then (only) we
    fall back to a Seq, which every reader accepts as well.
    """
    if not items:
        changes[key] = None
    elif any(i.startswith("type=") for i in items):
        changes[key] = list(items)
    else:
        changes[key] = "type=Bag"
        for n, item in enumerate(items, 1):
            changes[f"{key}[{n}]"] = item


def _expected_after(cur: dict, changes: dict) -> dict:
    """What read_xmp() must return after modify_xmp(changes): the check that nothing else moved."""
    exp = dict(cur)
    bags: dict[str, list] = {}
    for key, value in changes.items():
        m = re.match(r"^(.*)\[(\d+)\]$", key)
        if m:
            bags.setdefault(m.group(1), []).append(value)
            continue
        exp.pop(key, None)
        if value is None:
            continue
        if isinstance(value, str) and value == "type=Bag":
            bags.setdefault(key, [])
        elif isinstance(value, tuple):
            exp[key] = list(value)
        else:
            exp[key] = value
    for key, items in bags.items():
        exp[key] = items
    return exp


# ------------------------------------------------------------------------------- encode / decode


def _our_values(result: dict, score: float | None) -> dict:
    """Our namespace's new values (pyexiv2 form), from a critique result."""
    new: dict[str, Any] = {}
    text = _clean_text(result.get("text") or "")
    if text:
        new[K_CRITIQUE] = _lang_alt(text)

    attributes = result.get("attributes") or {}
    keys: list[str] = []
    names: dict[str, str] = {}
    for key, value in attributes.items():
        key = _clean_text(key)
        name = _camel(key)
        if not _NAME_RE.match(name) or name in _RESERVED or name.startswith((_SALIENCY, _CULL)):
            raise ValueError(f"attribute name {key!r} cannot be an XMP property of ours ({name!r})")
        if name in names:
            raise ValueError(f"attributes {names[name]!r} and {key!r} map to the same property {name!r}")
        names[name] = key
        if value is None or str(value) == "":
            continue
        keys.append(key)
        new[_NS + name] = _lang_alt(_clean_text(value))
    if keys:
        new[K_ATTRIBUTES] = keys

    if score is not None:
        new[K_SCORE] = f"{score:.2f}"
    if result.get("personal_score") is not None:
        new[K_PERSONAL_SCORE] = f"{_finite(result['personal_score']):.2f}"
        new[K_PROFILE] = _simple(_clean_text(result.get("profile") or ""))
    model = _clean_text(result.get("model") or "")
    if model:
        new[K_MODEL] = _simple(model)
    created = result.get("created")
    if isinstance(created, datetime):
        created = created.isoformat()
    created = _clean_text(created or datetime.now(timezone.utc).isoformat(timespec="seconds"))
    new[K_DATE] = _simple(created)
    tags = _normalise_tags(result.get("tags"))
    if tags:
        new[K_TAGS] = tags

    for key, value in (result.get("saliency") or {}).items():
        name = _SALIENCY + _camel(key)
        if not _NAME_RE.match(name):
            raise ValueError(f"saliency key {key!r} cannot be an XMP property name")
        if hasattr(value, "tolist"):  # numpy scalars and arrays
            value = value.tolist()
        if isinstance(value, (list, tuple)):
            if len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
                new[_NS + name + "X"] = _num(value[0])
                new[_NS + name + "Y"] = _num(value[1])
            else:
                new[_NS + name] = [_num(v) if isinstance(v, (int, float)) else _clean_text(v) for v in value]
        elif isinstance(value, (int, float)):
            new[_NS + name] = _num(value)
        elif value is not None:
            new[_NS + name] = _simple(_clean_text(value))
    return new


def _decode_ours(cur: dict) -> dict:
    out: dict[str, Any] = {}
    text = _as_text(cur.get(K_CRITIQUE))
    if text is not None:
        out["text"] = text
    keys = _as_list(cur.get(K_ATTRIBUTES))
    if keys:
        out["attributes"] = {k: _as_text(cur.get(_NS + _camel(k))) or "" for k in keys}
    score = _as_text(cur.get(K_SCORE))
    if score is not None:
        try:
            out["score"] = float(score)
        except ValueError:
            pass
    if _as_text(cur.get(K_PERSONAL_SCORE)) is not None:
        out["personal_score"] = _parse_scalar(_as_text(cur[K_PERSONAL_SCORE]))
        out["profile"] = _as_text(cur.get(K_PROFILE))
    for field, key in (("model", K_MODEL), ("created", K_DATE)):
        value = _as_text(cur.get(key))
        if value is not None:
            out[field] = value
    if K_TAGS in cur:
        out["tags"] = _as_list(cur.get(K_TAGS))

    sal_raw = {k[len(_NS) + len(_SALIENCY):]: v for k, v in cur.items()
               if k.startswith(_NS + _SALIENCY) and "/" not in k and "[" not in k}
    saliency: dict[str, Any] = {}
    for name, value in sal_raw.items():
        base = name[:-1]
        if name.endswith("X") and base + "Y" in sal_raw:  # a 2-vector stored as <Base>X / <Base>Y
            saliency[_snake(base)] = [_parse_scalar(_as_text(value)), _parse_scalar(_as_text(sal_raw[base + "Y"]))]
        elif name.endswith("Y") and base + "X" in sal_raw:
            continue
        elif isinstance(value, list):
            saliency[_snake(name)] = [_parse_scalar(v) for v in value]
        else:
            saliency[_snake(name)] = _parse_scalar(_as_text(value))
    if saliency:
        out["saliency"] = saliency
    return out


def _finite(value) -> float:
    """A score rounded to the two decimals stored; ValueError when it is not a finite number."""
    score = float(value)
    if not math.isfinite(score):
        raise ValueError(f"score {value!r} is not finite")
    return round(score, 2)


def _merge(cur: dict, result: dict, options: SidecarOptions) -> dict:
    """The pyexiv2 change set turning the sidecar `cur` into one carrying `result`."""
    score = None if result.get("score") is None else _finite(result["score"])

    # Our namespace is replaced wholesale (but for a cull's decision): drop every old value of ours first.
    changes: dict[str, Any] = {k: None for k in cur if k.startswith(_NS) and not k.startswith(_NS + _CULL)}
    new = _our_values(result, score)

    prev_added_tags = _as_list(cur.get(K_ADDED_TAGS))
    prev_added_keywords = _as_list(cur.get(K_ADDED_KEYWORDS))
    hier = _as_list(cur.get(K_HIER))
    subject = _as_list(cur.get(K_SUBJECT))

    if options.write_tags:
        tags = [rooted(t, options.tag_root) for t in new.get(K_TAGS, [])]  # the hierarchical list: under the root
        # Our old tags under the root that are no longer suggested go; the user's (never recorded
        # as ours) stay, even under the root.
        stale = {t for t in prev_added_tags if _under_root(t, options.tag_root) and t not in tags}
        new_hier = [t for t in hier if t not in stale]
        added_tags = [t for t in prev_added_tags if t in new_hier]
        for t in tags:
            if t not in new_hier:
                new_hier.append(t)
                added_tags.append(t)
        # dc:subject (keywords.py): only leaves that read alone, and only with flat_keywords. A keyword we added
        # goes once it is no longer wanted, unless one of the user's hierarchical tags holds it (Lightroom's habit
        # of listing every part flat); this also cleans the parts older versions of ours wrote.
        wanted = flat_keywords(tags, options.tag_root) if options.flat_keywords else []
        users = {p for t in new_hier if t not in added_tags for p in _tag_parts(t)}
        new_subject = [w for w in subject if not (w in prev_added_keywords and w not in wanted and w not in users)]
        added_keywords = [w for w in prev_added_keywords if w in new_subject]
        for word in wanted:
            if word not in new_subject:
                new_subject.append(word)
                added_keywords.append(word)
        if new_hier != hier:
            _bag(K_HIER, new_hier, changes)
        if new_subject != subject:
            _bag(K_SUBJECT, new_subject, changes)
    else:
        # Standard tag keys untouched; keep the record of ours that are still there for a later run.
        added_tags = [t for t in prev_added_tags if t in hier]
        added_keywords = [w for w in prev_added_keywords if w in subject]
    if added_tags:
        new[K_ADDED_TAGS] = added_tags
    if added_keywords:
        new[K_ADDED_KEYWORDS] = added_keywords

    # dc:description: ours (we wrote it and it still equals our previous critique) may be updated;
    # the user's only with overwrite_description.
    cur_desc = cur.get(K_DESCRIPTION)
    cur_desc = cur_desc if isinstance(cur_desc, dict) else ({_X_DEFAULT: cur_desc} if cur_desc else {})
    prev_text = _as_text(cur.get(K_CRITIQUE))
    desc_is_ours = (_as_text(cur.get(K_WROTE_DESCRIPTION)) == "True" and prev_text is not None
                    and cur_desc.get(_X_DEFAULT) == prev_text)
    wrote_description = desc_is_ours
    text = _as_text(new.get(K_CRITIQUE))
    if options.write_description and text:
        user_has_one = any(str(v).strip() for v in cur_desc.values())
        if desc_is_ours or not user_has_one or options.overwrite_description:
            desc = dict(cur_desc)
            desc[_X_DEFAULT] = text  # other languages the user wrote stay
            changes[K_DESCRIPTION] = desc
            wrote_description = True
        else:
            wrote_description = False
    if wrote_description:
        new[K_WROTE_DESCRIPTION] = "True"

    # xmp:Rating: any value present (0 = unrated and -1 = reject included) is the user's unless it is
    # the one we wrote last time.
    cur_rating = _as_text(cur.get(K_RATING))
    cur_rating = cur_rating.strip() if cur_rating is not None else ""
    prev_written = _as_text(cur.get(K_WRITTEN_RATING))
    rating_is_ours = bool(cur_rating) and cur_rating == prev_written
    written_rating = cur_rating if rating_is_ours else None
    # the stars come from the critic's score, or from the personal one (a folder's profile with personal_rating)
    rated = score if not options.personal_rating else result.get("personal_score")
    if options.write_rating and rated is not None:
        if not cur_rating or rating_is_ours or options.overwrite_rating:
            written_rating = str(rating_from_score(_finite(rated)))
            changes[K_RATING] = written_rating
        else:
            written_rating = None
    if written_rating:
        new[K_WRITTEN_RATING] = written_rating

    changes.update(new)
    return changes


# ------------------------------------------------------------------- exiv2 (files: sidecar_files.py)


def _open_xmp(data: bytes, path: Path):
    """pyexiv2 image for sidecar bytes; SidecarError when exiv2 cannot parse them. Hold PYEXIV2_LOCK."""
    try:
        img = pyexiv2.ImageData(data)
    except Exception as e:  # exiv2 errors arrive as RuntimeError
        raise SidecarError(path, f"existing sidecar is not valid XMP, left untouched ({str(e).strip()})",
                           errno.EINVAL) from e
    try:
        mime = img.get_mime_type()
    except Exception as e:
        img.close()
        raise SidecarError(path, f"existing sidecar cannot be read by exiv2 ({str(e).strip()})", errno.EINVAL) from e
    if mime != _RDF_XML:
        img.close()
        raise SidecarError(path, f"existing sidecar is not an XMP packet (exiv2 sees {mime}), left untouched",
                           errno.EINVAL)
    return img


def _modified_packet(old: bytes | None, target: Path, make_changes, passthrough=(ValueError, TypeError)):
    """The sidecar's new bytes: the old packet (or an empty one) with `make_changes(current XMP) -> (changes,
    extra)` applied through pyexiv2, then read back — every foreign value unchanged and ours exact, else
    SidecarError. Returns (bytes, extra). Errors of the types in `passthrough` (the caller's own validation) go
    up as they are; any other failure inside exiv2 is a SidecarError."""
    # A missing or empty file holds nothing of the user's (darktable writes in place, so a crash can
    # leave 0 bytes): start from an empty packet. Anything else must parse or we stop.
    base = old if old is not None and old.strip() else _EMPTY_PACKET
    with PYEXIV2_LOCK:
        img = _open_xmp(base, target)
        try:
            cur = img.read_xmp()
            changes, extra = make_changes(cur)
            expected = _expected_after(cur, changes)
            # exiv2 mirrors XMP into Exif/IPTC when it reads a sidecar and copies those back when it
            # writes, which would resurrect keys we delete (dc:subject, xmp:Rating ...). Dropping the
            # in-memory mirrors first makes modify_xmp do exactly what it says; the XMP stays.
            img.clear_exif()
            img.clear_iptc()
            img.modify_xmp(changes)
            data = img.get_bytes()
        except SidecarError:
            raise
        except passthrough:
            raise
        except Exception as e:
            raise SidecarError(target, f"exiv2 could not update the XMP: {str(e).strip()}", errno.EIO) from e
        finally:
            img.close()
        # Re-read what we are about to write: every foreign value must be unchanged and ours exact.
        check = _open_xmp(data, target)
        try:
            after = check.read_xmp()
        finally:
            check.close()
    if after != expected:
        moved = sorted(k for k in set(after) | set(expected) if after.get(k) != expected.get(k))
        raise SidecarError(target, f"exiv2 would change more than asked ({', '.join(moved[:8])}); not written",
                           errno.EIO)
    return data, extra


def _build(old: bytes | None, result: dict, options: SidecarOptions, target: Path) -> bytes:
    """The new sidecar's bytes: the old packet (or an empty one) modified through pyexiv2."""
    return _modified_packet(old, target, lambda cur: (_merge(cur, result, options), None))[0]


# ---------------------------------------------------------------------------------- public API


def write_sidecar(image_path, result: dict, options: SidecarOptions | None = None) -> Path:
    """Write (or update) the sidecar of `image_path` with a critique result; returns its path.

    Raises SidecarError (old sidecar byte-identical, no temp file left) when it cannot be done, and
    ValueError for a result that cannot be stored (NaN score, an attribute name that is no XML name).

    Args:
        image_path: the photo's path; the sidecar is sidecar_path(image_path).
        result: "text", "attributes" {key: text}, "score" (0..10), "tags" (rooted "a|b|c" paths),
            "model", "saliency" {key: number | [x, y] | list}, optional "created" (ISO time or datetime).
        options: what to write and what to overwrite (default: SidecarOptions()).
    """
    options = options or SidecarOptions()
    side = target = sidecar_path(image_path)
    # Written only as a regular file in the photo's own folder: a sidecar that is a symbolic link, FIFO or device
    # is refused by _read_existing and left alone (a link could point anywhere; a FIFO would block us).
    with _WRITE_LOCK:
        for _ in range(_REPLACE_TRIES):
            old = read_existing(target)
            data = _build(old, result, options, target)
            if commit(target, old, data):
                return side
    raise SidecarError(target, "another program kept rewriting the sidecar; gave up", errno.EAGAIN)


def read_sidecar(path) -> dict:
    """Our namespace's values from a sidecar (or from the sidecar of an image path).

    Returns the keys of `write_sidecar`'s result that are present: "text", "attributes", "score",
    "model", "created", "tags", "saliency" (2-vectors as [x, y], numbers as float). {} when the
    sidecar has nothing of ours; SidecarError when it is missing or unreadable.

    Args:
        path: the sidecar (a path ending in .xmp) or the photo whose sidecar to read.
    """
    p = Path(path)
    if p.suffix.lower() != ".xmp":
        p = sidecar_path(p)
    data = read_existing(p, follow=True)  # reading through a link is harmless; a FIFO or device still is not
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
    return _decode_ours(cur)
