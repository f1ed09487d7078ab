"""`--write-xmp` for the folder critiques (`ase-mllm critique`, `ase-client critique`): the watcher's writer.

Each critiqued frame's sidecar is written with xmp.write_sidecar, the function the folder watcher uses, so the
guarantees are the same: merged with what is there (the user's tags, description and rating are never dropped),
written atomically (a temporary file and a rename; a failed write leaves the old sidecar byte-identical), a sidecar
that is a link or a FIFO refused. What goes into the standard keys follows the daemon's [watch] defaults (tags under
the tag root; description and rating off unless configured), which the flags here override. A RAW+JPEG frame gets
the same critique in both files' sidecars (IMG_1.CR2.xmp and IMG_1.JPG.xmp): whichever file the photo library
imports, it finds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_sidecar_arguments", "sidecar_options", "write_frame_sidecars"]

_FLAGS = (("description", "write_description"), ("tags", "write_tags"), ("rating", "write_rating"))


def add_sidecar_arguments(p: argparse.ArgumentParser) -> None:
    """--write-xmp and what it writes into the standard keys.

    Args:
        p: the critique command's parser.
    """
    p.add_argument("--write-xmp", action="store_true",
                   help="write each photo's XMP sidecar (IMG.JPG.xmp) as the folder watcher does (docs/watcher.md)")
    for flag, key in _FLAGS:
        p.add_argument(f"--{flag}", dest=key, action=argparse.BooleanOptionalAction, default=None,
                       help=f"with --write-xmp: the standard {flag} key (default: the daemon's [watch] setting)")
    p.add_argument("--flat-keywords", dest="flat_keywords", action=argparse.BooleanOptionalAction, default=None,
                   help="with --write-xmp: the tags' leaves that read alone in dc:subject too (default: [watch], off)")
    p.add_argument("--overwrite-rating", action="store_true", default=None, help="replace a rating the user set")
    p.add_argument("--overwrite-description", action="store_true", default=None,
                   help="replace a description the user wrote")


def sidecar_options(cfg, args, tag_root: str = "aesthetics"):
    """The SidecarOptions of a folder critique: the config's [watch] defaults, then the command's flags.

    Args:
        cfg: the daemon's Config (load_config).
        args: the parsed arguments (add_sidecar_arguments).
        tag_root: the root of our tags.
    """
    from .xmp import SidecarOptions

    o = dict(cfg.watch_settings.defaults)
    for key in ("write_description", "write_tags", "write_rating", "flat_keywords", "overwrite_rating",
                "overwrite_description"):
        if getattr(args, key, None) is not None:
            o[key] = getattr(args, key)
    return SidecarOptions(write_description=o["write_description"], write_tags=o["write_tags"],
                          write_rating=o["write_rating"], overwrite_description=o["overwrite_description"],
                          overwrite_rating=o["overwrite_rating"], tag_root=tag_root,
                          flat_keywords=o.get("flat_keywords", False))


def write_frame_sidecars(record: dict, options, saliency: dict | None = None) -> tuple[list[str], str | None]:
    """Writes the critique `record` into the sidecar of its photo and of each companion (a RAW beside the JPEG).

    Returns (the sidecars written, an error message or None); the record is left as it is.

    Args:
        record: a critique record ("image", "companions", "text", "attributes", "score", "tags", "model",
            optionally "created").
        options: SidecarOptions.
        saliency: the saliency map's summary (centroid, peak, spread) for our namespace, when known.
    """
    from datetime import datetime, timezone

    from .xmp import SidecarError, write_sidecar

    result = {k: record[k] for k in ("text", "attributes", "score", "tags", "model") if k in record}
    created = record.get("created")
    if isinstance(created, (int, float)):  # the store keeps Unix seconds
        result["created"] = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds")
    if isinstance(saliency, dict):
        result["saliency"] = saliency
    written, errors = [], []
    for path in [record["image"], *(record.get("companions") or ())]:
        try:
            written.append(str(write_sidecar(Path(path), result, options)))
        except (SidecarError, ValueError, OSError) as e:
            errors.append(f"{path}: sidecar not written: {e}")
    return written, "; ".join(errors) or None
