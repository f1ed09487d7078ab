"""Photos named on a command line: folders walked, RAW+JPEG pairs of one frame found. Torch-free.

    files, missing = list_photos(["/shoot"], recursive=True)     # hidden files and sidecars (.xmp) left out
    for frame in pair_frames(files, master="jpeg"):               # IMG_1.CR2 + IMG_1.JPG: one Frame
        print(frame.master, frame.companions)

One piece of code for every command that takes folders: `ase-mllm critique`, `ase-client critique`, `ase-mllm cull`
and the daemon's cull op (ase_daemon.cull_run re-exports list_photos), and culling's frame rule
(ase_model.culling.grouping.frames, which pairs with master="raw").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RAW_SUFFIXES", "Frame", "frame_key", "is_raw", "list_photos", "pair_frames", "pair_indices"]

# Camera RAW suffixes (imageio's list, whether or not rawpy is installed: pairing needs no decoder).
RAW_SUFFIXES = frozenset({
    ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".rwl", ".pef",
    ".dng", ".srw", ".3fr", ".fff", ".iiq", ".erf", ".kdc", ".dcr", ".mrw", ".mef", ".mos", ".x3f",
})


def is_raw(path: str | os.PathLike) -> bool:
    """True for a camera RAW suffix (case-insensitive).

    Args:
        path: a file name or path.
    """
    return Path(path).suffix.lower() in RAW_SUFFIXES


def frame_key(path: str | os.PathLike) -> tuple[str, str]:
    """What makes two files one frame: the same folder and the same stem, case aside (IMG_1.CR2, IMG_1.JPG).

    Args:
        path: the file's path.
    """
    p = Path(path)
    return str(p.parent), p.stem.lower()


def list_photos(targets: Sequence[str | os.PathLike], recursive: bool = False) -> tuple[list[Path], dict[str, str]]:
    """The photo files named by `targets` (files, or folders whose photo files are taken), sorted per folder,
    and the targets that do not exist ({target: message}).

    A file named explicitly is taken whatever its suffix (reading it says whether it is a photo); in a folder only
    files with a photo suffix (ase_model.imageio.is_supported) are, so sidecars (.xmp, .pp3, ...) are not, and
    hidden ones (".name", hidden folders too) are left out.

    Args:
        targets: files and folders.
        recursive: descend into sub-folders of the folders given.
    """
    from .imageio import is_supported

    files: list[Path] = []
    missing: dict[str, str] = {}
    seen: set[str] = set()

    def take(p: Path) -> None:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            files.append(p)

    for target in targets:
        p = Path(target)
        if p.is_dir():
            walker = os.walk(p) if recursive else [(str(p), [], [e.name for e in os.scandir(p) if e.is_file()])]
            for root, dirs, names in walker:
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith(".") and is_supported(name):
                        take(Path(root) / name)
        elif p.exists() or p.is_symlink():
            take(p)
        else:
            missing[str(target)] = f"{target}: no such file or folder"
    return files, missing


def pair_indices(paths: Sequence[str | os.PathLike], master: str = "raw") -> list[list[int]]:
    """Indices of `paths` grouped into frames (frame_key), each frame's master first, frames in the order of
    their first file.

    Args:
        paths: the files.
        master: "raw": a RAW file leads its frame when there is one (culling: the RAW is what is kept);
            "jpeg": a file that is not RAW leads (critique: the camera's own rendering, read and decoded
            at a fraction of the RAW's cost).
    """
    if master not in ("raw", "jpeg"):
        raise ValueError(f"master must be 'raw' or 'jpeg', not {master!r}")
    by_key: dict[tuple[str, str], list[int]] = {}
    for i, p in enumerate(paths):
        by_key.setdefault(frame_key(p), []).append(i)
    out = []
    for idx in by_key.values():
        preferred = [i for i in idx if is_raw(paths[i]) == (master == "raw")]
        lead = preferred[0] if preferred else idx[0]
        out.append([lead] + [i for i in idx if i != lead])
    return out


@dataclass
class Frame:
    """One frame of a shoot: the file that stands for it and the other files of the same frame.

    Args:
        master: the file handled (critiqued, reported).
        companions: the other files of the frame (a RAW beside its JPEG), in the order listed.
    """

    master: Path
    companions: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """The master, then its companions."""
        return [self.master, *self.companions]


def pair_frames(paths: Sequence[str | os.PathLike], master: str = "jpeg") -> list[Frame]:
    """`paths` as frames (pair_indices), in the order of each frame's first file.

    Args:
        paths: the files (list_photos' order keeps a folder's frames together).
        master: which file of a pair leads (pair_indices).
    """
    return [Frame(Path(paths[idx[0]]), [Path(paths[i]) for i in idx[1:]]) for idx in pair_indices(paths, master)]
